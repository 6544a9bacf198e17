"""The state store on a Redis that requires TLS and a password, as a carrier's managed Redis usually does.

A real redis-server with ``--tls-port`` (Debian's is built with TLS) and a CA made by openssl for this test: the
store speaks ``rediss://`` with the CA from the URL, answers as the in-process store does, and a wrong CA, a wrong
password or a plain connection is a StateUnavailable that names the server, never the password.
"""
from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from detector.errors import StateUnavailable
from detector.gateway import DELAY, OK, Gateway
from detector.services import free_port
from detector.state.base import HashGet
from detector.state.memory import MemoryStore
from detector.state.redis import RedisStore
from test_gateway import action, new_port
from test_redis_store import mixed_batch

pytestmark = pytest.mark.integration

PASSWORD = "s3cret-" + uuid.uuid4().hex[:8]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory) -> tuple[int, Path]:
    """A redis-server that accepts only TLS connections with a password; yields its port and the CA file."""
    if shutil.which("openssl") is None:       # Debian's base system has it; say so rather than pass quietly
        pytest.fail("openssl is needed to make the test's certificates (apt-get install openssl)")
    work = tmp_path_factory.mktemp("tls-redis")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=smsguard test CA", cwd=work)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=localhost", cwd=work)
    (work / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n", encoding="utf-8")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.pem", "-days", "2", "-extfile", "san.cnf", cwd=work)
    port = free_port()
    log = open(work / "redis.log", "wb")
    proc = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", "server.pem", "--tls-key-file", "server.key", "--tls-ca-cert-file", "ca.pem",
         "--tls-auth-clients", "no", "--requirepass", PASSWORD, "--save", "", "--appendonly", "no"],
        cwd=work, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                asyncio.run(_ping(_url(port, work / "ca.pem")))
                break
            except StateUnavailable:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"TLS redis-server did not start: {(work / 'redis.log').read_text()[-2000:]}")
                time.sleep(0.1)
        yield port, work / "ca.pem"
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def _url(port: int, ca: Path | None, password: str = PASSWORD, scheme: str = "rediss") -> str:
    query = f"?ssl_ca_certs={ca}&ssl_cert_reqs=required" if ca else ""
    return f"{scheme}://:{password}@127.0.0.1:{port}/0{query}"


async def _ping(url: str) -> None:
    store = RedisStore(url)
    try:
        await store.run([HashGet("sg:ping:{x}", ("f",))])
    finally:
        await store.close()


async def test_the_store_speaks_tls_with_a_password_and_answers_as_the_in_process_store(tls_redis):
    port, ca = tls_redis
    store, memory = RedisStore(_url(port, ca)), MemoryStore()
    ns = "t" + uuid.uuid4().hex[:10]
    try:
        for i in range(40):
            batch = mixed_batch(ns, i)
            assert await store.run(batch) == await memory.run(batch), i
        await store.register_signatures("10690001", ["京东"])
        assert await store.registered_signatures(["10690001", "10690002"]) == {"10690001": frozenset({"京东"})}
        assert PASSWORD not in repr(store)
    finally:
        await store.close()


@pytest.mark.parametrize("case", ["no CA", "wrong password", "plain connection"])
async def test_a_tls_redis_refuses_what_it_should_with_a_clear_error_that_keeps_the_password(tls_redis, case):
    port, ca = tls_redis
    url = {"no CA": _url(port, None), "wrong password": _url(port, ca, password="not-" + PASSWORD),
           "plain connection": _url(port, None, scheme="redis")}[case]
    expected = {"no CA": "CERTIFICATE_VERIFY_FAILED", "wrong password": "password",
                "plain connection": f"127.0.0.1:{port}"}[case]
    store = RedisStore(url)
    try:
        with pytest.raises(StateUnavailable) as caught:
            await asyncio.wait_for(store.run(mixed_batch("t", 0)), 20)
    finally:
        await store.close()
    message = str(caught.value)
    assert expected in message and PASSWORD not in message, message


async def test_a_gateway_enforces_a_throttle_through_a_tls_redis(tls_redis):
    """Gateways take the same URL (SMSGUARD_REDIS_URL): their leaky bucket's Lua runs over TLS too."""
    port_number, ca = tls_redis
    port = new_port()
    gw = Gateway(_url(port_number, ca), burst_s=1.0)
    try:
        gw.apply(action(port, "throttle", rate=600))        # 10 a second, burst 10
        verdicts = [await gw.allow(port) for _ in range(12)]
        assert gw.redis_ok
    finally:
        await gw.close()
    assert [v.action for v in verdicts] == [OK] * 10 + [DELAY] * 2
