"""ErrorDNA: normalisation, fingerprint stability, classification by the error hierarchy, hints, grouping."""

from __future__ import annotations

import msgspec
import pytest

from aitrading.common.auth import TokenService
from aitrading.common.config import load_config
from aitrading.common.errors import ConfigError, NotFoundError, TemporaryError
from aitrading.common.logging import ErrorReport, ErrorReporter
from aitrading.hub.errordna import ErrorDNA, classify, fingerprint, hints_for, normalise


def report(exc_type: str = "builtins.KeyError", message: str = "x", **kw: object) -> ErrorReport:
    fields: dict[str, object] = {
        "service": "engine",
        "instance": "h:1",
        "ts_ns": 1_000,
        "level": "error",
        "logger": "engine",
        "event": "order_failed",
        "exc_type": exc_type,
        "message": message,
        "frames": (("aitrading.engine.risk", "check", 10), ("aitrading.engine.service", "on_order", 20)),
    }
    fields.update(kw)
    return ErrorReport(**fields)  # type: ignore[arg-type]


def captured(exc: BaseException) -> ErrorReport:
    """The report the logging chain would make of `exc` (through the real reporter)."""
    reporter = ErrorReporter()
    reporter.report(exc, {"event": "boom", "logger": "test"}, "error")
    return reporter._pending[0]


def raised_in_platform_code(port: int) -> ErrorReport:
    with pytest.raises(ConfigError) as info:
        load_config(services={"hub": port, "config": port})
    return captured(info.value)


# --- normalisation ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        (
            "order 123 of account 9f1c2b4e-1a2b-4c3d-8e9f-0123456789ab failed after 2.5 s",
            "order <num> of account <uuid> failed after <num> s",
        ),
        ("cannot open '/var/lib/aitrading/x.sqlite'", "cannot open <str>"),
        ('unknown symbol "EURUSD.r" on feed "MetaQuotes-Demo"', "unknown symbol <str> on feed <str>"),
        ("file /var/data/chdb/part_1 is missing", "file <path> is missing"),
        ("no such file: ./var/certs/ca.crt", "no such file: <path>"),
        ("connect to postgresql+asyncpg://u@127.0.0.1:5432/db failed", "connect to <url> failed"),
        ("hash deadbeef01 does not match at 0x7ffe12", "hash <hex> does not match at <hex>"),
        ("Connect call failed ('127.0.0.1', 5432)", "Connect call failed (<str>, <num>)"),
        ("[Errno 111] Connection refused", "[Errno <num>] Connection refused"),
        ("M15 bar of EURUSD has utf8 name", "M15 bar of EURUSD has utf8 name"),
        ("can't parse 'abc'   at   line 3", "can't parse <str> at line <num>"),
        ("2024-01-02T10:00:00.5Z is after 2024-01-01 09:00", "<time> is after <time>"),
        ("bar at 2024-01-02T10:00:00+02:00 closed", "bar at <time> closed"),
    ],
)
def test_messages_are_normalised_to_placeholders(raw: str, normal: str) -> None:
    assert normalise(raw) == normal


# --- fingerprints ----------------------------------------------------------------------------------------


def test_the_same_fault_with_other_numbers_ids_and_services_has_one_fingerprint() -> None:
    a = report(message="order 17 of 9f1c2b4e-1a2b-4c3d-8e9f-0123456789ab rejected", service="engine")
    b = report(
        message="order 99 of 00000000-0000-4000-8000-000000000001 rejected",
        service="gateway",
        instance="other:2",
        ts_ns=5,
        frames=(("aitrading.engine.risk", "check", 11), ("aitrading.engine.service", "on_order", 99)),
    )
    assert fingerprint(a) == fingerprint(b)
    assert len(fingerprint(a)) == 16


def test_a_real_exception_raised_twice_with_other_values_has_a_stable_fingerprint() -> None:
    first, second = raised_in_platform_code(9001), raised_in_platform_code(9002)
    assert first.message != second.message
    assert first.frames[0][:2] == ("aitrading.common.config", "load_config")
    assert first.exc_type == "aitrading.common.errors.ConfigError"
    assert fingerprint(first) == fingerprint(second)
    other = captured(_value_error_in_platform_code())
    assert fingerprint(other) != fingerprint(first)


def _value_error_in_platform_code() -> ValueError:
    with pytest.raises(ValueError, match="at least 32 bytes") as info:
        TokenService("short")
    return info.value


def test_fingerprint_depends_on_type_message_and_only_the_innermost_frames() -> None:
    base = report()
    assert fingerprint(base) != fingerprint(report(exc_type="builtins.ValueError"))
    assert fingerprint(base) != fingerprint(report(message="y"))
    inner_changed = (("aitrading.engine.limits", "check", 10), *base.frames[1:])
    assert fingerprint(base) != fingerprint(report(frames=inner_changed))
    deep = (*base.frames, ("aitrading.kernel", "start", 1))
    assert fingerprint(report(frames=deep), depth=2) == fingerprint(base, depth=2)
    assert fingerprint(report(frames=deep), depth=3) != fingerprint(base, depth=3)
    assert fingerprint(base) == fingerprint(report(level="critical", event="other", count=7))


