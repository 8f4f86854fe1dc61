"""The typed root configuration: one object built from env, `.env` and an optional `aitrading.yaml`.

Precedence (highest first): explicit overrides, environment (`AITRADING_` prefix, `__` between levels,
e.g. `AITRADING_STORAGE__OLTP_URL`), `.env`, the YAML file (`AITRADING_CONFIG` or `./aitrading.yaml`),
defaults. Every section is a frozen model that forbids unknown keys, so a typo is an error naming the key.
Production mode refuses to start while any secret is missing or still the development default.
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from aitrading.common.errors import ConfigError

__all__ = [
    "SERVICE_NAMES",
    "AgentConfig",
    "BridgeConfig",
    "BusConfig",
    "HubConfig",
    "PlatformConfig",
    "SecurityConfig",
    "ServicesConfig",
    "SimulatorConfig",
    "StorageConfig",
    "TLSConfig",
    "load_config",
]

ENV_PREFIX = "AITRADING_"
DEV_SECRET_PREFIX = "dev-insecure-"  # noqa: S105 - the marker of development-only secrets

SERVICE_NAMES: tuple[str, ...] = (
    "gateway",
    "bridge",
    "engine",
    "dbservice",
    "hub",
    "features",
    "config",
    "ml",
    "decision",
    "notify",
    "lstm",
)


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ServicesConfig(_Section):
    """Where each service listens."""

    host: str = "127.0.0.1"
    gateway: int = 8000
    bridge: int = 8001
    engine: int = 8007
    dbservice: int = 8008
    hub: int = 8010
    features: int = 8011
    config: int = 8012
    ml: int = 8013
    decision: int = 8014
    notify: int = 8016
    lstm: int = 8022
    enabled: tuple[str, ...] = SERVICE_NAMES
    ready_timeout_s: float = 30.0
    event_loop: Literal["auto", "uvloop", "asyncio"] = "auto"
    """The event loop the platform's processes run on: `auto` takes uvloop where it is installed (it comes
    with uvicorn[standard] on Linux and macOS), else asyncio's own."""

    def port(self, service: str) -> int:
        """Return the port of `service`."""
        if service not in SERVICE_NAMES:
            raise ConfigError(f"unknown service {service!r}; known: {', '.join(SERVICE_NAMES)}")
        port: int = getattr(self, service)
        return port

    def url(self, service: str) -> str:
        """Return the base HTTP URL of `service`."""
        return f"http://{self.host}:{self.port(service)}"

    @model_validator(mode="after")
    def _check(self) -> ServicesConfig:
        unknown = [s for s in self.enabled if s not in SERVICE_NAMES]
        if unknown:
            raise ValueError(f"unknown services in 'enabled': {', '.join(unknown)}")
        ports = [self.port(s) for s in SERVICE_NAMES]
        dupes = {p for p in ports if ports.count(p) > 1}
        if dupes:
            raise ValueError(f"two services share port(s) {sorted(dupes)}")
        return self


