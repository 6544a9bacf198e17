"""detector/services.py against the real tansu and redis-server binaries."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time

import pytest
import redis

from detector.errors import ServiceError
from detector.services import (
    acreate_topics, create_topics, free_port, local_stack, start_redis,
)
from detector.settings import Settings


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie still answers kill(0); it is gone for our purposes only once reaped, so check its state.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] == "Z"


def test_free_port_is_bindable():
    import socket
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_redis_answers_and_stop_leaves_nothing_behind():
    service = start_redis()
    pid, workdir = service.pid, service.workdir
    assert workdir.is_dir()
    client = redis.Redis.from_url(service.url)
    assert client.ping()
    service.stop()
    assert _gone(pid)
    assert not workdir.exists()
    with pytest.raises(redis.ConnectionError):
        client.ping()
    service.stop()  # idempotent


def test_redis_restart_keeps_port_and_comes_back_empty(own_redis):
    client = redis.Redis.from_url(own_redis.url)
    client.set("k", "v")
    port, old_pid = own_redis.port, own_redis.pid
    own_redis.restart(down_for=0.2)
    assert own_redis.port == port and own_redis.pid != old_pid
    assert _gone(old_pid)
    assert client.get("k") is None          # the client reconnects by itself; no persistence


def test_paused_redis_stops_answering_then_resumes(own_redis):
    client = redis.Redis.from_url(own_redis.url, socket_timeout=0.3)
    assert client.ping()
    own_redis.pause()
    with pytest.raises(redis.TimeoutError):
        client.ping()
    own_redis.resume()
    assert client.ping()


def test_stop_of_a_paused_service_does_not_hang(own_redis):
    pid = own_redis.pid
    own_redis.pause()
    started = time.monotonic()
    own_redis.stop()
    assert time.monotonic() - started < 5
    assert _gone(pid)


def test_missing_redis_server_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    with pytest.raises(ServiceError, match="redis-server is not installed"):
        start_redis()
    assert list(tmp_path.iterdir()) == []      # its temp dir was removed too


def test_taken_fixed_port_is_an_error_with_the_log(redis_server):
    with pytest.raises(ServiceError, match=f"did not start on 127.0.0.1:{redis_server.port}") as err:
        start_redis(redis_server.port)
    assert "already in use" in str(err.value)


def test_broker_restart_keeps_port_but_loses_topics(own_broker):
    create_topics(own_broker.bootstrap, ["before"], 1)
    port = own_broker.port
    own_broker.restart()
    assert own_broker.port == port
    assert _list_topics(own_broker.bootstrap) & {"before"} == set()


def _list_topics(bootstrap: str) -> set[str]:
    from aiokafka.admin import AIOKafkaAdminClient

    async def run() -> set[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            return set(await admin.list_topics())
        finally:
            await admin.close()
    return asyncio.run(run())


def test_create_topics_is_idempotent_and_compacts(broker, topic_prefix):
    names = [topic_prefix + "in", topic_prefix + "port-actions"]
    assert create_topics(broker.bootstrap, names, 3, compacted={names[1]}) == {n: "created" for n in names}
    assert create_topics(broker.bootstrap, names, 3) == {n: "exists" for n in names}

    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    async def describe():
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            topics = await admin.describe_topics(names)
            configs = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, names[1])])
            return topics, configs
        finally:
            await admin.close()
    topics, configs = asyncio.run(describe())
    assert {t["topic"]: len(t["partitions"]) for t in topics} == {n: 3 for n in names}
    entries = {e[0]: e[1] for e in configs[0].resources[0][4]}
    assert entries["cleanup.policy"] == "compact"


async def test_create_topics_from_a_running_loop(broker, topic_prefix):
    assert await acreate_topics(broker.bootstrap, [topic_prefix + "a"], 1) == {topic_prefix + "a": "created"}
    assert create_topics(broker.bootstrap, [topic_prefix + "a"], 1) == {topic_prefix + "a": "exists"}


def test_compacted_must_be_among_names(broker):
    with pytest.raises(ServiceError, match="not in names"):
        create_topics(broker.bootstrap, ["x"], 1, compacted={"y"})


def test_local_stack_env_points_at_both(tmp_path):
    with local_stack(log_dir=tmp_path) as stack:
        env = stack.env()
        assert env["SMSGUARD_KAFKA_BOOTSTRAP"] == stack.broker.bootstrap
        assert redis.Redis.from_url(env["SMSGUARD_REDIS_URL"]).ping()
        # a child given this env over a cluster deployment's (SMSGUARD_REDIS_CLUSTER=true) still talks to one server
        assert Settings.from_env({"SMSGUARD_REDIS_CLUSTER": "true", **env}).redis_cluster is False
        pids = [stack.broker.pid, stack.redis.pid]
    assert all(_gone(p) for p in pids)
    assert (tmp_path / "tansu.log").exists() and (tmp_path / "redis.log").exists()


def test_services_die_with_a_killed_parent(tmp_path):
    """No orphans even when the Python process that started them is SIGKILLed."""
    script = textwrap.dedent("""
        import sys, time
        from detector.services import start_broker, start_redis
        b, r = start_broker(), start_redis()
        print(b.pid, r.pid, flush=True)
        time.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    pids = [int(p) for p in parent.stdout.readline().split()]
    assert len(pids) == 2 and not any(_gone(p) for p in pids)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 5
    while not all(_gone(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(_gone(p) for p in pids)


def test_settings_fixture_points_at_the_session_services(settings, broker, redis_server, topic_prefix):
    s = settings({"SMSGUARD_BATCH_SIZE": "7"}, partitions=2)
    assert (s.kafka_bootstrap, s.redis_url, s.topic_prefix) == (broker.bootstrap, redis_server.url, topic_prefix)
    assert (s.batch_size, s.partitions) == (7, 2)
    assert s.topic("sms.outbound") == topic_prefix + "sms.outbound"


def test_settings_fixture_starts_each_test_with_empty_redis(settings):
    client = redis.Redis.from_url(settings().redis_url)
    assert client.dbsize() == 0
    client.set("left-behind", 1)   # the next test using `settings` must not see this


FAUST_SMOKE = textwrap.dedent("""
    import sys
    import faust
    bootstrap, topic_name, app_id = sys.argv[1:4]
    app = faust.App(app_id, broker=f"kafka://{bootstrap}", store="memory://", web_enabled=False,
                    broker_session_timeout=6, broker_rebalance_timeout=6, broker_heartbeat_interval=1,
                    topic_partitions=2, topic_replication_factor=1, datadir=sys.argv[4],
                    consumer_auto_offset_reset="earliest")
    topic = app.topic(topic_name, value_serializer="raw")
    seen = []

    @app.agent(topic)
    async def count(stream):
        async for batch in stream.take(50, within=0.2):
            seen.extend(batch)
            if len(seen) >= 100:
                print(f"CONSUMED {len(seen)}", flush=True)

    @app.task
    async def produce():
        for i in range(100):
            await topic.send(key=str(i % 7).encode(), value=f"m{i}".encode())

    faust.Worker(app, loglevel="warning").execute_from_commandline()
""")


def test_faust_streams_through_tansu(broker, topic_prefix, tmp_path):
    """faust-streaming joins a group, produces and consumes on tansu with low timeouts."""
    topic = topic_prefix + "smoke"
    create_topics(broker.bootstrap, [topic], 2)
    log = tmp_path / "faust.log"
    with open(log, "w") as out:
        worker = subprocess.Popen(
            [sys.executable, "-c", FAUST_SMOKE, broker.bootstrap, topic, "smoke-" + topic_prefix.rstrip("."),
             str(tmp_path / "faust")], stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while "CONSUMED 100" not in log.read_text() and worker.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "CONSUMED 100" in log.read_text(), log.read_text()[-3000:]
    finally:
        worker.terminate()
        worker.wait(30)     # faust shuts down on SIGTERM (leaves the group) within the timeout


def test_topics_command_creates_every_topic_with_port_actions_compacted(settings, broker):
    from click.testing import CliRunner

    from detector.cli import main
    from detector.events import TOPIC_PORT_ACTIONS
    from detector.services import ALL_TOPICS

    s = settings(partitions=2)
    runner = CliRunner()
    first = runner.invoke(main, ["topics"], env=s.as_env())
    assert first.exit_code == 0, first.output
    assert first.output.count(": created") == len(ALL_TOPICS)
    assert f"{s.topic(TOPIC_PORT_ACTIONS)}: created" in first.output
    assert runner.invoke(main, ["topics"], env=s.as_env()).output.count(": exists") == len(ALL_TOPICS)
    assert {s.topic(t) for t in ALL_TOPICS} <= _list_topics(broker.bootstrap)
