"""Structured JSON logs with correlation ids.

`configure_logging` sets structlog (and the stdlib loggers of uvicorn and friends) to one JSON line per
event on stderr. `correlation_id` binds an id to the current task's context so every log line of one
request or one agent batch can be found together.
"""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import structlog

__all__ = ["configure_logging", "correlation_id", "new_correlation_id"]


def new_correlation_id() -> str:
    """Return a fresh random correlation id."""
    return uuid.uuid4().hex[:16]


@contextmanager
def correlation_id(value: str | None = None) -> Iterator[str]:
    """Bind `value` (or a new id) as `correlation_id` on every log line inside the block."""
    cid = value or new_correlation_id()
    with structlog.contextvars.bound_contextvars(correlation_id=cid):
        yield cid


class _Stderr:
    """Whatever `sys.stderr` is when a line is written (tests and CLIs swap it), never a stale stream."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


_STDERR = _Stderr()


def configure_logging(level: str = "INFO", *, json: bool = True, service: str | None = None) -> None:
    """Route structlog and stdlib logging to stderr, as JSON lines (or readable text with `json=False`)."""
    lvl = logging.getLevelName(level.upper())
    if not isinstance(lvl, int):
        lvl = logging.INFO
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if service:
        shared.insert(0, _bind_service(service))
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info if json else structlog.processors.ExceptionPrettyPrinter(),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=_STDERR),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(_STDERR)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(lvl)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _bind_service(service: str) -> structlog.types.Processor:
    def processor(_logger: object, _name: str, event: structlog.types.EventDict) -> structlog.types.EventDict:
        event.setdefault("service", service)
        return event

    return processor
