"""Shared fixtures: one real tansu broker and one real redis-server for the whole session.

Integration tests share these two processes and stay apart through names: every test
gets its own topic prefix and consumer group (``settings()``), and Redis is flushed
before each test that asks for settings. A test that stops, restarts or pauses a
service (fault tests) uses ``own_broker`` / ``own_redis`` instead, so the shared ones
are never disturbed.

Nothing is skipped silently: when redis-server or the tansu binary is missing, the
fixture raises :class:`detector.errors.ServiceError` and the test errors with the
reason (scripts/setup.sh installs both).
"""
from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import pytest

from detector.services import LocalRedisCluster, Service, free_port, start_broker, start_redis, start_redis_cluster
from detector.settings import Settings

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = (REPO.parent / "shared" / "data" / "sms_zh").resolve()

_SERVICE_FIXTURES = {"broker", "redis_server", "redis_cluster", "own_broker", "own_redis", "settings"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that use a real service are integration tests (``-m 'not integration'`` skips them)."""
    for item in items:
        if _SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def service_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the session's services write their logs (kept after the run for post-mortems)."""
    return tmp_path_factory.mktemp("service-logs")


@pytest.fixture(scope="session")
def broker(service_logs: Path) -> Iterator[Service]:
    """A running tansu broker shared by the session. Do not stop or restart it: use own_broker."""
    with start_broker(log_path=service_logs / "tansu.log") as service:
        yield service


@pytest.fixture(scope="session")
def redis_server(service_logs: Path) -> Iterator[Service]:
    """A running redis-server shared by the session. Do not stop or restart it: use own_redis."""
    with start_redis(log_path=service_logs / "redis.log") as service:
        yield service


@pytest.fixture(scope="session")
def redis_cluster(service_logs: Path) -> Iterator[LocalRedisCluster]:
    """A Redis Cluster of 3 primaries shared by the session (~2 s to start). Tests keep apart by key names;
    do not stop its nodes or flush its data."""
    with start_redis_cluster(3, log_dir=service_logs) as cluster:
        yield cluster


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Service]:
    """A broker of this test alone, to stop, restart or pause."""
    with start_broker(log_path=tmp_path / "tansu.log") as service:
        yield service


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Service]:
    """A redis-server of this test alone, to stop, restart or pause."""
    with start_redis(log_path=tmp_path / "redis.log") as service:
        yield service


@pytest.fixture
def topic_prefix(request: pytest.FixtureRequest) -> str:
    """A prefix no other test uses, e.g. ``test-worker-flags-port-3f2a9c1e.`` (valid in Kafka topic names)."""
    name = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name).strip("-")[:60]
    return f"{name}-{uuid.uuid4().hex[:8]}."


SettingsFactory = Callable[..., Settings]


@pytest.fixture
def settings(broker: Service, redis_server: Service, topic_prefix: str, tmp_path: Path) -> SettingsFactory:
    """``settings(env=None, **overrides) -> Settings`` pointed at the session's broker and Redis.

    Each test gets its own topic prefix, app id (consumer group), ports and audit log, and
    an empty Redis. ``env`` holds SMSGUARD_* strings as the environment would;
    ``overrides`` are typed values by attribute name (``batch_size=10``).
    """
    import redis

    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushdb()
    finally:
        client.close()
    base = {
        "SMSGUARD_KAFKA_BOOTSTRAP": broker.bootstrap,
        "SMSGUARD_REDIS_URL": redis_server.url,
        "SMSGUARD_TOPIC_PREFIX": topic_prefix,
        "SMSGUARD_APP_ID": f"smsguard-{topic_prefix.rstrip('.')}",
        "SMSGUARD_BROKER_SESSION_TIMEOUT_S": "6",
        "SMSGUARD_BROKER_REBALANCE_TIMEOUT_S": "6",
        "SMSGUARD_WORKER_WEB_PORT": str(free_port()),
        "SMSGUARD_DASHBOARD_PORT": str(free_port()),
        "SMSGUARD_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
        "SMSGUARD_DATA_DIR": str(DATA_DIR),
    }

    def make(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        return Settings.from_env({**base, **(env or {})}, **overrides)

    return make
