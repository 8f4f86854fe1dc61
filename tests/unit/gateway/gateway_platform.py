"""The whole platform in one process (as `aitrading up` builds it), driven through the gateway's app.

The kernel builds every service from one config with identity wired into the gateway (services.py); the
tests talk to the gateway's ASGI app only, as a client would, and use the identity service directly just to
set up tenants and users. The clock is the live one shifted by `advance`, so throttling delays and token
expiry can be crossed without waiting while the services' own loops keep real time.

Imported by `test_gateway_platform_*` (pytest puts this folder on `sys.path`); not a test module.
"""

from __future__ import annotations

import asyncio
import copy
import re
import threading
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx

from aitrading.common.clock import LiveClock, ns_to_datetime
from aitrading.common.config import SERVICE_NAMES, load_config
from aitrading.engine.service import EngineService
from aitrading.gateway.identity import IdentityService
from aitrading.gateway.identity.mfa import Totp
from aitrading.gateway.identity.schemas import ApiKeyCreate, UserCreate
from aitrading.gateway.service import GatewayService
from aitrading.kernel import Kernel
from aitrading.model.accounts import AccountState
from aitrading.model.enums import MarginMode
from aitrading.model.ids import AccountId, TenantId
from aitrading.model.market import Tick
from aitrading.model.values import price_raw
from aitrading.model.wire import AccountSnapshot
from aitrading.storage.audit import AuditLog
from aitrading.testing.rig import free_port

PASSWORD = "correct horse battery staple"
_T = TypeVar("_T")
FEED = "SIM"


class ShiftedClock(LiveClock):
    """The system clock plus an offset that tests move forward; sleeping stays real."""

    def __init__(self) -> None:
        self.offset_ns = 0

    def advance(self, seconds: float) -> None:
        self.offset_ns += int(seconds * 1_000_000_000)

    def now_ns(self) -> int:
        return super().now_ns() + self.offset_ns

    def now_ms(self) -> int:
        return self.now_ns() // 1_000_000

    def utcnow(self) -> datetime:
        return ns_to_datetime(self.now_ns())

    def monotonic_ns(self) -> int:
        return super().monotonic_ns() + self.offset_ns


@dataclass
class User:
    """A signed-in user: ids, credentials and (once enrolled) the TOTP secret."""

    tenant: uuid.UUID
    slug: str
    id: uuid.UUID
    email: str
    role: str
    access: str = ""
    refresh: str = ""
    totp: str | None = None

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access}"}


