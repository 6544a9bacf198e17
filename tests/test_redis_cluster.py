"""smsguard on a real Redis Cluster (3 primaries, ``redis_cluster``): where keys land, the gateway's bucket, lost
scripts on one node, a node that stops answering, a primary that dies and its replica's promotion (clusters of
their own), the engine's decisions, and SMSGUARD_REDIS_CLUSTER reaching the dashboard and the CLIs. The state
contract itself runs on the cluster in tests/test_state_contract.py."""
from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import defaultdict

import pytest
import redis
from redis.crc import key_slot
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner

from detector.cli import main
from detector.dashboard.app import create_app
from detector.errors import ConfigError, StateUnavailable
from detector.events import TOPIC_PORT_ACTIONS, PortAction
from detector.gateway import Gateway
from detector.ops_cli import _redis_port_rows
from detector.replay import areplay_records
from detector.services import acreate_topics, start_redis_cluster
from detector.settings import Settings
from detector.simulator import TrafficSimulator
from detector.state.base import tag
from detector.state.memory import MemoryStore
from detector.state.redis import RedisStore
from test_state_contract import every_op

pytestmark = pytest.mark.integration

T0 = 1_731_326_400_000
TOKEN = "tok-alice-0123456789"


def unique(prefix: str = "") -> str:
    return prefix + uuid.uuid4().hex[:8]


def new_port() -> str:
    """A port no other test uses (ports are digits)."""
    return f"1069{uuid.uuid4().int % 10 ** 12:012d}"


def port_away_from(cluster) -> str:
    """A new port whose keys live on another node than the one the cluster's URL names: a client that is not a
    cluster client gets MOVED for them instead of answers by luck."""
    first = redis.Redis(port=cluster.nodes[0].port)
    try:
        served = [range(start, end + 1) for start, end, primary, *replicas in first.execute_command("CLUSTER", "SLOTS")
                  if primary[1] == cluster.nodes[0].port]
    finally:
        first.close()
    while True:
        port = new_port()
        if not any(key_slot(port.encode()) in slots for slots in served):
            return port


def throttle(port: str, ts_ms: int, rate: int = 60) -> PortAction:
    return PortAction(port, ts_ms, "throttle", [], ts_ms, None, "engine", rate_limit_per_min=rate)


def keys_on_each_node(cluster, pattern: str) -> dict[int, list[str]]:
    """Node port -> the keys matching ``pattern`` that node holds (asked of each node directly)."""
    found = {}
    for node in cluster.nodes:
        client = redis.Redis(port=node.port, decode_responses=True)
        try:
            found[node.port] = list(client.scan_iter(match=pattern, count=1000))
        finally:
            client.close()
    return found


def on_each_node(cluster, command: str, *args) -> list:
    replies = []
    for node in cluster.nodes:
        client = redis.Redis(port=node.port, decode_responses=True)
        try:
            replies.append(client.execute_command(command, *args))
        finally:
            client.close()
    return replies


async def test_the_keys_of_many_ports_spread_over_every_node_and_each_port_keeps_to_one(redis_cluster):
    """Every key of one port (signal state, port state, history, registry, the gateway's bucket) on one node;
    60 ports over all three; the port index, which has no hash tag, on exactly one."""
    ns = unique("t")
    ports = [f"1069{ns}{i:02d}" for i in range(60)]
    store = RedisStore(redis_cluster.url, cluster=True)
    gateway = Gateway(redis_cluster.url, cluster=True)
    try:
        await store.run([op for port in ports for op in every_op(ns, port, T0)])
        for i, port in enumerate(ports):
            await store.put_port_state(throttle(port, T0 + i))
            await store.register_signatures(port, [f"商户{i}"], replace=i % 2 == 0)
            gateway.apply(throttle(port, T0 + i))
            assert (await gateway.allow(port)).ok
        assert gateway.redis_ok
    finally:
        await gateway.close()
        await store.close()
    nodes_of_port: dict[str, set[int]] = defaultdict(set)
    kinds_of_port: dict[str, set[str]] = defaultdict(set)
    for node, keys in keys_on_each_node(redis_cluster, f"*{{1069{ns}*").items():
        for key in keys:
            port = re.search(r"\{([^}]*)\}", key).group(1)
            nodes_of_port[port].add(node)
            kinds_of_port[port].add(key.split(":")[1])
    assert set(nodes_of_port) == set(ports)
    assert all(len(nodes) == 1 for nodes in nodes_of_port.values()), nodes_of_port
    assert all(kinds == {ns, "portstate", "porthist", "sigreg", "bucket"} for kinds in kinds_of_port.values())
    assert len({node for nodes in nodes_of_port.values() for node in nodes}) == 3
    index_holders = [node for node, keys in keys_on_each_node(redis_cluster, "sg:ports").items() if keys]
    assert len(index_holders) == 1


