"""The typed namespaces of hierarchical config, and which scopes may set each.

A namespace is a pydantic model whose every field has a default (the platform default). A scope's override
is a partial object: only the fields that scope sets. Each field's effective value is the user's, else the
tenant's, else the global override, else the default. Models check each field on its own (types, ranges,
choices); there are no cross-field rules, because the layers are written independently and a rule over two
fields could not be checked when only one layer changes.

Risk limits are a tenant's business, not a trader's: users cannot override `risk` (its scopes are global
and tenant). Everything else may be set at every scope.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from aitrading.common.errors import BadInputError, NotFoundError

__all__ = [
    "NAMESPACES",
    "SCOPES",
    "Namespace",
    "NotificationsConfig",
    "RiskConfig",
    "TradingConfig",
    "UIConfig",
    "defaults",
    "merge",
    "namespace",
    "validate_override",
]

SCOPES: tuple[str, ...] = ("global", "tenant", "user")
"""From the lowest precedence to the highest."""

_Lots = Decimal  # volumes in lots at this edge; the engine converts to its raw 1e-8 units


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RiskConfig(_Model):
    """Default risk limits of a tenant's accounts (the risk engine's starting point)."""

    max_order_lots: _Lots = Field(default=Decimal(10), gt=0, le=Decimal(100_000), decimal_places=8)
    max_position_lots: _Lots = Field(default=Decimal(50), gt=0, le=Decimal(1_000_000), decimal_places=8)
    max_open_positions: int = Field(default=50, ge=1, le=10_000)
    max_daily_loss_pct: Decimal = Field(default=Decimal(5), gt=0, le=100, decimal_places=4)
    max_leverage: int = Field(default=100, ge=1, le=3000)
    require_stop_loss: bool = False
    kill_switch: bool = False
    """True stops new orders of the tenant (closing positions stays possible)."""


class NotificationsConfig(_Model):
    """What to tell whom (Telegram)."""

    telegram_enabled: bool = False
    telegram_chat_id: str | None = Field(default=None, max_length=64, pattern=r"^-?\d+$|^@\w{5,32}$")
    min_severity: Literal["info", "warning", "critical"] = "warning"
    on_fill: bool = True
    on_risk_denied: bool = True
    daily_report: bool = False


class UIConfig(_Model):
    """How the dashboard looks for someone."""

    theme: Literal["system", "light", "dark"] = "system"
    language: str = Field(default="en", pattern=r"^[a-z]{2}(-[A-Z]{2})?$")
    timezone: str = Field(default="UTC", max_length=64)
    default_timeframe: Literal["M1", "M5", "M15", "M30", "H1", "H4", "D1"] = "H1"
    chart_type: Literal["candles", "bars", "line"] = "candles"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name such as Europe/London)"
            ) from None
        return value


class TradingConfig(_Model):
    """Defaults of new orders (MT5 request fields)."""

    default_deviation_points: int = Field(default=10, ge=0, le=10_000)
    default_filling: Literal["FOK", "IOC", "RETURN"] = "FOK"
    default_volume_lots: _Lots = Field(default=Decimal("0.01"), gt=0, le=Decimal(100_000), decimal_places=8)
    default_magic: int = Field(default=0, ge=0, le=2**63 - 1)
    confirm_orders: bool = True


class Namespace:
    """A namespace: its name, model and the scopes allowed to set it."""

    def __init__(self, name: str, model: type[_Model], scopes: tuple[str, ...], description: str) -> None:
        self.name = name
        self.model = model
        self.scopes = scopes
        self.description = description

    def schema(self) -> dict[str, Any]:
        """Return the JSON schema of the namespace's model."""
        return self.model.model_json_schema()


NAMESPACES: Mapping[str, Namespace] = {
    ns.name: ns
    for ns in (
        Namespace("risk", RiskConfig, ("global", "tenant"), "Default risk limits (tenant-wide)"),
        Namespace("notifications", NotificationsConfig, SCOPES, "Telegram alerts"),
        Namespace("ui", UIConfig, SCOPES, "Dashboard preferences"),
        Namespace("trading", TradingConfig, SCOPES, "Defaults of new orders (deviation, filling)"),
    )
}


def namespace(name: str) -> Namespace:
    """Return the namespace `name`; raise `NotFoundError` naming the known ones."""
    ns = NAMESPACES.get(name)
    if ns is None:
        raise NotFoundError(f"unknown config namespace {name!r}; known: {', '.join(NAMESPACES)}")
    return ns


def defaults(ns: Namespace) -> dict[str, Any]:
    """Return the platform defaults of `ns` as JSON-ready values."""
    return ns.model().model_dump(mode="json")


def _explain(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "value"
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(
            "unknown field " + repr(where) if err["type"] == "extra_forbidden" else f"{where}: {msg}"
        )
    return "; ".join(parts)


def validate_override(ns: Namespace, value: Any) -> dict[str, Any]:
    """Check a scope's partial override of `ns` and return it normalised (JSON-ready, only the given fields).

    Raises `BadInputError` naming every wrong field.
    """
    if not isinstance(value, dict):
        raise BadInputError(f"the {ns.name} override must be a JSON object of fields")
    if not value:
        raise BadInputError(f"the {ns.name} override is empty; DELETE it to inherit every field")
    try:
        model = ns.model.model_validate(value)
    except ValidationError as exc:
        raise BadInputError(f"invalid {ns.name} config: {_explain(exc)}") from None
    return model.model_dump(mode="json", include=set(value))


def merge(ns: Namespace, layers: list[tuple[str, dict[str, Any]]]) -> tuple[dict[str, Any], dict[str, str]]:
    """Merge `layers` (scope, override) from lowest to highest precedence over the defaults.

    Return (effective values, the scope each field came from: `default` or a scope). A layer that no longer
    validates (the schema tightened since it was written) is skipped field by field, not the whole config.
    """
    values = defaults(ns)
    sources = dict.fromkeys(values, "default")
    for scope, override in layers:
        for name, value in override.items():
            if name not in values:
                continue  # a field the schema no longer has
            try:
                checked = ns.model.model_validate({**values, name: value})
            except ValidationError:
                continue  # the schema tightened since this layer was written: the field is inherited
            values[name] = checked.model_dump(mode="json")[name]
            sources[name] = scope
    return values, sources
