"""TLS between the platform's services, with certificates from a local CA.

`aitrading certs init` (see `aitrading.certs`) writes this layout under `security.tls.cert_dir`:

    ca.crt                      the local CA every party trusts (its key `ca.key` signs, nothing else uses it)
    server/<service>.crt|.key   one server certificate per service (SAN 127.0.0.1, ::1, localhost, <service>)
    client/<name>.crt|.key      client certificates: one per service (it calls others), `launcher`, `cli`

With `security.tls.enabled` every service serves HTTPS with its own certificate (`server_tls`), and internal
HTTP clients verify the servers against `ca.crt` (`client_ssl_context`, `httpx_verify`, `service_url`).
With `security.tls.mtls` the internal services also require a client certificate signed by the same CA;
the public services (`security.tls.public_services`: the gateway for browsers, the bridge for PC agents)
serve TLS without asking for one, since their clients hold no certificate of the platform's CA.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from aitrading.common.config import SERVICE_NAMES, PlatformConfig
from aitrading.common.errors import ConfigError

__all__ = [
    "CA_CERT",
    "CA_KEY",
    "CLIENT_IDENTITIES",
    "ServerTLS",
    "client_paths",
    "client_ssl_context",
    "httpx_verify",
    "server_paths",
    "server_ssl_context",
    "server_tls",
    "service_url",
]

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
CLIENT_IDENTITIES: tuple[str, ...] = (*SERVICE_NAMES, "launcher", "cli")
"""Who gets a client certificate: every service (it calls the others), the split launcher and the CLI."""

_INIT_HINT = "run `aitrading certs init` (or point security.tls.cert_dir at the certificates)"


def server_paths(cert_dir: Path, service: str) -> tuple[Path, Path]:
    """Return (certificate, key) paths of `service`'s server certificate."""
    return cert_dir / "server" / f"{service}.crt", cert_dir / "server" / f"{service}.key"


def client_paths(cert_dir: Path, identity: str) -> tuple[Path, Path]:
    """Return (certificate, key) paths of the client certificate of `identity`."""
    return cert_dir / "client" / f"{identity}.crt", cert_dir / "client" / f"{identity}.key"


def _existing(*paths: Path) -> None:
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ConfigError(f"TLS is enabled but {', '.join(missing)} is missing: {_INIT_HINT}")


@dataclass(frozen=True, slots=True)
class ServerTLS:
    """What a service's HTTPS listener needs: its certificate and key, the CA, and the client-cert rule."""

    certfile: Path
    keyfile: Path
    ca_file: Path
    require_client_cert: bool


def server_tls(config: PlatformConfig, service: str) -> ServerTLS | None:
    """Return the TLS settings of `service`'s listener, or None when TLS is off.

    Raises `ConfigError` naming the missing files when TLS is on but the certificates are not there.
    """
    tls = config.security.tls
    if not tls.enabled:
        return None
    cert, key = server_paths(tls.cert_dir, service)
    ca = tls.cert_dir / CA_CERT
    _existing(ca, cert, key)
    return ServerTLS(cert, key, ca, require_client_cert=tls.mtls and service not in tls.public_services)


def server_ssl_context(settings: ServerTLS) -> ssl.SSLContext:
    """Return the server-side context: TLS 1.2 or newer, and with mTLS a client cert from the CA required."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(settings.ca_file))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(settings.certfile), str(settings.keyfile))
    ctx.verify_mode = ssl.CERT_REQUIRED if settings.require_client_cert else ssl.CERT_NONE
    return ctx


def client_ssl_context(config: PlatformConfig, identity: str = "cli") -> ssl.SSLContext:
    """Return a client context that verifies servers against the local CA (and the host name).

    With `security.tls.mtls` it presents the client certificate of `identity` (a service name,
    `launcher` or `cli`). Raises `ConfigError` when TLS is off or a file is missing.
    """
    tls = config.security.tls
    if not tls.enabled:
        raise ConfigError("security.tls.enabled is false: there is no TLS client context to build")
    ca = tls.cert_dir / CA_CERT
    _existing(ca)
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.mtls:
        if identity not in CLIENT_IDENTITIES:
            raise ConfigError(
                f"no client certificate for {identity!r}; known: {', '.join(CLIENT_IDENTITIES)}"
            )
        cert, key = client_paths(tls.cert_dir, identity)
        _existing(cert, key)
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def httpx_verify(config: PlatformConfig, identity: str = "cli") -> ssl.SSLContext | bool:
    """Return what `httpx.Client(verify=...)` needs to call the platform's services as `identity`."""
    if not config.security.tls.enabled:
        return True  # plain HTTP to the services: nothing to verify, httpx's default for anything else
    return client_ssl_context(config, identity)


def service_url(config: PlatformConfig, service: str) -> str:
    """Return the base URL of `service`: `https://` when TLS is on, else `http://`."""
    scheme = "https" if config.security.tls.enabled else "http"
    host = config.services.host
    # A wildcard listen address is not a place to connect to, nor a name in the certificate.
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104 - compared, not bound
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{config.services.port(service)}"
