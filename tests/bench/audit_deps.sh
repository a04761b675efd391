#!/usr/bin/env bash
# Audit every locked dependency (all groups, exact pins from uv.lock) for known vulnerabilities with pip-audit.
#
#   tests/bench/audit_deps.sh          # the PyPI JSON API (https://pypi.org/pypi/<name>/<version>/json)
#   tests/bench/audit_deps.sh osv      # the OSV database (https://api.osv.dev)
#
# Not part of .ci/run: it needs network access to the vulnerability service, which CI does not promise.
# pip-audit prints "No known vulnerabilities found" and exits 0 even when it could audit none of the
# packages (every lookup skipped), so this script counts what was really audited and says so.
# Exit status: 0 every package audited, none vulnerable; 1 vulnerabilities found; 2 the service could not
# be reached at all; 3 some packages could not be audited (the result is incomplete).
set -euo pipefail
cd "$(dirname "$0")/../.."

service="${1:-pypi}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# --no-emit-project: the project itself (`-e .`) is not on PyPI and has no version pip-audit can look up.
uv export --locked --no-hashes --all-groups --no-emit-project --format requirements-txt --quiet >"$tmp/req.txt"

set +e
uv run pip-audit -r "$tmp/req.txt" --no-deps --disable-pip -s "$service" --progress-spinner off \
    -f json -o "$tmp/audit.json" 2>"$tmp/stderr"
status=$?
set -e

uv run python - "$tmp/req.txt" "$tmp/audit.json" "$tmp/stderr" "$status" "$service" <<'EOF'
import json
import sys
from collections import Counter
from pathlib import Path

req, out, err, status, service = sys.argv[1:]
from packaging.requirements import Requirement

pins = [Requirement(ln) for ln in Path(req).read_text().splitlines() if ln and not ln[0].isspace() and ln[0] != "#"]
here = [r for r in pins if r.marker is None or r.marker.evaluate()]  # pip-audit skips pins for other platforms
pinned = f"{len(pins)} pinned packages ({len(here)} for this Python and platform)"
text = Path(out).read_text() if Path(out).exists() else ""
if not text.strip():
    lines = [ln for ln in Path(err).read_text().splitlines() if ln.strip()]
    print(f"pip-audit ({service}): could not run (exit {status}); {pinned}, none audited")
    print("  " + (lines[-1] if lines else "no output"))
    sys.exit(2)
deps = json.loads(text)["dependencies"]
audited = [d for d in deps if "skip_reason" not in d]
skipped = [d for d in deps if "skip_reason" in d]
vulnerable = [d for d in audited if d.get("vulns")]
print(f"pip-audit ({service}): {pinned}, {len(audited)} audited, {len(skipped)} skipped, "
      f"{sum(len(d['vulns']) for d in vulnerable)} known vulnerabilities in {len(vulnerable)} packages")
reasons = Counter(d["skip_reason"].split(":")[0] for d in skipped)
for reason, n in reasons.most_common():
    print(f"  skipped {n}: {reason}")
for d in vulnerable:
    for v in d["vulns"]:
        fixes = ", ".join(v.get("fix_versions") or []) or "no fix released"
        aliases = ", ".join(v.get("aliases") or [])
        print(f"  {d['name']} {d['version']}: {v['id']}" + (f" ({aliases})" if aliases else "") + f"; fixed in {fixes}")
if vulnerable:
    sys.exit(1)
if skipped:
    print("  INCOMPLETE: the skipped packages were not checked; do not read this as a clean result")
    sys.exit(3)
EOF
