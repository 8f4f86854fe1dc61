"""Role-based access per route: a table of (upstream, methods, path pattern) → who may call, and with MFA.

The first rule that matches a request decides; a request no rule matches is denied (default deny). A rule
holds grants; a principal passes a grant when it has one of its roles, holds its scope (if any) and, where
the grant asks for step-up, proved MFA in the session behind its token. A principal that would pass but
for MFA gets `mfa_required` (403 with `WWW-Authenticate: Bearer error="insufficient_user_authentication"`,
RFC 9470) so clients know to step up rather than give up.

Paths are matched on the upstream's own path under `/api/v1` (`/api/v1/engine/orders/7` → `/orders/7`).
Patterns: literal segments, `{name}` for one segment, a trailing `**` for any rest (also none).

Scopes: an API key's scopes reach the gateway as roles `scope:<name>` of its principal (e.g. `scope:trade`):
an `api_user` key may trade without MFA only with `scope:trade`, since a program cannot answer a TOTP
prompt and its key is itself the second thing its owner holds.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from aitrading.common.auth import USER_CONFIG_WRITERS, Principal

__all__ = [
    "ADMIN",
    "ALL_ROLES",
    "DEFAULT_POLICY",
    "READ_METHODS",
    "TRADERS",
    "WRITE_METHODS",
    "Decision",
    "Grant",
    "Policy",
    "Rule",
    "Verdict",
    "default_rules",
]

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

ALL_ROLES = frozenset({"platform_admin", "tenant_admin", "portfolio_manager", "analyst", "api_user"})
ADMIN = frozenset({"tenant_admin", "platform_admin"})
TRADERS = frozenset({"portfolio_manager", "tenant_admin"})
SCOPE_PREFIX = "scope:"

_SEGMENT = re.compile(r"^\{[A-Za-z_][A-Za-z0-9_]*\}$")


class Verdict(enum.StrEnum):
    """What the policy says about a request."""

    ALLOW = "allow"
    DENY = "denied"
    MFA_REQUIRED = "mfa_required"


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict with the rule that gave it and a reason a caller can act on."""

    verdict: Verdict
    rule: str
    reason: str = ""

    @property
    def allowed(self) -> bool:
        return self.verdict is Verdict.ALLOW


@dataclass(frozen=True, slots=True)
class Grant:
    """Who passes a rule: any of `roles`, holding `scope` if set, with MFA if `mfa`."""

    roles: frozenset[str]
    mfa: bool = False
    scope: str | None = None

    def holder(self, principal: Principal) -> bool:
        """Tell whether the principal has the role (and scope) of this grant, MFA aside."""
        if not principal.roles & self.roles:
            return False
        return self.scope is None or (SCOPE_PREFIX + self.scope) in principal.roles


def _compile(pattern: str) -> re.Pattern[str]:
    if not pattern.startswith("/"):
        raise ValueError(f"path pattern {pattern!r} must start with '/'")
    parts = pattern.strip("/").split("/") if pattern != "/" else []
    out = ""
    for i, part in enumerate(parts):
        if part == "**":
            if i != len(parts) - 1:
                raise ValueError(f"'**' may only end a pattern: {pattern!r}")
            return re.compile(out + r"(?:/.*)?")
        if _SEGMENT.match(part):
            out += "/[^/]+"
        elif not part or "{" in part or "}" in part or "*" in part:
            raise ValueError(f"bad segment {part!r} in path pattern {pattern!r}")
        else:
            out += "/" + re.escape(part)
    return re.compile(out or "/")


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of the policy table; `upstream` `*` matches every upstream."""

    name: str
    upstream: str
    methods: frozenset[str]
    path: str
    grants: tuple[Grant, ...]
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_regex", _compile(self.path))
        bad = self.methods - READ_METHODS - WRITE_METHODS
        if bad:
            raise ValueError(f"rule {self.name}: unknown method(s) {sorted(bad)}")

    def matches(self, upstream: str, method: str, path: str) -> bool:
        return (
            self.upstream in ("*", upstream)
            and method in self.methods
            and self._regex.fullmatch(path) is not None
        )


class Policy:
    """An ordered rule table with default deny."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)
        names = [r.name for r in self.rules]
        if len(set(names)) != len(names):
            raise ValueError("rule names must be unique (they name the rule in audit events)")
        # Rules per upstream, wildcard rules kept in table order, so a lookup scans only what can match.
        self._by_upstream: dict[str, tuple[Rule, ...]] = {}
        for upstream in {r.upstream for r in self.rules if r.upstream != "*"}:
            self._by_upstream[upstream] = tuple(r for r in self.rules if r.upstream in (upstream, "*"))
        self._wildcard = tuple(r for r in self.rules if r.upstream == "*")

    def rule_for(self, upstream: str, method: str, path: str) -> Rule | None:
        """Return the first rule matching the request, or None."""
        for rule in self._by_upstream.get(upstream, self._wildcard):
            if rule.matches(upstream, method, path):
                return rule
        return None

    def decide(self, principal: Principal, upstream: str, method: str, path: str) -> Decision:
        """Return whether `principal` may call `method path` on `upstream`, with the reason if not."""
        rule = self.rule_for(upstream, method, path)
        if rule is None:
            return Decision(
                Verdict.DENY, "default-deny", f"no policy rule allows {method} on this route (default deny)"
            )
        needs_mfa = False
        for grant in rule.grants:
            if grant.holder(principal):
                if not grant.mfa or principal.mfa:
                    return Decision(Verdict.ALLOW, rule.name)
                needs_mfa = True
        if needs_mfa:
            return Decision(
                Verdict.MFA_REQUIRED, rule.name, f"{rule.name} needs a session with MFA step-up (TOTP)"
            )
        return Decision(Verdict.DENY, rule.name, f"{rule.name} needs one of the roles {_roles(rule.grants)}")