@dataclass
class Platform:
    kernel: Kernel
    clock: ShiftedClock
    gateway: GatewayService
    identity: IdentityService
    client: httpx.AsyncClient

    @property
    def engine(self) -> EngineService:
        service = self.kernel.services["engine"]
        assert isinstance(service, EngineService)
        return service

    async def tenant(self, slug: str, tier: str = "enterprise") -> uuid.UUID:
        return (await self.identity.directory.create_tenant(slug, slug.title(), tier, actor="test")).id

    async def user(self, tenant: uuid.UUID, slug: str, email: str, role: str) -> User:
        data = UserCreate(email=email, password=PASSWORD, role=role)
        created = await self.identity.directory.create_user(
            tenant, data, actor="test", may_create_platform_admin=True
        )
        user = User(tenant, slug, created.id, email, role)
        await self.sign_in(user)
        return user

    async def login(self, user: User, *, password: str = PASSWORD, code: str | None = None) -> httpx.Response:
        body: dict[str, Any] = {"tenant": user.slug, "email": user.email, "password": password}
        if code is not None:
            body["code"] = code
        return await self.client.post("/api/v1/auth/login", json=body)

    async def sign_in(self, user: User) -> None:
        resp = await self.login(user, code=self.code(user) if user.totp else None)
        assert resp.status_code == 200, resp.text
        user.access, user.refresh = resp.json()["access_token"], resp.json()["refresh_token"]

    def code(self, user: User) -> str:
        assert user.totp is not None
        self.clock.advance(30)  # a TOTP code is accepted once per step
        return Totp(user.totp).code_at(self.clock.now_ns() // 1_000_000_000)

    async def with_mfa(self, user: User) -> User:
        """Enrol TOTP over HTTP and step up: the user's access token then carries `mfa=true`."""
        enrol = await self.client.post("/api/v1/auth/mfa/enrol", headers=user.auth)
        assert enrol.status_code == 200, enrol.text
        user.totp = enrol.json()["secret"]
        confirm = await self.client.post(
            "/api/v1/auth/mfa/confirm", headers=user.auth, json={"code": self.code(user)}
        )
        assert confirm.status_code == 200, confirm.text
        verify = await self.client.post(
            "/api/v1/auth/mfa/verify", headers=user.auth, json={"code": self.code(user)}
        )
        assert verify.status_code == 200, verify.text
        user.access = verify.json()["access_token"]
        return user

    async def api_key(self, owner: User, scopes: list[str]) -> tuple[uuid.UUID, str]:
        data = ApiKeyCreate(user_id=owner.id, name="bot", scopes=scopes)
        created = await self.identity.api_keys.create(owner.tenant, data, actor="test")
        return created.id, created.key

    async def trading_account(self, tenant: uuid.UUID, account: str) -> None:
        """Give the tenant an engine account (as its agent's first snapshot would) and quotes."""
        engine = self.engine.engine
        state = AccountState.of(
            login=int(account),
            currency="USD",
            leverage=100,
            margin_mode=MarginMode.RETAIL_HEDGING,
            balance="10000",
        )
        snapshot = AccountSnapshot(
            tenant=TenantId(str(tenant)),
            account=AccountId(account),
            ts_ns=self.clock.now_ns(),
            account_state=state,
            positions=[],
            orders=[],
            deals_from_ns=0,
            deals=[],
        )
        await engine.on_snapshot(snapshot)
        engine.books[(TenantId(str(tenant)), AccountId(account))].feed = FEED
        bus = self.kernel.bus
        assert bus is not None
        tick = Tick(
            feed=FEED,
            symbol="EURUSD",
            time_msc=self.clock.now_ms(),
            bid=price_raw("1.10000"),
            ask=price_raw("1.10010"),
        )
        await bus.publish(f"md.tick.{FEED}.EURUSD", tick)

    async def events(self, tenant: uuid.UUID | None) -> list[tuple[str, dict[str, Any]]]:
        """(kind, payload) of every audit event of `tenant` (None: the platform chain)."""
        log = AuditLog(self.kernel.db, self.clock)
        records = await log.records(tenant or self.identity.platform_tenant, limit=10_000)
        return [(r.kind, r.payload_dict()) for r in records]


@asynccontextmanager
async def platform(tmp_path: Path, services: tuple[str, ...] = SERVICE_NAMES) -> AsyncIterator[Platform]:
    """Start the all-in-one platform (no simulator) on free ports under `tmp_path`."""
    config = load_config(
        mode="test",
        storage={"data_dir": str(tmp_path / "var")},  # where the CLI's default config looks, too
        services={"enabled": services, **{name: free_port() for name in SERVICE_NAMES}},
        simulator={"enabled": False},
    )
    clock = ShiftedClock()
    kernel = Kernel(config, clock=clock, simulate=False)
    await kernel.start()
    try:
        gateway = kernel.services["gateway"]
        assert isinstance(gateway, GatewayService)
        identity = next(c for c in gateway.components if isinstance(c, IdentityService))
        transport = httpx.ASGITransport(app=gateway.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
            yield Platform(kernel, clock, gateway, identity, client)
    finally:
        await kernel.stop()


PROXY_PATH = re.compile(r"^/api/v1/(?P<service>[a-z]+)/\{path\}$")
_REF = "#/components/schemas/"


def openapi_with_services(p: Platform) -> dict[str, Any]:
    """The gateway's OpenAPI document with each proxy route replaced by its service's own operations.

    `/api/v1/<service>/{path}` becomes `/api/v1/<service>/<rest>` for every `/api/v1/<rest>` operation of
    the service mounted in process; the service's schemas are renamed `<service>__<name>` (references
    rewritten) and its operation ids prefixed, so documents of different services cannot collide.
    """
    doc = copy.deepcopy(p.gateway.app.openapi())
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for path in [x for x in doc["paths"] if PROXY_PATH.match(x)]:
        service = PROXY_PATH.match(path)["service"]  # type: ignore[index]
        del doc["paths"][path]
        assert service in p.kernel.services, f"{service} is proxied but not mounted in process"
        own = copy.deepcopy(p.kernel.services[service].app.openapi())

        def renamed(node: Any, service: str = service) -> Any:
            if isinstance(node, dict):
                out = {k: renamed(v) for k, v in node.items()}
                ref = out.get("$ref")
                if isinstance(ref, str) and ref.startswith(_REF):
                    out["$ref"] = f"{_REF}{service}__{ref[len(_REF) :]}"
                return out
            if isinstance(node, list):
                return [renamed(v) for v in node]
            return node

        own_components = own.get("components", {})
        for name, schema in own_components.get("schemas", {}).items():
            schemas[f"{service}__{name}"] = renamed(schema)
        for name, scheme in own_components.get("securitySchemes", {}).items():
            components.setdefault("securitySchemes", {}).setdefault(name, scheme)
        for upath, item in own["paths"].items():
            if not upath.startswith("/api/v1/"):
                continue
            operations = renamed(item)
            for operation in operations.values():
                if isinstance(operation, dict) and "operationId" in operation:
                    operation["operationId"] = f"{service}__{operation['operationId']}"
            doc["paths"][f"/api/v1/{service}{upath[len('/api/v1') :]}"] = operations
    return doc


class Background:
    """An event loop in a thread of its own, for tests whose own thread must stay synchronous.

    Schemathesis calls over blocking HTTP, and the CLI runs `asyncio.run` itself; the platform keeps
    running in this loop meanwhile.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="platform", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, _T], timeout_s: float = 60) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@contextmanager
def platform_in_background(
    tmp_path: Path, services: tuple[str, ...] = SERVICE_NAMES
) -> Iterator[tuple[Background, Platform]]:
    """Run `platform` in a background loop; yield the loop (to run set-up coroutines) and the platform."""
    bg = Background()
    cm = platform(tmp_path, services)
    try:
        p = bg.run(cm.__aenter__())
        try:
            yield bg, p
        finally:
            bg.run(cm.__aexit__(None, None, None))
    finally:
        bg.close()