async def test_gateways_share_a_port_bucket_on_the_cluster_and_reload_the_script_after_a_flush(redis_cluster):
    """Throttled ports on every node: a warm start reads them from the cluster; the bucket is shared (a second
    gateway is delayed too, so it is not each process's local fallback); after SCRIPT FLUSH it still is."""
    ports = [new_port() for _ in range(9)]
    now = int(time.time() * 1000)
    store = RedisStore(redis_cluster.url, cluster=True)
    try:
        for port in ports:
            await store.put_port_state(throttle(port, now))
    finally:
        await store.close()
    first, second = Gateway(redis_cluster.url, cluster=True), Gateway(redis_cluster.url, cluster=True)
    try:
        await first.start()
        await second.start()
        assert all(first.state_of(p).state == second.state_of(p).state == "throttle" for p in ports)
        verdicts = [(await first.allow(p)).action for p in ports[:6]]
        shared = [await second.allow(p) for p in ports[:6]]
        on_each_node(redis_cluster, "SCRIPT", "FLUSH")
        after_flush = [(await first.allow(p)).action for p in ports[6:]]
        after_flush_shared = [(await second.allow(p)).action for p in ports[6:]]
        assert first.redis_ok and second.redis_ok
    finally:
        await first.close()
        await second.close()
    assert verdicts == ["ok"] * 6 and after_flush == ["ok"] * 3
    assert [v.action for v in shared] == ["delay"] * 6 and all(0 < v.retry_after_ms <= 1000 for v in shared)
    assert after_flush_shared == ["delay"] * 3
    holders = keys_on_each_node(redis_cluster, "sg:bucket:{*")
    assert len([node for node, keys in holders.items() if set(keys) & {f"sg:bucket:{{{p}}}" for p in ports}]) >= 2


async def test_a_script_flush_on_one_node_is_recovered_by_loading_the_scripts_on_every_primary(redis_cluster):
    """The flushed node answers NOSCRIPT to its ops' calls (the others run theirs); the store loads its scripts
    on every primary once and re-sends only what did not run."""
    ns = unique("t")
    partitions = [f"p{i}" for i in range(30)]
    store, memory = RedisStore(redis_cluster.url, cluster=True), MemoryStore()
    first = [op for p in partitions for op in every_op(ns, p, T0)]
    later = [op for p in partitions for op in every_op(ns, p, T0 + 300_000)]     # in order: after first's last
    flushed = redis.Redis(port=redis_cluster.nodes[1].port)
    try:
        assert await store.run(first) == await memory.run(first)
        flushed.script_flush()
        assert await store.run(later) == await memory.run(later)       # counters and claims: nothing ran twice
        shas = [script.sha for script in store._scripts.values()]
        loaded_everywhere = on_each_node(redis_cluster, "SCRIPT", "EXISTS", *shas)
    finally:
        flushed.close()
        await store.close()
    assert store.script_loads == 2
    assert loaded_everywhere == [[1] * len(shas)] * 3


async def test_a_node_that_stops_answering_makes_the_store_unavailable_until_it_answers_again(tmp_path):
    """A cluster of this test alone: one node paused (shorter than the cluster's node timeout, so the cluster stays
    up): the ops on its slots time out, the store says so and marks itself unhealthy, then carries on."""
    with start_redis_cluster(3, log_dir=tmp_path) as cluster:
        store = RedisStore(cluster.url, cluster=True, socket_timeout=0.3)
        ns = unique("t")
        batch = [op for i in range(20) for op in every_op(ns, f"p{i}", T0)]
        try:
            await store.run(batch)
            cluster.nodes[2].pause()
            try:
                started = time.monotonic()
                with pytest.raises(StateUnavailable):
                    await store.run(batch)
                assert time.monotonic() - started < 1.5 and not store.healthy
            finally:
                cluster.nodes[2].resume()
            cluster.wait_until_ok()
            assert len(await store.run(batch)) == len(batch) and store.healthy
        finally:
            await store.close()


