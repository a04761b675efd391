"""AWS on loopback for the local demo: moto's ThreadedMotoServer on 127.0.0.1 with forescale's extension.

`LocalAws` starts the server on a free port (or the one asked for; if that one is taken, on another),
installs the moto extension for the APIs moto lacks (see forescale.local.moto_ext) driven by a
simulated clock, and points boto3 at it through the environment (AWS_ENDPOINT_URL and dummy
credentials) for as long as the context is open. Leaving the context (normally, on an error, or on
Ctrl-C) stops the server thread and restores the environment: nothing is left running.
"""

from __future__ import annotations

import logging
import os
import socket
import urllib.request
from collections.abc import Callable
from types import TracebackType
from typing import Any

from moto.server import ThreadedMotoServer

from forescale.local.moto_extension import install
from forescale.runtime import lambda_support

# moto accepts any key pair: a placeholder for the loopback server, never a real credential.
LOCAL_KEY = "forescale-local"
ENV = {
    "AWS_ACCESS_KEY_ID": LOCAL_KEY,
    "AWS_SECRET_ACCESS_KEY": LOCAL_KEY,
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


class SimClock:
    """Simulated epoch seconds: the moto extension's IN_PROGRESS/Updating timers read it."""

    def __init__(self, now: float) -> None:
        self.now = float(now)

    def __call__(self) -> float:
        return self.now


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class LocalAws:
    def __init__(self, port: int = 0, clock: Callable[[], float] | None = None) -> None:
        self.requested_port = port
        self.clock = clock
        self.port = 0
        self.note = ""
        self._server: ThreadedMotoServer | None = None
        self._saved_env: dict[str, str | None] = {}

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LocalAws:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
        install(self.clock)  # before the server answers its first request: it builds its routes once
        port = self.requested_port
        if port and not port_is_free(port):
            self.note = f"port {port} is taken; using a free one instead"
            port = 0
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self._server.start()
        _, self.port = self._server.get_host_and_port()
        # moto's backends live in this process: start from an empty account even if an earlier run left state.
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10) as resp:  # nosec B310  # fixed http://127.0.0.1 URL of our own moto server
            resp.read()
        values = ENV | {"AWS_ENDPOINT_URL": self.endpoint}
        self._saved_env = {k: os.environ.get(k) for k in values}
        os.environ.update(values)
        lambda_support.reset()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self._server is not None:
                self._server.stop()
        finally:
            for k, v in self._saved_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            lambda_support.reset()

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(service, region_name=ENV["AWS_DEFAULT_REGION"], endpoint_url=self.endpoint)  # type: ignore[call-overload]