def _roles(grants: Sequence[Grant]) -> str:
    names: list[str] = []
    for grant in grants:
        for role in sorted(grant.roles):
            label = f"{role} (with scope {grant.scope})" if grant.scope else role
            if label not in names:
                names.append(label)
    return ", ".join(names)


def default_rules() -> list[Rule]:
    """Return the platform's route table (first match wins; see docs/adr/0011-gateway.md)."""
    admin_mfa = (Grant(ADMIN, mfa=True),)
    platform_mfa = (Grant(frozenset({"platform_admin"}), mfa=True),)
    trading = (Grant(TRADERS, mfa=True), Grant(frozenset({"api_user"}), scope="trade"))
    # The config service itself checks that a user writes only their own user scope.
    own_config = (Grant(USER_CONFIG_WRITERS),)
    # Order defaults of one's own orders are a trading action, and where alerts of fills and risk go
    # (a Telegram chat) is as sensitive: step-up, or a key with the trade scope.
    own_sensitive_config = (
        Grant(USER_CONFIG_WRITERS - {"api_user"}, mfa=True),
        Grant(frozenset({"api_user"}), scope="trade"),
    )
    model_writers = (Grant(TRADERS, mfa=True),)
    read_only_post = (Grant(ALL_ROLES),)
    set_or_clear = frozenset({"PUT", "DELETE"})
    return [
        Rule("admin", "*", READ_METHODS | WRITE_METHODS, "/admin/**", admin_mfa),
        Rule("engine-trade", "engine", WRITE_METHODS, "/**", trading),
        Rule("decision-strategies", "decision", WRITE_METHODS, "/**", trading),
        Rule("config-own-trading", "config", set_or_clear, "/user/trading", own_sensitive_config),
        Rule("config-own-alerts", "config", set_or_clear, "/user/notifications", own_sensitive_config),
        Rule("config-own-user", "config", set_or_clear, "/user/{namespace}", own_config),
        Rule("config-write", "config", WRITE_METHODS, "/**", admin_mfa),
        # A prediction is a read that carries its input in a body: whoever may read may ask.
        Rule("ml-predict", "ml", frozenset({"POST"}), "/predict", read_only_post),
        Rule("lstm-predict", "lstm", frozenset({"POST"}), "/predict", read_only_post),
        Rule("ml-write", "ml", WRITE_METHODS, "/**", model_writers),
        Rule("lstm-write", "lstm", WRITE_METHODS, "/**", model_writers),
        Rule("notify-write", "notify", WRITE_METHODS, "/**", (Grant(TRADERS),)),
        Rule("hub-write", "hub", WRITE_METHODS, "/**", platform_mfa),
        Rule("dbservice-write", "dbservice", WRITE_METHODS, "/**", platform_mfa),
        Rule("read", "*", READ_METHODS, "/**", (Grant(ALL_ROLES),)),
    ]


DEFAULT_POLICY = Policy(default_rules())
"""The route table the gateway enforces unless given another."""
