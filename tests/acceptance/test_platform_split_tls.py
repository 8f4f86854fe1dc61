"""`aitrading up --split` with TLS and mutual TLS between the services, from `aitrading certs init`.

Every service serves HTTPS with a certificate of the local CA; internal services also require a client
certificate of that CA; the gateway and the bridge (public) do not. The launcher and the PC agent verify
the servers against the CA: the agent streams over `wss://`.
"""

from __future__ import annotations

import signal
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from platform_helpers import app_role_for, platform_env, run_cli, running

pytestmark = [pytest.mark.acceptance, pytest.mark.integration, pytest.mark.slow]


def https(env: dict[str, str], service: str) -> str:
    return f"https://127.0.0.1:{env[f'AITRADING_SERVICES__{service.upper()}']}"


def wait_ready(
    client: httpx.Client, base: str, proc: subprocess.Popen[str], timeout_s: float
) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _, err = proc.communicate()
            raise AssertionError(f"platform exited {proc.returncode}: {err[-2000:]}")
        try:
            resp = client.get(f"{base}/health/ready")
            last = resp.text
            if resp.status_code == 200:
                return resp.json()  # type: ignore[no-any-return]
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.2)
    raise AssertionError(f"not ready within {timeout_s}s; last answer {last}")


def test_split_with_mutual_tls_serves_https_refuses_clients_without_a_certificate_and_the_agent_streams(
    tmp_path: Path, fresh_postgres_db: str, redis_url: str, nats_url: str
) -> None:
    certs = tmp_path / "certs"
    env = platform_env(
        tmp_path / "var",
        AITRADING_STORAGE__OLTP_URL=fresh_postgres_db,
        AITRADING_STORAGE__OLTP_APP_ROLE=app_role_for(fresh_postgres_db),
        AITRADING_STORAGE__REDIS_URL=redis_url,
        AITRADING_BUS__NATS_URL=nats_url,
        AITRADING_SECURITY__TLS__ENABLED="true",
        AITRADING_SECURITY__TLS__MTLS="true",
        AITRADING_SECURITY__TLS__CERT_DIR=str(certs),
        AITRADING_SIMULATOR__RATE_FACTOR="5",
    )
    made = run_cli(["certs", "init", "--dir", str(certs)], env, tmp_path)
    assert made.returncode == 0, made.stderr
    ca = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    with_cert = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    with_cert.load_cert_chain(certs / "client" / "cli.crt", certs / "client" / "cli.key")

    with running(["up", "--split"], env, tmp_path) as proc, httpx.Client(verify=ca, timeout=5.0) as public:
        body = wait_ready(public, https(env, "gateway"), proc, timeout_s=180)
        assert all(s["ready"] for s in body["services"].values())  # type: ignore[union-attr]

        # An internal service: no client certificate → the TLS handshake fails; the CA's client cert → served.
        with pytest.raises(httpx.HTTPError):
            public.get(f"{https(env, 'engine')}/health/live")
        with httpx.Client(verify=with_cert, timeout=5.0) as internal:
            assert internal.get(f"{https(env, 'engine')}/health/live").status_code == 200
        # Plain HTTP to a TLS port gets no HTTP answer.
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{env['AITRADING_SERVICES__ENGINE']}/health/live", timeout=3.0)
        # A client that does not trust the local CA refuses the servers.
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{https(env, 'gateway')}/health/live", timeout=3.0)

        # The agent verified the bridge against the CA and streams over wss://.
        deadline, written = time.monotonic() + 90, 0.0
        while time.monotonic() < deadline and written == 0:
            text = public.get(f"{https(env, 'bridge')}/metrics").text
            written = sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("aitrading_bridge_store_ticks_written_total")
            )
            time.sleep(0.5)
        assert written > 0, "the agent streamed no tick over wss:// within 90 s"

        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    assert proc.returncode == 0
