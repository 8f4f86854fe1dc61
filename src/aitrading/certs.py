"""`aitrading certs init`: a local CA and the certificates for TLS between the platform's services.

The CA and every certificate use ECDSA P-256 keys (fast handshakes, small certificates). Server certificates
name 127.0.0.1, ::1, localhost and the service name (plus any `--host`), and are for server authentication
only; client certificates are for client authentication only, so neither can stand in for the other.
Private keys are PKCS#8 PEM without a passphrase (services start unattended) and are written 0600 in a
0700 folder. See `aitrading.common.tls` for the layout and how services use it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from aitrading.common.clock import Clock, LiveClock
from aitrading.common.config import SERVICE_NAMES, load_config
from aitrading.common.errors import BadInputError
from aitrading.common.tls import CA_CERT, CA_KEY, CLIENT_IDENTITIES, client_paths, server_paths

__all__ = ["CertSet", "app", "init_certs"]

CA_DAYS = 3650
LEAF_DAYS = 825
_SKEW = dt.timedelta(minutes=5)  # certificates are valid a little before "now": clocks of hosts differ

app = typer.Typer(help="Local certificate authority for TLS between the services.", no_args_is_help=True)


@dataclass(frozen=True, slots=True)
class CertSet:
    """What `init_certs` wrote."""

    cert_dir: Path
    ca_cert: Path
    servers: dict[str, Path]
    clients: dict[str, Path]


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "aitrading"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # O_EXCL: never write through a file (or link) someone else put there; 0600 from the first byte.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, cert.public_bytes(serialization.Encoding.PEM))
    finally:
        os.close(fd)


def _ca(now: dt.datetime, days: int) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    name = _name("aitrading local CA")
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _SKEW)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    common_name: str,
    *,
    server: bool,
    names: Sequence[x509.GeneralName],
    now: dt.datetime,
    days: int,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _SKEW)
        .not_valid_after(min(now + dt.timedelta(days=days), ca.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def _server_names(service: str, hosts: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    seen: set[str] = set()
    for host in ("127.0.0.1", "::1", "localhost", service, *hosts):
        if host in seen:
            continue
        seen.add(host)
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _layout(cert_dir: Path, services: Sequence[str], clients: Sequence[str]) -> list[Path]:
    paths = [cert_dir / CA_CERT, cert_dir / CA_KEY]
    for service in services:
        paths.extend(server_paths(cert_dir, service))
    for identity in clients:
        paths.extend(client_paths(cert_dir, identity))
    return paths


def init_certs(
    cert_dir: Path,
    *,
    force: bool = False,
    hosts: Iterable[str] = (),
    services: Sequence[str] = SERVICE_NAMES,
    clients: Sequence[str] = CLIENT_IDENTITIES,
    days: int = LEAF_DAYS,
    clock: Clock | None = None,
) -> CertSet:
    """Create a local CA and the server and client certificates under `cert_dir`.

    Refuses (`BadInputError`) when any of the files exists, unless `force`, which replaces them all: a new
    CA invalidates every certificate of the old one, so they are never mixed.
    """
    if days < 1:
        raise BadInputError(f"days must be at least 1, got {days}")
    paths = _layout(cert_dir, services, clients)
    existing = [p for p in paths if p.exists() or p.is_symlink()]
    if existing and not force:
        raise BadInputError(
            f"{existing[0]} already exists ({len(existing)} file(s) of a certificate set in {cert_dir}); "
            "pass --force to replace the CA and every certificate"
        )
    for path in existing:
        path.unlink()
    for folder in (cert_dir, cert_dir / "server", cert_dir / "client"):
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
    now = (clock or LiveClock()).utcnow()
    ca, ca_key = _ca(now, max(CA_DAYS, days))
    _write_key(cert_dir / CA_KEY, ca_key)
    _write_cert(cert_dir / CA_CERT, ca)
    extra = tuple(hosts)
    servers: dict[str, Path] = {}
    for service in services:
        cert, key = _leaf(
            ca, ca_key, service, server=True, names=_server_names(service, extra), now=now, days=days
        )
        cert_path, key_path = server_paths(cert_dir, service)
        _write_key(key_path, key)
        _write_cert(cert_path, cert)
        servers[service] = cert_path
    client_certs: dict[str, Path] = {}
    for identity in clients:
        cert, key = _leaf(ca, ca_key, identity, server=False, names=(), now=now, days=days)
        cert_path, key_path = client_paths(cert_dir, identity)
        _write_key(key_path, key)
        _write_cert(cert_path, cert)
        client_certs[identity] = cert_path
    return CertSet(cert_dir, cert_dir / CA_CERT, servers, client_certs)


@app.command("init")
def init(
    cert_dir: Annotated[
        Path | None,
        typer.Option("--dir", help="Where to write them (default: security.tls.cert_dir, var/certs)"),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing CA and certificates")] = False,
    host: Annotated[
        list[str] | None,
        typer.Option("--host", help="Another name or address every server certificate holds (repeatable)"),
    ] = None,
    days: Annotated[int, typer.Option(help="Validity of the service certificates in days")] = LEAF_DAYS,
) -> None:
    """Create a local CA, a server certificate per service and client certificates."""
    target = cert_dir if cert_dir is not None else load_config().security.tls.cert_dir
    made = init_certs(target, force=force, hosts=host or (), days=days)
    typer.echo(f"CA           {made.ca_cert}")
    typer.echo(f"servers      {len(made.servers)} in {target / 'server'} ({', '.join(made.servers)})")
    typer.echo(f"clients      {len(made.clients)} in {target / 'client'} ({', '.join(made.clients)})")
    typer.echo("Turn TLS on with AITRADING_SECURITY__TLS__ENABLED=true (and __MTLS=true for mutual TLS).")
