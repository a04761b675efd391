"""Screenshot check: write a demo report from generated data and render `report.html` in headless Chromium.

    uv run python tests/bench/render_report.py [--days 3] [--history-days 1] [--seed 11] [--out DIR]
                                               [--statsforecast] [--window-size 1400,2400]

It replays the built-in workload through forescale (a fast deterministic "yesterday" forecaster, or
the real statsforecast adapter with `--statsforecast`) and through target tracking, writes the report
to DIR (default: a fresh temporary folder), prints the terminal summary, and saves `screenshot.png`
(the top of the page) and `screenshot-full.png` (the whole page) beside it, for a person to look at.
Chromium comes from Debian's package (`apt-get install -y chromium`); it runs with no network, no
GPU and a throwaway profile, so the screenshot also proves the page needs nothing from outside.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.unit.test_demo_report import YesterdayForecaster, sample_report  # noqa: E402  (the test's sample data)

from forescale.demo.report import format_summary, write_report  # noqa: E402

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def screenshot(html: Path, png: Path, window: str) -> None:
    """Render `html` at `window` (W,H pixels) into `png` with a throwaway profile."""
    browser = chromium()
    if browser is None:
        raise SystemExit("render_report: chromium is not installed (apt-get install -y chromium)")
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        cmd = [
            browser,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--screenshot={png}",
            f"--window-size={window}",
            html.resolve().as_uri(),
        ]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    if not png.exists():
        raise SystemExit(f"render_report: chromium wrote no {png}")


def page_height(html: Path) -> int:
    """A generous page height in CSS pixels, from the number of charts and table rows (for the full shot)."""
    text = html.read_text(encoding="utf-8")
    return 1400 + 900 * text.count("<img ") + 52 * text.count("<tr")


def trim_bottom(png: Path, margin_px: int = 24) -> tuple[int, int]:
    """Cut the empty page background below the content (the full shot's height is a guess); returns the size."""
    from PIL import Image, ImageChops  # pillow comes with matplotlib

    with Image.open(png) as im:
        rgb = im.convert("RGB")
    background = Image.new("RGB", rgb.size, rgb.getpixel((2, rgb.size[1] - 2)))
    box = ImageChops.difference(rgb, background).getbbox()
    if box is not None and box[3] + margin_px < rgb.size[1]:
        rgb = rgb.crop((0, 0, rgb.size[0], box[3] + margin_px))
        rgb.save(png)
    return rgb.size


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--days", type=float, default=3.0, help="generated days in all (history + window)")
    ap.add_argument("--history-days", type=float, default=1.0, help="days before the report window")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--statsforecast", action="store_true", help="forecast with the real statsforecast adapter")
    ap.add_argument("--window-size", default="1400,2400", help="the first screenshot's W,H in pixels")
    a = ap.parse_args()
    out = a.out or Path(tempfile.mkdtemp(prefix="forescale-report-"))
    t0 = time.perf_counter()
    if a.statsforecast:
        from forescale.forecasting.statsforecast_adapter import StatsForecastAdapter

        forecaster: object = RecordingForecaster(StatsForecastAdapter())
    else:
        forecaster = YesterdayForecaster()
    report, *_ = sample_report(a.days, a.history_days, a.seed, forecaster)
    built = time.perf_counter()
    paths = write_report(report, out)
    written = time.perf_counter()
    print(format_summary(report))
    print(f"\nreplay {built - t0:.1f} s, report {written - built:.1f} s → {paths['html']}")
    top = out / "screenshot.png"
    screenshot(paths["html"], top, a.window_size)
    full = out / "screenshot-full.png"
    width = a.window_size.split(",")[0]
    screenshot(paths["html"], full, f"{width},{page_height(paths['html'])}")
    w, h = trim_bottom(full)
    print(f"screenshots: {top} and {full} ({w}×{h} px) in {time.perf_counter() - written:.1f} s")
    return 0


class RecordingForecaster:
    """Wraps a forecaster and keeps every forecast with the time it was issued, for the band chart."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.issued: dict[str, list[tuple[int, object]]] = {}

    def forecast(self, histories, horizon_s):  # type: ignore[no-untyped-def]
        fresh = self.inner.forecast(histories, horizon_s)  # type: ignore[attr-defined]
        for name, fc in fresh.items():
            self.issued.setdefault(name, []).append((fc.issued_at, fc))
        return fresh


if __name__ == "__main__":
    raise SystemExit(main())
