"""Structured JSON logs with correlation ids.

`configure_logging` sets structlog (and the stdlib loggers of uvicorn and friends) to one JSON line per
event on stderr. `correlation_id` binds an id to the current task's context so every log line of one
request or one agent batch can be found together.

Error events for the central hub's ErrorDNA: every error-level event that carries an exception (structlog's
`log.exception(...)`, stdlib `logger.error(..., exc_info=...)`, uvicorn's unhandled request errors, asyncio's
unretrieved task exceptions) is turned into an `ErrorReport` by a processor in the logging chain and queued
in `ERROR_REPORTER`. Once a service attaches a bus (`aitrading.common.service.Service.report_to_hub`), a
task publishes the queue on `hub.error`. The processor never blocks (a bounded deque: the oldest reports
go first and are counted), never recurses (events logged while publishing are not reported, and an
exception is reported once however often it is logged), and never fails the log call.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import sys
import traceback
import uuid
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import msgspec
import structlog

from aitrading.common import metrics
from aitrading.common.bus.base import Bus
from aitrading.common.bus.codec import Message
from aitrading.common.clock import Clock, LiveClock

__all__ = [
    "ERROR_REPORTER",
    "ERROR_SUBJECT",
    "ErrorReport",
    "ErrorReporter",
    "configure_logging",
    "correlation_id",
    "error_tap",
    "new_correlation_id",
]


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
        error_tap,  # before exc_info is rendered to text: it reads the exception itself
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
            structlog.processors.format_exc_info
            if json
            else structlog.processors.ExceptionPrettyPrinter(file=_STDERR),  # type: ignore[arg-type]
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
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info if json else _identity,
                renderer,
            ],
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


def _identity(_logger: object, _name: str, event: structlog.types.EventDict) -> structlog.types.EventDict:
    return event


# -- error reports for the hub (ErrorDNA) -----------------------------------------------------------------

ERROR_SUBJECT = "hub.error"
"""The bus subject of error reports; the central hub subscribes to it."""

_ERROR_LEVELS = frozenset({"error", "critical", "exception", "fatal"})
_MAX_FRAMES = 20
_MAX_CAUSES = 5
_MAX_TEXT = 1000
_PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # .../aitrading
_SERVICE_PACKAGES = {"config_service": "config"}  # package name → service name where they differ

_log = structlog.get_logger("hub.errors")
_reporting: contextvars.ContextVar[bool] = contextvars.ContextVar("aitrading_error_reporting", default=False)


class ErrorReport(Message, frozen=True, kw_only=True):
    """An error event of a service: what was raised, where in the platform's code, and how often.

    `frames` are the platform's own frames, innermost first, as (module, function, line). `count` says how
    many identical events the sender coalesced into this report; `dropped` how many reports it lost to a
    full queue since its previous publish.
    """

    service: str
    instance: str
    ts_ns: int
    level: str
    logger: str
    event: str
    exc_type: str
    exc_mro: tuple[str, ...] = ()
    message: str = ""
    causes: tuple[str, ...] = ()
    frames: tuple[tuple[str, str, int], ...] = ()
    count: int = 1
    dropped: int = 0


def _qualname(cls: type) -> str:
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _text(exc: BaseException) -> str:
    try:
        return str(exc)[:_MAX_TEXT]
    except Exception:  # an exception whose __str__ fails still gets reported
        return "<unprintable>"


@lru_cache(maxsize=4096)
def _platform_module(filename: str) -> str | None:
    try:
        rel = Path(filename).resolve().relative_to(_PACKAGE_ROOT)
    except ValueError:
        return None
    return ".".join(("aitrading", *rel.with_suffix("").parts))


def _frames(exc: BaseException) -> tuple[tuple[str, str, int], ...]:
    out: list[tuple[str, str, int]] = []
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        module = _platform_module(frame.filename)
        if module is not None:
            out.append((module, frame.name, frame.lineno or 0))
            if len(out) == _MAX_FRAMES:
                break
    return tuple(out)


def _causes(exc: BaseException) -> tuple[str, ...]:
    out: list[str] = []
    seen = {id(exc)}
    cur: BaseException | None = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    while cur is not None and id(cur) not in seen and len(out) < _MAX_CAUSES:
        seen.add(id(cur))
        out.append(f"{_qualname(type(cur))}: {_text(cur)}"[:_MAX_TEXT])
        cur = cur.__cause__ or (None if cur.__suppress_context__ else cur.__context__)
    return tuple(out)


def _exception_of(exc_info: Any) -> BaseException | None:
    if isinstance(exc_info, BaseException):
        return exc_info
    if isinstance(exc_info, tuple) and len(exc_info) == 3 and isinstance(exc_info[1], BaseException):
        return exc_info[1]
    if exc_info is True:
        return sys.exc_info()[1]
    return None


class ErrorReporter:
    """The process's queue of error reports and the task that publishes it on the bus.

    One per process (`ERROR_REPORTER`), like the logging configuration it hangs off. Services attach and
    detach it as they start and stop; it publishes while at least one is attached.
    """

    def __init__(self, capacity: int = 1000) -> None:
        self._pending: deque[ErrorReport] = deque(maxlen=capacity)
        self._dropped = 0
        self._bus: Bus | None = None
        self._clock: Clock = LiveClock()
        self._instance = "unknown"
        self._services: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self._published = metrics.counter("hub_error_reports_published", "Error reports sent on hub.error")
        self._lost = metrics.counter("hub_error_reports_dropped", "Error reports lost: queue full, bus down")

    @property
    def pending(self) -> int:
        """Reports waiting to be published."""
        return len(self._pending)

    @property
    def dropped(self) -> int:
        """Reports lost to a full queue and not yet announced in a published report."""
        return self._dropped

    def resize(self, capacity: int) -> None:
        """Keep at most `capacity` waiting reports (the newest)."""
        if capacity != self._pending.maxlen:
            self._pending = deque(self._pending, maxlen=capacity)

    def attach(self, bus: Bus, clock: Clock, *, instance: str, service: str) -> None:
        """Publish this process's error reports on `bus` (call from the event loop; once per service)."""
        self._services.append(service)
        if self._bus is not None:
            return
        self._bus, self._clock, self._instance = bus, clock, instance
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        if self._pending:
            self._wake.set()
        self._task = self._loop.create_task(self._run(), name="hub-error-reports")

    async def detach(self, service: str) -> None:
        """Stop publishing for `service`; the last one out publishes what is queued and stops the task."""
        if service in self._services:
            self._services.remove(service)
        if self._services or self._bus is None:
            return
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self.flush()
        self._bus = self._loop = self._wake = None

    def default_service(self) -> str:
        """The service an event belongs to when nothing in it says: the process's only one, or `platform`."""
        names = set(self._services)
        return next(iter(names)) if len(names) == 1 else "platform"

    def report(self, exc: BaseException, event: structlog.types.EventDict, level: str) -> None:
        """Queue a report of `exc` logged as `event` (never blocks, never raises)."""
        frames = _frames(exc)
        report = ErrorReport(
            service=self._service_of(event, frames),
            instance=self._instance,
            ts_ns=self._clock.now_ns(),
            level=level,
            logger=str(event.get("logger") or event.get("component") or "")[:200],
            event=str(event.get("event", ""))[:_MAX_TEXT],
            exc_type=_qualname(type(exc)),
            exc_mro=tuple(_qualname(c) for c in type(exc).__mro__ if c not in (object, BaseException)),
            message=_text(exc),
            causes=_causes(exc),
            frames=frames,
        )
        if len(self._pending) == self._pending.maxlen:
            self._dropped += 1
            self._lost.inc()
        self._pending.append(report)
        self._notify()

    def _service_of(self, event: structlog.types.EventDict, frames: tuple[tuple[str, str, int], ...]) -> str:
        named = event.get("service")
        if isinstance(named, str) and named:
            return named
        component = event.get("component")
        if isinstance(component, str) and component in self._services:
            return component
        for module, _, _ in frames:
            package = module.split(".")[1] if module.count(".") >= 1 else ""
            service = _SERVICE_PACKAGES.get(package, package)
            if service in self._services:
                return service
        return self.default_service()

    def _notify(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is None or wake is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        try:
            if running is loop:
                wake.set()
            else:  # logged from another thread (executors, chDB): wake the loop safely
                loop.call_soon_threadsafe(wake.set)
        except RuntimeError:  # the loop is closed; the reports wait for the next attach
            pass

    async def _run(self) -> None:
        _reporting.set(True)  # whatever this task logs (bus errors, in-process subscribers) is not reported
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()
            await asyncio.sleep(0.05)  # batch bursts: identical events coalesce into one report

    async def flush(self) -> int:
        """Publish every queued report now (identical ones coalesced); return how many were published."""
        bus = self._bus
        if bus is None or not self._pending:
            return 0
        token = _reporting.set(True)
        try:
            batch: dict[tuple[Any, ...], ErrorReport] = {}
            while self._pending:
                r = self._pending.popleft()
                key = (r.service, r.instance, r.level, r.event, r.exc_type, r.message, r.causes, r.frames)
                known = batch.get(key)
                batch[key] = r if known is None else msgspec.structs.replace(r, count=known.count + r.count)
            sent = 0
            for report in batch.values():
                dropped, self._dropped = self._dropped, 0
                out = msgspec.structs.replace(report, dropped=dropped) if dropped else report
                try:
                    await bus.publish(ERROR_SUBJECT, out)
                except Exception as exc:  # the bus is down: count, say so once, never report it
                    self._dropped += dropped + report.count
                    self._lost.inc(report.count)
                    if not self._failing:
                        self._failing = True
                        _log.warning("error_reports_unpublished", error=repr(exc))
                    continue
                self._failing = False
                self._published.inc()
                sent += 1
            return sent
        finally:
            _reporting.reset(token)


ERROR_REPORTER = ErrorReporter()
"""The process's error reporter (the logging configuration is process-wide too)."""


def error_tap(_logger: object, method: str, event: structlog.types.EventDict) -> structlog.types.EventDict:
    """Queue an `ErrorReport` for error-level events that carry an exception; pass the event on unchanged."""
    if _reporting.get():
        return event
    level = str(event.get("level") or method).lower()
    if level not in _ERROR_LEVELS:
        return event
    try:
        exc = _exception_of(event.get("exc_info"))
        if exc is None or getattr(exc, "_aitrading_reported", False):
            return event
        # Report once however often it is logged (exceptions without a __dict__ may be reported again).
        with contextlib.suppress(AttributeError):
            exc._aitrading_reported = True  # type: ignore[attr-defined]
        token = _reporting.set(True)
        try:
            ERROR_REPORTER.report(exc, event, "critical" if level in ("critical", "fatal") else "error")
        finally:
            _reporting.reset(token)
    except Exception:  # noqa: S110 - a broken report must never break the log call that carried it
        pass
    return event