class StorageConfig(_Section):
    """Where state, ticks and cached values live."""

    data_dir: Path = Path("var")
    oltp_url: str = ""
    """The OLTP database. On PostgreSQL its user is the schema owner: migrations run as it."""
    oltp_app_role: str = Field(default="aitrading_app", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    """PostgreSQL: the non-owner role (NOSUPERUSER, NOBYPASSRLS, DML only) the services log in as, on the
    host and database of `oltp_url`; migrations create it. Row-level security binds only such a role."""
    oltp_app_password: SecretStr = SecretStr(DEV_SECRET_PREFIX + "oltp-app-password")
    """PostgreSQL: the application role's password; production mode refuses the development default."""
    ticks: Literal["chdb", "clickhouse"] = "chdb"
    clickhouse_url: str = "http://default:@127.0.0.1:8123/default"
    cache: Literal["memory", "redis"] = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"

    def resolved_oltp_url(self) -> str:
        """Return the OLTP database URL (the owner's on PostgreSQL), by default SQLite under `data_dir`."""
        return self.oltp_url or f"sqlite+aiosqlite:///{self.data_dir / 'aitrading.sqlite'}"

    def uses_postgresql(self) -> bool:
        """Tell whether the OLTP database is PostgreSQL (else SQLite, which has no roles)."""
        return self.resolved_oltp_url().split(":", 1)[0].split("+", 1)[0] == "postgresql"

    def resolved_app_url(self) -> str:
        """Return the URL the services connect with: on PostgreSQL `oltp_url` as the application role.

        Only host, port, database and query of `oltp_url` are used, so services that do not migrate can be
        given an `oltp_url` without the owner's password.
        """
        if not self.uses_postgresql():
            return self.resolved_oltp_url()
        from sqlalchemy.engine import make_url

        url = make_url(self.resolved_oltp_url()).set(
            username=self.oltp_app_role, password=self.oltp_app_password.get_secret_value()
        )
        return url.render_as_string(hide_password=False)

    def default_secrets(self) -> list[str]:
        """Name the storage secrets still missing or at their development default (checked in production)."""
        password = self.oltp_app_password.get_secret_value()
        if self.uses_postgresql() and (not password or password.startswith(DEV_SECRET_PREFIX)):
            return ["storage.oltp_app_password"]
        return []

    @property
    def chdb_path(self) -> Path:
        return self.data_dir / "chdb"


class BusConfig(_Section):
    """Which bus carries messages between components."""

    kind: Literal["memory", "nats"] = "memory"
    nats_url: str = "nats://127.0.0.1:4222"
    stream_prefix: str = ""


class TLSConfig(_Section):
    """TLS between the platform's services, with certificates from a local CA (`aitrading certs init`)."""

    enabled: bool = False
    """Serve HTTPS on every service port; internal clients verify the servers against the local CA."""
    cert_dir: Path = Path("var/certs")
    """Where `aitrading certs init` wrote `ca.crt`, `server/<service>.crt|key` and `client/<name>.crt|key`."""
    mtls: bool = False
    """Internal services also require a client certificate from the local CA (mutual TLS)."""
    public_services: tuple[str, ...] = ("gateway", "bridge")
    """Services whose ports face clients outside the platform (browsers, PC agents): TLS but no client
    certificate required, even with `mtls`."""

    @model_validator(mode="after")
    def _known_services(self) -> TLSConfig:
        unknown = [s for s in self.public_services if s not in SERVICE_NAMES]
        if unknown:
            raise ValueError(f"unknown services in 'public_services': {', '.join(unknown)}")
        if self.mtls and not self.enabled:
            raise ValueError("security.tls.mtls needs security.tls.enabled")
        return self


class SecurityConfig(_Section):
    """Secrets and security switches. Defaults work in development only."""

    secret_key: SecretStr = SecretStr(DEV_SECRET_PREFIX + "secret-key-for-development-only")
    service_token_secret: SecretStr = SecretStr(DEV_SECRET_PREFIX + "service-token-for-development-only")
    dev_device_key: SecretStr = SecretStr(DEV_SECRET_PREFIX + "device-key-0001")
    tls: TLSConfig = Field(default_factory=TLSConfig)


class SimulatorConfig(_Section):
    """The simulated MT5 terminal that `aitrading up` starts."""

    enabled: bool = True
    feed: str = "SIM"
    symbols: tuple[str, ...] = ("EURUSD", "GBPUSD", "USDJPY", "XAUUSD")
    seed: int = 7
    always_open: bool = True
    """Trade around the clock (development demos, CI on weekends); False keeps FX hours and weekends."""
    rate_factor: float = 1.0
    """Multiplies the synthetic tick rate of every session."""
    replay_file: Path | None = None
    """Replay this history file (one symbol) as the live feed instead of the synthetic market."""
    replay_format: Literal["mt5", "histdata", "dukascopy", "truefx", "csv"] = "truefx"
    replay_symbol: str = ""
    replay_tz: str | None = None
    """Time zone of the file's times where the format needs one (MT5 exports: broker time)."""
    replay_speed: float = Field(default=1.0, gt=0)
    """1 replays at the recorded pace; 60 plays a minute of history every second."""
    balance: Decimal = Field(default=Decimal(10_000), ge=0)
    """Starting balance of the simulated account (its books then keep the real one)."""
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    leverage: int = Field(default=100, gt=0)
    hedging: bool = True
    """True: a position per deal IN (retail hedging); False: one position per symbol (netting)."""
    slippage_points: int = Field(default=0, ge=0)
    """Market fills slip against the trader by a seeded random 0..N points."""
    requote_probability: float = Field(default=0.0, ge=0, le=1)
    """Chance that a market request within its deviation is requoted anyway (seeded)."""
    commission_per_lot: Decimal = Field(default=Decimal(0), ge=0)
    """Commission per lot per side, in the account currency, booked on every deal."""
    state_path: Path | None = None
    """Keep the simulated broker's books (balance, positions, orders, deals) in this file across restarts."""

    @model_validator(mode="after")
    def _replay_names_its_symbol(self) -> SimulatorConfig:
        if self.replay_file is not None and not self.replay_symbol:
            raise ValueError("simulator.replay_symbol is required with simulator.replay_file")
        return self


def _comma_separated(value: object) -> object:
    """Accept `"A, B"` (YAML, a plain environment value) as well as a list for a set of names."""
    if isinstance(value, str):
        return [s.strip() for s in value.split(",") if s.strip()]
    return value


class FeaturesConfig(_Section):
    """Feature vectors (service 8011): one per closed bar always; also one per tick for `tick_symbols`.

    Environment: `AITRADING_FEATURES__TICK_SYMBOLS='["EURUSD","GBPUSD"]'`.
    """

    tick_symbols: frozenset[str] = frozenset()
    tick_timeframe: str = "M1"
    """The bars whose latest vector per-tick vectors extend."""
    cache_ttl_s: float | None = None
    warmup_bars: int = Field(default=1000, ge=0, le=100_000)
    """Stored bars replayed into a series' engine at start and when a series is first seen (0: none, the
    engines then warm up from live bars only). See `aitrading.features.service`."""
    warmup_timeframes: frozenset[str] = frozenset({"M1", "M5", "M15", "M30", "H1", "H4", "D1"})
    """The timeframes of the stored series warmed up at start (others warm when their first bar comes)."""
    warmup_retry_s: float = Field(default=60.0, gt=0)
    """After history failed for a series, how long it warms from live bars before asking again."""

    @field_validator("tick_symbols", mode="before")
    @classmethod
    def _names(cls, value: object) -> object:
        return _comma_separated(value)

    @field_validator("tick_timeframe")
    @classmethod
    def _timeframe(cls, value: str) -> str:
        from aitrading.model.market import Timeframe

        return Timeframe.parse(value).name

    @field_validator("warmup_timeframes", mode="before")
    @classmethod
    def _timeframes(cls, value: object) -> object:
        from aitrading.model.market import Timeframe

        names = _comma_separated(value)
        if isinstance(names, list | tuple | set | frozenset):
            return frozenset(Timeframe.parse(str(n)).name for n in names)
        return names


class DecisionServiceConfig(_Section):
    """The decision engine (service 8014): who trades, on which closed bars, with which strategies.

    `strategies` is `name[:k=v,k=v];name…`, e.g. `sma_cross:fast=10,slow=20;rsi:period=14`. `tenant` is the
    tenant's id (UUID; `aitrading tenants list`), `account` the MT5 login its agent declares. The service
    trades only when tenant, account and strategies are set; otherwise it runs its shell and says why.
    """

    tenant: str = ""
    account: str = ""
    feed: str = "SIM"
    symbols: str = "EURUSD"
    timeframe: str = "H1"
    strategies: str = ""
    strategy: str = "ensemble"
    """The name signals carry (`sig.<tenant>.<strategy>`) and the engine's per-strategy risk limits key."""
    threshold: float = 0.0
    max_failures: int = 3


class HubConfig(_Section):
    """Heartbeats and error reports to the central hub, and how the hub judges them."""

    heartbeat_interval_s: float = Field(default=5.0, gt=0)
    """Every service publishes a heartbeat on `hub.heartbeat` this often."""
    stale_after_beats: int = Field(default=3, ge=1)
    """The hub marks an instance stale after this many missed heartbeats."""
    forget_after_s: float = Field(default=3600.0, gt=0)
    """Stopped or stale instances leave the registry after this long."""
    error_queue: int = Field(default=1000, ge=1)
    """Error reports waiting to be published per process; beyond it the oldest are dropped (counted)."""
    error_frames: int = Field(default=5, ge=1, le=50)
    """Frames of the platform's own code that make up an error's fingerprint (innermost first)."""
    max_error_groups: int = Field(default=5000, ge=1)
    """Distinct error fingerprints the hub keeps; the least recently seen go first."""


class BridgeConfig(_Section):
    """The data bridge's agent WebSocket and tick pipeline."""

    max_frame_bytes: int = 1_048_576
    max_batch_ticks: int = 10_000
    store_flush_ms: int = 200
    store_flush_ticks: int = 50_000


class AgentConfig(_Section):
    """The PC agent."""

    bridge_url: str = ""
    """Empty: the platform's own bridge (`services.host`/`services.bridge`; `wss://` when TLS is on)."""
    ca_file: Path | None = None
    """The CA that signs the bridge's certificate (`wss://`). None: the platform's local CA when
    `security.tls` is on, else the system's trust store (a bridge behind a public certificate)."""
    device_id: str = "dev-device"
    batch_max: int = 2_000
    flush_ms: int = 50
    poll_ms: int = 20
    buffer_path: Path | None = None
    """None: `agent-buffer.sqlite` under `storage.data_dir`."""
    status_port: int = 9001


class PlatformConfig(BaseSettings):
    """The root configuration of the whole platform."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_file=".env",
        extra="forbid",
        frozen=True,
    )

    mode: Literal["development", "production", "test"] = "development"
    log_level: str = "INFO"
    log_json: bool = True
    services: ServicesConfig = Field(default_factory=ServicesConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    bus: BusConfig = Field(default_factory=BusConfig)
    security: SecurityConfig = Field(default_factory=SecurityConfig)
    simulator: SimulatorConfig = Field(default_factory=SimulatorConfig)
    bridge: BridgeConfig = Field(default_factory=BridgeConfig)
    hub: HubConfig = Field(default_factory=HubConfig)
    agent: AgentConfig = Field(default_factory=AgentConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    decision: DecisionServiceConfig = Field(default_factory=DecisionServiceConfig)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_file = os.environ.get(ENV_PREFIX + "CONFIG", "aitrading.yaml")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, dotenv_settings]
        if Path(yaml_file).is_file():
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=yaml_file))
        elif ENV_PREFIX + "CONFIG" in os.environ:
            raise ConfigError(f"config file {yaml_file} (from {ENV_PREFIX}CONFIG) does not exist")
        sources.append(file_secret_settings)
        return tuple(sources)

    @model_validator(mode="after")
    def _refuse_default_secrets(self) -> PlatformConfig:
        if self.mode != "production":
            return self
        # dev_device_key is provisioned only in development, so it is not a production secret.
        bad = [
            f"security.{name}"
            for name, value in self.security
            if isinstance(value, SecretStr)  # settings such as `tls` are switches, not secrets
            and name != "dev_device_key"
            and (not value.get_secret_value() or value.get_secret_value().startswith(DEV_SECRET_PREFIX))
        ]
        bad += self.storage.default_secrets()
        if bad:
            env = ", ".join(ENV_PREFIX + b.upper().replace(".", "__") for b in bad)
            raise ValueError(f"production mode needs real secrets; set {', '.join(bad)} ({env})")
        return self

    def resolved_agent(self) -> AgentConfig:
        """The agent config with its bridge URL and buffer path filled in from the rest of the config."""
        agent = self.agent
        update: dict[str, Any] = {}
        tls = self.security.tls
        if not agent.bridge_url:
            scheme = "wss" if tls.enabled else "ws"
            # A wildcard listen address is no place to connect to, nor a name in the certificate.
            host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.services.host, self.services.host)  # noqa: S104
            host = f"[{host}]" if ":" in host else host
            update["bridge_url"] = f"{scheme}://{host}:{self.services.bridge}/ws/agent"
        if agent.ca_file is None and tls.enabled:
            update["ca_file"] = tls.cert_dir / "ca.crt"
        if agent.buffer_path is None:
            update["buffer_path"] = self.storage.data_dir / "agent-buffer.sqlite"
        return agent.model_copy(update=update) if update else agent

    @model_validator(mode="after")
    def _agent_fits_bridge(self) -> PlatformConfig:
        if self.agent.batch_max > self.bridge.max_batch_ticks:
            raise ValueError(
                f"agent.batch_max ({self.agent.batch_max}) exceeds bridge.max_batch_ticks "
                f"({self.bridge.max_batch_ticks}); the bridge would refuse every batch"
            )
        return self

    def for_service(self) -> dict[str, Any]:
        """Return the config as plain data with secrets hidden (for `/version` and logs)."""
        return self.model_dump(mode="json", exclude={"security"})


def _unknown_env_keys() -> list[str]:
    # AGENT_PASSPHRASE unlocks the agent's credential file; TEST_* point the test suite at servers;
    # AGENT_CRASH_AFTER_ORDER_SEND is the agent's fault-injection hook for crash tests (ADR 0009).
    known = {name.upper() for name in PlatformConfig.model_fields} | {
        "CONFIG",
        "AGENT_PASSPHRASE",
        "AGENT_CRASH_AFTER_ORDER_SEND",
    }
    out = []
    for key in os.environ:
        if key.startswith(ENV_PREFIX) and not key.startswith(ENV_PREFIX + "TEST_"):
            head = key[len(ENV_PREFIX) :].split("__", 1)[0]
            if head not in known:
                out.append(key)
    return out


def load_config(**overrides: Any) -> PlatformConfig:
    """Build the root config, turning every validation problem into one `ConfigError` that names the keys."""
    unknown = _unknown_env_keys()
    if unknown:
        raise ConfigError(f"unknown config key(s) in environment: {', '.join(sorted(unknown))}")
    try:
        return PlatformConfig(**overrides)
    except ValidationError as exc:
        raise ConfigError(_explain(exc)) from None


def _explain(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "config"
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown config key '{where}'")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            parts.append(f"{where}: {msg}" if where != "config" else msg)
    return "; ".join(parts)
