"""The start-up reachability check: causes named in a few words, bounded backoff with jitter."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import random
import ssl
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bot.reachability import Backoff, public_address, wait_until_reachable


def test_backoff_grows_to_its_cap_with_jitter():
    backoff, rng = Backoff(first=1.0, cap=30.0), random.Random(7)
    for attempt in range(40):
        ceiling = min(30.0, 2.0**attempt)
        delays = {backoff.delay(attempt, rng) for _ in range(20)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1  # jittered: restarts do not retry in lockstep


def test_public_address_drops_credentials_and_query():
    url = "https://user:pw@example.test:8443/api/v10?token=x#f"
    assert public_address(url) == "https://example.test:8443/api/v10"


def _self_signed(directory: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context


async def _serve(app: web.Application, **site: object) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, **site).start()
    return runner, runner.addresses[0][1]


async def test_an_untrusted_certificate_is_named_and_not_accepted(tmp_path):
    runner, port = await _serve(web.Application(), ssl_context=_self_signed(tmp_path))
    said: list[str] = []
    try:
        reached = await wait_until_reachable(
            f"https://127.0.0.1:{port}/api/v10", retry_for=0, say=said.append, stop=asyncio.Event()
        )
    finally:
        await runner.cleanup()
    assert not reached
    assert said == [
        f"cannot reach Discord at https://127.0.0.1:{port}/api/v10: "
        "TLS certificate of 127.0.0.1 rejected (self-signed certificate)",
        f"giving up after 1 attempt in 0 s: Discord at https://127.0.0.1:{port}/api/v10 "
        "is still unreachable: TLS certificate of 127.0.0.1 rejected (self-signed certificate)",
    ]


async def test_server_errors_are_retried_until_discord_answers():
    answers = [503, 502, 200]
    seen: list[str] = []

    async def gateway(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.json_response({"url": "ws://x"}, status=answers[len(seen) - 1])

    app = web.Application()
    app.router.add_get("/api/v10/gateway", gateway)
    runner, port = await _serve(app)
    said: list[str] = []
    try:
        reached = await wait_until_reachable(
            f"http://127.0.0.1:{port}/api/v10",
            retry_for=60,
            say=said.append,
            stop=asyncio.Event(),
            backoff=Backoff(first=0.01, cap=0.02),
        )
    finally:
        await runner.cleanup()
    assert reached and len(seen) == 3
    # One line per distinct cause, none once Discord answers.
    assert [line.split(": ", 1)[1] for line in said] == [
        "it answered HTTP 503; retrying for up to 60 s",
        "it answered HTTP 502; retrying for up to 60 s",
    ]


@pytest.mark.parametrize("retry_for", [0.0, 0.3])
async def test_retries_stop_when_the_time_is_up(retry_for):
    said: list[str] = []
    reached = await wait_until_reachable(
        "http://127.0.0.1:9/api/v10",
        retry_for=retry_for,
        say=said.append,
        stop=asyncio.Event(),
        backoff=Backoff(first=0.05, cap=0.1),
    )
    assert not reached and len(said) == 2
    assert said[1].startswith("giving up after ")