def test_a_cluster_url_with_a_database_number_is_a_config_error():
    with pytest.raises(ConfigError, match="Redis Cluster"):
        RedisStore("redis://127.0.0.1:7000/2", cluster=True)


def test_the_setting_selects_the_cluster_client(redis_cluster):
    store = RedisStore.from_settings(Settings.from_env({"SMSGUARD_REDIS_URL": redis_cluster.url,
                                                        "SMSGUARD_REDIS_CLUSTER": "true"}))
    plain = RedisStore.from_settings(Settings.from_env({"SMSGUARD_REDIS_URL": redis_cluster.url}))
    assert store.cluster and not store.batch_script and "cluster" in repr(store)
    assert not plain.cluster and plain.batch_script


def decisions_and_port_actions(records: list[dict]) -> tuple[list, list]:
    decisions = [(r["msg_id"], r["action"]) for r in records if r.get("type") == "decision"]
    actions = [(r["port"], r["ts_ms"], r["state"]) for r in records if r.get("type") == "port_action"]
    return decisions, actions


def test_the_engine_decides_on_the_cluster_as_on_one_redis_and_in_memory(redis_cluster, redis_server):
    """Ten minutes of simulated night traffic (a port goes spammy and is throttled): the cluster's output is the
    standalone Redis's to the byte (same scripts, same HyperLogLogs), and in memory every message gets the same
    action and every port the same actions (the HyperLogLog counts may move a reason's value a little)."""
    from detector.model import CachedScorer
    from detector.registry import Registry

    settings = Settings.from_env({})
    scorer = CachedScorer(Registry(settings.models_dir).load_promoted(), 100_000)
    sim = TrafficSimulator(settings.data_dir, seed=11)
    records = list(sim.events(sim.default_profiles(8), 1_731_337_200_000, 10 * 60))

    async def replay(store):
        try:
            return (await areplay_records(records, settings, scorer=scorer, store=store))[1]
        finally:
            await store.close()

    on_cluster = asyncio.run(replay(RedisStore(redis_cluster.url, cluster=True)))
    on_one_redis = asyncio.run(replay(RedisStore(redis_server.url)))
    in_memory = asyncio.run(replay(MemoryStore()))
    assert len(on_cluster) >= len(records)
    assert on_cluster == on_one_redis
    decisions, port_actions = decisions_and_port_actions(on_cluster)
    assert port_actions and (decisions, port_actions) == decisions_and_port_actions(in_memory)
    assert {action for _, action in decisions} >= {"allow", "flag", "block"}


async def test_the_dashboard_reads_and_writes_port_states_on_the_cluster_from_settings(settings, redis_cluster):
    s = settings({"SMSGUARD_REDIS_URL": redis_cluster.url, "SMSGUARD_REDIS_CLUSTER": "true",
                  "SMSGUARD_OPERATOR_TOKENS": f"alice:{TOKEN}"})
    await acreate_topics(s.kafka_bootstrap, [s.topic(TOPIC_PORT_ACTIONS)], 1, compacted=[s.topic(TOPIC_PORT_ACTIONS)])
    port = port_away_from(redis_cluster)
    now = int(time.time() * 1000)
    store = RedisStore.from_settings(s)
    try:
        await store.put_port_state(PortAction(port, now - 2, "watch", [], now - 2, None, "engine"))
        await store.put_port_state(throttle(port, now - 1))
        await store.register_signatures(port, ["京东", "淘宝"])
        async with TestClient(TestServer(create_app(s, lookback=100))) as client:
            shown = await (await client.get(f"/api/ports/{port}")).json()
            resp = await client.post(f"/api/ports/{port}/actions", headers={"Authorization": f"Bearer {TOKEN}"},
                                     json={"kind": "block", "reason": "fraud"})
            assert resp.status == 200, await resp.text()
        stored = (await store.get_port_states([port]))[port]
        rows = await _redis_port_rows(s, "block")
    finally:
        await store.close()
    assert shown["history_error"] is None
    assert [a["state"] for a in shown["history"]] == ["throttle", "watch"]
    assert shown["registered_signatures"] == ["京东", "淘宝"]
    assert stored.state == "block" and stored.decided_by == "alice"
    assert port in [row["port"] for row in rows]


