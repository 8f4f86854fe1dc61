"""TLS between services: `aitrading certs init`, and real handshakes on loopback (server and client)."""

from __future__ import annotations

import ipaddress
import ssl
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from typer.testing import CliRunner

from aitrading.certs import init_certs
from aitrading.cli import app as cli_app
from aitrading.common.config import PlatformConfig, load_config
from aitrading.common.errors import BadInputError, ConfigError, OperationalError
from aitrading.common.service import Service
from aitrading.common.serving import HttpServers
from aitrading.common.tls import (
    CA_CERT,
    CLIENT_IDENTITIES,
    client_paths,
    client_ssl_context,
    httpx_verify,
    server_paths,
    server_tls,
    service_url,
)
from aitrading.launcher import wait_ready


def tls_config(cert_dir: Path, *, mtls: bool, **services: int) -> PlatformConfig:
    return load_config(
        services={"host": "127.0.0.1", **services},
        security={"tls": {"enabled": True, "cert_dir": str(cert_dir), "mtls": mtls}},
    )


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cert_dir = tmp_path_factory.mktemp("certs")
    init_certs(cert_dir)
    return cert_dir


@pytest.fixture(scope="module")
def other_certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second, unrelated CA with its own certificates."""
    cert_dir = tmp_path_factory.mktemp("other-certs")
    init_certs(cert_dir)
    return cert_dir


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


# --- certs init -----------------------------------------------------------------------------------------


def test_certs_init_writes_a_ca_a_server_cert_per_service_and_client_certs_with_keys_0600(
    certs: Path,
) -> None:
    cfg = load_config()
    assert (certs / CA_CERT).is_file()
    keys = [certs / "ca.key"]
    for service in cfg.services.enabled:
        cert, key = server_paths(certs, service)
        assert cert.is_file(), service
        keys.append(key)
    for identity in CLIENT_IDENTITIES:
        cert, key = client_paths(certs, identity)
        assert cert.is_file(), identity
        keys.append(key)
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert stat.S_IMODE((certs / "server").stat().st_mode) == 0o700


def test_server_certificate_names_loopback_localhost_and_the_service_and_serves_only(certs: Path) -> None:
    ca = _load(certs / CA_CERT)
    cert = _load(server_paths(certs, "hub")[0])
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    }
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "hub"}
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)
    client = _load(client_paths(certs, "gateway")[0])
    assert list(client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    client.verify_directly_issued_by(ca)


def test_certs_init_refuses_to_overwrite_without_force_and_replaces_the_whole_set_with_force(
    tmp_path: Path,
) -> None:
    cert_dir = tmp_path / "c"
    init_certs(cert_dir, services=("hub",), clients=("cli",), hosts=("hub.internal", "10.1.2.3"))
    first_ca = (cert_dir / CA_CERT).read_bytes()
    with pytest.raises(BadInputError, match="--force"):
        init_certs(cert_dir, services=("hub",), clients=("cli",))
    assert (cert_dir / CA_CERT).read_bytes() == first_ca
    init_certs(cert_dir, services=("hub",), clients=("cli",), force=True)
    new_ca = _load(cert_dir / CA_CERT)
    assert (cert_dir / CA_CERT).read_bytes() != first_ca
    _load(server_paths(cert_dir, "hub")[0]).verify_directly_issued_by(new_ca)
    _load(client_paths(cert_dir, "cli")[0]).verify_directly_issued_by(new_ca)
    assert stat.S_IMODE(server_paths(cert_dir, "hub")[1].stat().st_mode) == 0o600


def test_extra_hosts_are_named_in_server_certificates(tmp_path: Path) -> None:
    init_certs(tmp_path, services=("hub",), clients=(), hosts=("hub.internal", "10.1.2.3"))
    san = _load(server_paths(tmp_path, "hub")[0]).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert "hub.internal" in san.value.get_values_for_type(x509.DNSName)
    assert ipaddress.ip_address("10.1.2.3") in san.value.get_values_for_type(x509.IPAddress)


def test_cli_certs_init_writes_into_dir_and_refuses_a_second_run(tmp_path: Path) -> None:
    runner = CliRunner()
    first = runner.invoke(cli_app, ["certs", "init", "--dir", str(tmp_path / "cli-certs")])
    assert first.exit_code == 0, first.output
    assert "CA" in first.output
    assert (tmp_path / "cli-certs" / CA_CERT).is_file()
    again = runner.invoke(cli_app, ["certs", "init", "--dir", str(tmp_path / "cli-certs")])
    assert isinstance(again.exception, BadInputError)
    forced = runner.invoke(cli_app, ["certs", "init", "--dir", str(tmp_path / "cli-certs"), "--force"])
    assert forced.exit_code == 0, forced.output


# --- configuration helpers --------------------------------------------------------------------------------


def test_service_url_and_verify_follow_the_tls_switch(certs: Path) -> None:
    plain = load_config()
    assert service_url(plain, "hub") == "http://127.0.0.1:8010"
    assert httpx_verify(plain) is True
    assert server_tls(plain, "hub") is None
    with pytest.raises(ConfigError, match="enabled is false"):
        client_ssl_context(plain)
    cfg = tls_config(certs, mtls=True)
    assert service_url(cfg, "config") == "https://127.0.0.1:8012"
    assert isinstance(httpx_verify(cfg, "launcher"), ssl.SSLContext)
    hub, gateway = server_tls(cfg, "hub"), server_tls(cfg, "gateway")
    assert hub is not None
    assert hub.require_client_cert
    assert gateway is not None
    assert not gateway.require_client_cert


def test_tls_without_certificates_is_a_config_error_naming_the_file_and_the_fix(tmp_path: Path) -> None:
    cfg = tls_config(tmp_path / "nowhere", mtls=False)
    with pytest.raises(ConfigError, match=r"ca\.crt.*aitrading certs init"):
        server_tls(cfg, "hub")
    with pytest.raises(ConfigError, match="aitrading certs init"):
        client_ssl_context(cfg)


def test_mtls_without_tls_is_refused_at_load() -> None:
    with pytest.raises(ConfigError, match="mtls needs"):
        load_config(security={"tls": {"mtls": True}})


# --- real handshakes on loopback -------------------------------------------------------------------------


class _Echo(Service):
    name = "echo"


@pytest.fixture
async def servers(certs: Path) -> AsyncIterator[dict[str, str]]:
    """HTTPS on loopback: `hub` needs client certificates (mTLS), `gateway` is public, `bridge` TLS-only."""
    cfg = tls_config(certs, mtls=True)
    http = HttpServers()
    svc = _Echo()
    await svc.start()
    for name in ("hub", "gateway"):
        http.add(name, lambda: svc.app, "127.0.0.1", 0, tls=server_tls(cfg, name))
    tls_only = server_tls(tls_config(certs, mtls=False), "bridge")
    http.add("bridge", lambda: svc.app, "127.0.0.1", 0, tls=tls_only)
    await http.start()
    try:
        yield {n: f"https://127.0.0.1:{http.port(n)}" for n in ("hub", "gateway", "bridge")}
    finally:
        await http.stop()
        await svc.stop()


async def _get(url: str, verify: Any) -> httpx.Response:
    async with httpx.AsyncClient(verify=verify, timeout=5.0) as client:
        return await client.get(f"{url}/health/live")


def _client_context(ca_dir: Path, cert_dir: Path | None, identity: str = "cli") -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca_dir / CA_CERT))
    if cert_dir is not None:
        cert, key = client_paths(cert_dir, identity)
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


async def test_a_client_with_a_certificate_of_the_ca_is_served_under_mtls(
    servers: dict[str, str], certs: Path
) -> None:
    resp = await _get(servers["hub"], client_ssl_context(tls_config(certs, mtls=True), "gateway"))
    assert resp.status_code == 200
    assert resp.json() == {"status": "live", "service": "echo"}
    assert resp.url.scheme == "https"


async def test_a_client_without_a_certificate_is_refused_under_mtls(
    servers: dict[str, str], certs: Path
) -> None:
    no_cert = client_ssl_context(tls_config(certs, mtls=False))  # verifies the server, presents nothing
    with pytest.raises(httpx.TransportError):
        await _get(servers["hub"], no_cert)


async def test_a_client_certificate_of_another_ca_is_refused_under_mtls(
    servers: dict[str, str], certs: Path, other_certs: Path
) -> None:
    foreign = _client_context(certs, other_certs)  # trusts our server, presents the other CA's cert
    with pytest.raises(httpx.TransportError):
        await _get(servers["hub"], foreign)


async def test_a_client_refuses_a_server_whose_certificate_is_of_another_ca(
    servers: dict[str, str], certs: Path, other_certs: Path
) -> None:
    trusting_other = _client_context(other_certs, certs)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        await _get(servers["bridge"], trusting_other)


async def test_a_server_certificate_is_not_accepted_as_a_client_certificate(
    servers: dict[str, str], certs: Path
) -> None:
    ctx = ssl.create_default_context(cafile=str(certs / CA_CERT))
    cert, key = server_paths(certs, "engine")
    ctx.load_cert_chain(str(cert), str(key))
    with pytest.raises(httpx.TransportError):
        await _get(servers["hub"], ctx)


async def test_public_services_and_tls_without_mtls_serve_clients_without_certificates(
    servers: dict[str, str], certs: Path
) -> None:
    no_cert = client_ssl_context(tls_config(certs, mtls=False))
    assert (await _get(servers["gateway"], no_cert)).status_code == 200
    assert (await _get(servers["bridge"], no_cert)).status_code == 200


async def test_plain_http_to_a_tls_port_gets_no_answer(servers: dict[str, str]) -> None:
    with pytest.raises(httpx.TransportError):
        await _get(servers["bridge"].replace("https://", "http://"), True)


class _Running:
    returncode = None

    def poll(self) -> int | None:
        return None


async def test_launcher_readiness_poll_verifies_the_service_against_the_ca(
    servers: dict[str, str], certs: Path, other_certs: Path
) -> None:
    import asyncio

    ok = httpx_verify(tls_config(certs, mtls=True), "launcher")
    await asyncio.to_thread(wait_ready, servers["hub"], _Running(), "hub", 5, verify=ok)
    wrong = _client_context(other_certs, other_certs, "launcher")
    with pytest.raises(OperationalError, match="not ready"):
        await asyncio.to_thread(wait_ready, servers["hub"], _Running(), "hub", 0.5, verify=wrong)


def test_the_agent_of_a_tls_platform_connects_over_wss_and_verifies_the_bridge_against_the_local_ca(
    certs: Path,
) -> None:
    from aitrading.agent.service import bridge_ssl_context

    plain = PlatformConfig(services={"host": "0.0.0.0"}).resolved_agent()
    assert plain.bridge_url.startswith("ws://127.0.0.1:")
    assert plain.ca_file is None
    assert bridge_ssl_context(None) is None

    tls = PlatformConfig(security={"tls": {"enabled": True, "cert_dir": certs}}).resolved_agent()
    assert tls.bridge_url.startswith("wss://127.0.0.1:")
    assert tls.ca_file == certs / "ca.crt"
    ctx = bridge_ssl_context(tls.ca_file)
    assert ctx is not None
    assert ctx.verify_mode is ssl.CERT_REQUIRED
    assert ctx.check_hostname
    with pytest.raises(ConfigError, match="certs init"):
        bridge_ssl_context(certs / "missing.crt")
