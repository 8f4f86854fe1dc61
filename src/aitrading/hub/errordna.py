"""ErrorDNA: group the platform's error events by fingerprint, classify them and attach recovery hints.

A fingerprint is the first 16 hex digits of sha256 over the exception type, its message normalised (UUIDs,
URLs, quoted strings, paths, hex, times and numbers become placeholders, so `order 123 failed` and `order
456 failed` are one error) and the innermost N frames of the platform's own code as `module:function` (line
numbers are left out so the fingerprint survives edits elsewhere in the file). The same fault therefore has
the same fingerprint in every service, process and version, and counts up in one group.

Recovery follows the `aitrading.common.errors` hierarchy: operational → stop, temporary → retry, bad input
→ reject; anything else → investigate. Severity follows recovery (stop: critical, investigate: high,
retry: medium, reject: low); an event logged at critical level is critical. Hints come from `RULES`, matched
against the raw type, message and causes (the normalised message has lost the port numbers they need).
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Literal

from aitrading.common.errors import BadInputError, OperationalError, TemporaryError
from aitrading.common.logging import ErrorReport

__all__ = [
    "RULES",
    "SEVERITIES",
    "ErrorDNA",
    "ErrorGroup",
    "Rule",
    "classify",
    "fingerprint",
    "hints_for",
    "normalise",
]

Recovery = Literal["stop", "retry", "reject", "investigate"]
SEVERITIES: tuple[str, ...] = ("critical", "high", "medium", "low")
_SEVERITY_OF: dict[str, str] = {"stop": "critical", "investigate": "high", "retry": "medium", "reject": "low"}
_HIERARCHY: tuple[tuple[type[Exception], Recovery], ...] = (
    (OperationalError, "stop"),
    (TemporaryError, "retry"),
    (BadInputError, "reject"),
)
_MAX_MESSAGE = 500

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"),
        "<uuid>",
    ),
    (re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s'\"]+"), "<url>"),
    (re.compile(r"(?<!\w)'[^'\n]*'|(?<!\w)\"[^\"\n]*\""), "<str>"),
    (re.compile(r"(?:\b[A-Za-z]:)?(?:[\\/][\w.\-]+){2,}[\\/]?|(?<![\w<])\.{1,2}/[\w.\-/]+"), "<path>"),
    (
        re.compile(r"\b0x[0-9a-fA-F]+\b|\b(?=[0-9a-fA-F]*[a-fA-F])(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,}\b"),
        "<hex>",
    ),
    (
        re.compile(r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?\b"),
        "<time>",
    ),
    (re.compile(r"(?<![\w<])\d+(?:[.,:]\d+)*"), "<num>"),
    (re.compile(r"\s+"), " "),
)


def normalise(message: str) -> str:
    """Return `message` with its variable parts replaced by placeholders (for grouping)."""
    text = message
    for pattern, placeholder in _PATTERNS:
        text = pattern.sub(placeholder, text)
    return text.strip()[:_MAX_MESSAGE]


def _frame_keys(frames: tuple[tuple[str, str, int], ...], depth: int) -> tuple[str, ...]:
    return tuple(f"{module}:{function}" for module, function, _ in frames[:depth])


def fingerprint(report: ErrorReport, depth: int = 5) -> str:
    """Return the fingerprint of `report`: type, normalised message and the innermost `depth` own frames."""
    parts = [report.exc_type, normalise(report.message), *_frame_keys(report.frames, depth)]
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()[:16]


def classify(report: ErrorReport) -> tuple[Recovery, str]:
    """Return (recovery action, severity) of `report` from the platform's error hierarchy."""
    mro = set(report.exc_mro) | {report.exc_type}
    recovery: Recovery = "investigate"
    for cls, action in _HIERARCHY:
        if f"{cls.__module__}.{cls.__qualname__}" in mro:
            recovery = action
            break
    severity = "critical" if report.level == "critical" else _SEVERITY_OF[recovery]
    return recovery, severity


@dataclass(frozen=True, slots=True)
class Rule:
    """A recovery hint for errors whose raw text matches `pattern`."""

    name: str
    pattern: re.Pattern[str]
    hint: str


def _refused(port: str) -> re.Pattern[str]:
    return re.compile(
        r"(?is)^(?=.*(?:connection refused|connect call failed|could not connect|cannot connect|"
        r"connection reset|errno 111|unreachable))(?=.*[:(\s,'\"]" + port + r"\b)"
    )


