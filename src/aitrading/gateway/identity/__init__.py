"""Identity for the gateway: passwords, TOTP MFA, access and refresh tokens, API keys, tiers, audit.

`IdentityService` is the facade; `Authenticator.authenticate(request) -> Principal` is what the gateway's
proxy and RBAC call per request; `build_router` serves `/api/v1/auth/*` and `/.well-known/jwks.json`.
See docs/adr/0010-identity.md.
"""

from aitrading.gateway.identity.apikeys import API_KEY_PREFIX, SCOPE_ROLE_PREFIX, ApiKeyStore, parse_api_key
from aitrading.gateway.identity.authenticate import AuthContext, Authenticator, client_ip
from aitrading.gateway.identity.config import IdentityConfig
from aitrading.gateway.identity.errors import AuthenticationError, ConflictError, ThrottledError
from aitrading.gateway.identity.passwords import Passwords, check_password_policy
from aitrading.gateway.identity.routes import build_router
from aitrading.gateway.identity.service import IdentityService
from aitrading.gateway.identity.sessions import ClientInfo
from aitrading.gateway.identity.tiers import DEFAULT_TIER, TIERS, TierQuota, quota_of
from aitrading.gateway.identity.tokens import AccessClaims, TokenRejected

__all__ = [
    "API_KEY_PREFIX",
    "DEFAULT_TIER",
    "SCOPE_ROLE_PREFIX",
    "TIERS",
    "AccessClaims",
    "ApiKeyStore",
    "AuthContext",
    "AuthenticationError",
    "Authenticator",
    "ClientInfo",
    "ConflictError",
    "IdentityConfig",
    "IdentityService",
    "Passwords",
    "ThrottledError",
    "TierQuota",
    "TokenRejected",
    "build_router",
    "check_password_policy",
    "client_ip",
    "parse_api_key",
    "quota_of",
]