def test_the_gateway_and_signatures_clis_use_the_cluster_from_settings(redis_cluster, tmp_path):
    port = port_away_from(redis_cluster)
    env = {"SMSGUARD_REDIS_URL": redis_cluster.url, "SMSGUARD_REDIS_CLUSTER": "true"}
    registry = tmp_path / "registry.tsv"
    registry.write_text(f"{port}\t顺丰,京东\n", encoding="utf-8")

    async def put_state() -> None:
        store = RedisStore(redis_cluster.url, cluster=True)
        try:
            await store.put_port_state(throttle(port, int(time.time() * 1000), rate=30))
        finally:
            await store.close()

    asyncio.run(put_state())
    runner = CliRunner()
    loaded = runner.invoke(main, ["signatures", "load", str(registry)], env=env)
    assert loaded.exit_code == 0, loaded.output
    states = runner.invoke(main, ["gateway", "--states", "--poll", "1"], env=env)
    assert states.exit_code == 0, states.output
    assert f'"port": "{port}", "state": "throttle", "rate_limit_per_min": 30' in states.output

    async def registered() -> frozenset:
        store = RedisStore(redis_cluster.url, cluster=True)
        try:
            return (await store.registered_signatures([port]))[port]
        finally:
            await store.close()

    assert asyncio.run(registered()) == frozenset({"顺丰", "京东"})


def test_bench_store_times_the_cluster_path_with_the_same_answers(redis_server):
    """`smsguard bench store --cluster`: a row for the cluster (a cluster of its own, stopped after the run)."""
    from detector.state.bench import StoreBenchConfig, render, run_store_bench

    cfg = StoreBenchConfig(messages=300, batch_size=100, ports=10, traffic="synthetic", warmup_batches=2,
                           redis_url=redis_server.url, cluster=True)
    result = run_store_bench(cfg)
    cluster_rows = [f for f in result.figures if f.path.startswith("Redis Cluster")]
    assert result.same_answers and len(cluster_rows) == 1
    assert cluster_rows[0].ops > 0 and cluster_rows[0].server_cpu_s > 0
    assert "| Redis Cluster, 3 primaries (per-op, cluster=True) |" in render(result, cfg)


def wait_for_promotion(cluster, away_from: int, timeout: float = 30.0) -> None:
    """Until the survivors' slot map names no slot of the port ``away_from`` (its replica took them over)."""
    survivor = redis.Redis(port=next(node.port for node in cluster.nodes if node.running))
    deadline = time.monotonic() + timeout
    try:
        while any(primary[1] == away_from for _, _, primary, *replicas in survivor.execute_command("CLUSTER", "SLOTS")):
            assert time.monotonic() < deadline, "no replica was promoted"
            time.sleep(0.1)
    finally:
        survivor.close()
    cluster.wait_until_ok()


@pytest.mark.slow      # ~15 s: six nodes, then the cluster's node timeout and an election
async def test_after_a_primary_dies_and_its_replica_takes_over_the_store_carries_on(tmp_path):
    """3 primaries with a replica each: the primary of some keys is killed. Calls on its slots fail with
    StateUnavailable until the replica is promoted; then the store finds the new primary by itself."""
    with start_redis_cluster(3, replicas=1, log_dir=tmp_path) as cluster:
        store = RedisStore(cluster.url, cluster=True, socket_timeout=0.5)
        ns = unique("t")
        batch = [op for i in range(20) for op in every_op(ns, f"p{i}", T0)]
        try:
            await store.run(batch)
            probe = redis.Redis(port=cluster.nodes[0].port)
            try:
                victim_port = probe.execute_command("CLUSTER", "SLOTS")[-1][2][1]     # a primary of the last range
            finally:
                probe.close()
            victim = next(node for node in cluster.nodes if node.port == victim_port)
            victim.stop()
            with pytest.raises(StateUnavailable):
                await store.run(batch)
            wait_for_promotion(cluster, away_from=victim_port, timeout=60.0)   # slower when the suite loads the CPU
            later = [op for i in range(20) for op in every_op(ns, f"p{i}", T0 + 300_000)]
            # The same store, not a new one: a call that still meets the old slot map fails and makes the client
            # refresh it (as the worker's next batch would), so a few seconds are allowed for that.
            deadline = time.monotonic() + 15
            while True:
                try:
                    got = await store.run(later)
                    break
                except StateUnavailable:
                    assert time.monotonic() < deadline, "the store did not find the promoted replica"
                    await asyncio.sleep(0.2)
            assert store.healthy and len(got) == len(later)
        finally:
            await store.close()