# --- classification and hints ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "recovery", "severity"),
    [
        (ConfigError("bad key"), "stop", "critical"),
        (TemporaryError("broker busy"), "retry", "medium"),
        (NotFoundError("no such order"), "reject", "low"),
        (KeyError("x"), "investigate", "high"),
    ],
)
def test_recovery_and_severity_follow_the_error_hierarchy(
    exc: Exception, recovery: str, severity: str
) -> None:
    assert classify(captured(exc)) == (recovery, severity)


def test_an_event_logged_critical_is_critical_whatever_its_type() -> None:
    assert classify(report(level="critical")) == ("investigate", "critical")
    assert classify(msgspec.structs.replace(captured(NotFoundError("x")), level="critical"))[1] == "critical"


def test_connection_refused_to_5432_hints_postgresql_is_down_and_how_to_start_it() -> None:
    try:
        try:
            raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)")
        except ConnectionRefusedError as exc:
            raise TemporaryError("database unavailable") from exc
    except TemporaryError as wrapped:
        rep = captured(wrapped)
    assert rep.causes == ("ConnectionRefusedError: [Errno 111] Connect call failed ('127.0.0.1', 5432)",)
    [hint] = hints_for(rep)
    assert hint.startswith("PostgreSQL is down")
    assert "pg_ctlcluster" in hint


@pytest.mark.parametrize(
    ("message", "starts"),
    [
        ("Error 111 connecting to 127.0.0.1:6379. Connection refused.", "Redis is down"),
        ("nats: connection refused to nats://127.0.0.1:4222", "NATS is down"),
        ("[Errno 111] Connection refused (port 8123)", "ClickHouse is down"),
        ("[Errno 111] Connection refused to 127.0.0.1:9999", "A server the platform calls"),
        ("[Errno 28] No space left on device", "The disk is full"),
        ('password authentication failed for user "app"', "PostgreSQL refused the credentials"),
        ("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed", "A TLS peer's certificate"),
        ("port 8010 (hub) is already in use on 127.0.0.1", "Another process holds the port"),
    ],
)
def test_rule_table_hints(message: str, starts: str) -> None:
    hints = hints_for(report(exc_type="builtins.OSError", message=message))
    assert len(hints) == 1
    assert hints[0].startswith(starts)


def test_an_error_no_rule_knows_has_no_hint() -> None:
    assert hints_for(report(message="list index out of range")) == ()


# --- grouping ----------------------------------------------------------------------------------------------


def test_groups_count_occurrences_with_first_and_last_seen_and_services() -> None:
    dna = ErrorDNA()
    dna.record(report(message="order 1 failed", ts_ns=300, service="engine"))
    dna.record(report(message="order 2 failed", ts_ns=100, service="gateway", count=4))
    group = dna.record(report(message="order 3 failed", ts_ns=200, service="engine", instance="h:2"))
    assert len(dna) == 1
    assert group.count == 6
    assert (group.first_seen_ns, group.last_seen_ns) == (100, 300)
    assert group.services == {"engine", "gateway"}
    assert group.instances == {"h:1", "h:2"}
    assert group.message == "order <num> failed"
    assert group.sample == "order 3 failed"
    assert group.frames == ("aitrading.engine.risk:check", "aitrading.engine.service:on_order")


def test_groups_sort_by_count_or_last_seen_and_filter_by_service_and_severity() -> None:
    dna = ErrorDNA()
    dna.record(report(message="often", ts_ns=1, count=5))
    dna.record(
        report(
            exc_type="aitrading.common.errors.TemporaryError",
            message="recent",
            ts_ns=9,
            service="ml",
            exc_mro=("aitrading.common.errors.TemporaryError", "aitrading.common.errors.AITradingError"),
        )
    )
    assert [g.sample for g in dna.groups()] == ["often", "recent"]
    assert [g.sample for g in dna.groups(sort="last_seen")] == ["recent", "often"]
    assert [g.sample for g in dna.groups(service="ml")] == ["recent"]
    assert [g.sample for g in dna.groups(severity="medium")] == ["recent"]
    assert [g.sample for g in dna.groups(severity="high")] == ["often"]
    assert dna.groups(service="nobody") == []


def test_beyond_max_groups_the_least_recently_seen_group_is_evicted() -> None:
    dna = ErrorDNA(max_groups=2)
    dna.record(report(exc_type="builtins.A"))
    dna.record(report(exc_type="builtins.B"))
    dna.record(report(exc_type="builtins.A"))  # A is touched again: B is now the oldest
    dna.record(report(exc_type="builtins.C"))
    assert sorted(g.exc_type for g in dna.groups()) == ["builtins.A", "builtins.C"]
    assert dna.evicted == 1


def test_reports_dropped_by_senders_are_counted() -> None:
    dna = ErrorDNA()
    dna.record(report(dropped=3))
    dna.record(report(dropped=2))
    assert dna.dropped_by_senders == 5
    assert dna.reports == 2