RULES: tuple[Rule, ...] = (
    Rule(
        "postgresql-down",
        _refused("5432"),
        "PostgreSQL is down or unreachable: start it (`pg_ctlcluster <version> main start`, or "
        "`docker compose up -d postgres`) and check storage.oltp_url.",
    ),
    Rule(
        "redis-down",
        _refused("6379"),
        "Redis is down or unreachable: start it (`redis-server --daemonize yes`, or "
        "`docker compose up -d redis`) and check storage.redis_url.",
    ),
    Rule(
        "nats-down",
        _refused("4222"),
        "NATS is down or unreachable: start it with JetStream (`nats-server -js`, or "
        "`docker compose up -d nats`) and check bus.nats_url.",
    ),
    Rule(
        "clickhouse-down",
        _refused("(?:8123|9000)"),
        "ClickHouse is down or unreachable: start it (`docker compose up -d clickhouse`) and check "
        "storage.clickhouse_url, or use the embedded store (storage.ticks=chdb).",
    ),
    Rule(
        "connection-refused",
        re.compile(r"(?i)connection refused|connect call failed|errno 111"),
        "A server the platform calls is not listening: check that it runs and that its host and port in "
        "the configuration are right.",
    ),
    Rule(
        "postgresql-auth",
        re.compile(r"(?i)password authentication failed|role \S+ does not exist"),
        "PostgreSQL refused the credentials: check the user and password in storage.oltp_url.",
    ),
    Rule(
        "database-missing",
        re.compile(r"(?i)database \S+ does not exist"),
        "The database does not exist: create it (`createdb <name>`; `aitrading up` does it in development) "
        "and start once with migrations.",
    ),
    Rule(
        "sqlite-locked",
        re.compile(r"(?i)database is locked"),
        "SQLite is busy with another writer: use PostgreSQL for concurrent writers (split mode).",
    ),
    Rule(
        "disk-full",
        re.compile(r"(?i)no space left on device|disk (?:is )?full"),
        "The disk is full: free space under storage.data_dir (logs, chDB, audit archive) or grow the volume.",
    ),
    Rule(
        "file-descriptors",
        re.compile(r"(?i)too many open files"),
        "The process ran out of file descriptors: raise the limit (`ulimit -n 65536`, LimitNOFILE= under "
        "systemd).",
    ),
    Rule(
        "tls-foreign-certificate",
        re.compile(r"(?i)certificate[ _]verify[ _]failed|unknown ca|certificate required"),
        "A TLS peer's certificate is not from the platform's CA (or is missing): run `aitrading certs init "
        "--force` once and restart every service so they share one CA.",
    ),
    Rule(
        "port-in-use",
        re.compile(r"(?i)address already in use|is already in use"),
        "Another process holds the port: stop it or give the service a free port (services.<name>).",
    ),
)


def hints_for(report: ErrorReport, rules: tuple[Rule, ...] = RULES) -> tuple[str, ...]:
    """Return the hints of every rule matching the raw type, message and causes of `report`."""
    text = "\n".join((f"{report.exc_type}: {report.message}", report.event, *report.causes))
    matched = [r for r in rules if r.pattern.search(text)]
    if any(r.name.endswith("-down") for r in matched):  # the specific server's hint says it all
        matched = [r for r in matched if r.name != "connection-refused"]
    return tuple(r.hint for r in matched)


@dataclass(slots=True)
class ErrorGroup:
    """All occurrences of one fingerprint."""

    fingerprint: str
    exc_type: str
    message: str
    frames: tuple[str, ...]
    recovery: str
    severity: str
    hints: tuple[str, ...]
    first_seen_ns: int
    last_seen_ns: int
    count: int = 0
    sample: str = ""
    event: str = ""
    services: set[str] = field(default_factory=set)
    instances: set[str] = field(default_factory=set)


class ErrorDNA:
    """The hub's error groups; beyond `max_groups` the least recently seen group leaves first."""

    def __init__(self, *, frames: int = 5, max_groups: int = 5000, rules: tuple[Rule, ...] = RULES) -> None:
        self._depth = frames
        self._max = max_groups
        self._rules = rules
        self._groups: OrderedDict[str, ErrorGroup] = OrderedDict()
        self.reports = 0
        self.dropped_by_senders = 0
        self.evicted = 0

    def record(self, report: ErrorReport) -> ErrorGroup:
        """Count `report` into its group (creating it) and return the group."""
        key = fingerprint(report, self._depth)
        count = max(report.count, 1)
        self.reports += 1
        self.dropped_by_senders += max(report.dropped, 0)
        group = self._groups.get(key)
        if group is None:
            recovery, severity = classify(report)
            group = ErrorGroup(
                fingerprint=key,
                exc_type=report.exc_type,
                message=normalise(report.message),
                frames=_frame_keys(report.frames, self._depth),
                recovery=recovery,
                severity=severity,
                hints=hints_for(report, self._rules),
                first_seen_ns=report.ts_ns,
                last_seen_ns=report.ts_ns,
            )
            self._groups[key] = group
            while len(self._groups) > self._max:
                self._groups.popitem(last=False)
                self.evicted += 1
        else:
            self._groups.move_to_end(key)
            if report.level == "critical":
                group.severity = "critical"
        group.count += count
        group.first_seen_ns = min(group.first_seen_ns, report.ts_ns)
        group.last_seen_ns = max(group.last_seen_ns, report.ts_ns)
        group.sample = report.message
        group.event = report.event
        group.services.add(report.service)
        group.instances.add(report.instance)
        return group

    def groups(
        self,
        *,
        service: str | None = None,
        severity: str | None = None,
        sort: Literal["count", "last_seen"] = "count",
    ) -> list[ErrorGroup]:
        """Return the groups, filtered by service and severity, most frequent (or most recent) first."""
        out = [
            g
            for g in self._groups.values()
            if (service is None or service in g.services) and (severity is None or g.severity == severity)
        ]
        if sort == "count":
            out.sort(key=lambda g: (-g.count, -g.last_seen_ns, g.fingerprint))
        else:
            out.sort(key=lambda g: (-g.last_seen_ns, -g.count, g.fingerprint))
        return out

    def __len__(self) -> int:
        return len(self._groups)
