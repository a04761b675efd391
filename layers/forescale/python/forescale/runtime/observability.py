"""The Powertools objects, created once per process and shared by every handler module.

The Tracer is built on first use rather than at import: constructing it imports the X-Ray SDK, whose
recorder alone takes about 200 ms to import here, which would be most of a light handler's cold
import. The decorator below builds it when the handler first runs (inside the invocation), then
behaves exactly like `Tracer.capture_lambda_handler`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics

SERVICE = "forescale"
NAMESPACE = "forescale"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)

Handler = TypeVar("Handler", bound=Callable[..., Any])


class LazyTracer:
    """Powertools Tracer, constructed on first use (see the module docstring)."""

    def __init__(self, service: str) -> None:
        self._service = service
        self._tracer: Any = None

    @property
    def tracer(self) -> Any:
        if self._tracer is None:
            from aws_lambda_powertools import Tracer

            self._tracer = Tracer(service=self._service)
        return self._tracer

    def capture_lambda_handler(self, handler: Handler) -> Handler:
        traced: list[Callable[..., Any]] = []

        @functools.wraps(handler)
        def wrapper(event: Any, context: Any) -> Any:
            if not traced:
                traced.append(self.tracer.capture_lambda_handler(handler))
            return traced[0](event, context)

        return wrapper  # type: ignore[return-value]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tracer, name)


tracer = LazyTracer(SERVICE)
