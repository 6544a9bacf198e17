"""RedisStore beyond the shared contract: lost scripts, a Redis that goes away and comes back, key layout,
and batch mode (chunks, NOSCRIPT mid-batch, thousands of keys, the same answers as the per-op pipeline)."""
from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detector.errors import StateUnavailable
from detector.events import PortAction
from detector.state.base import Baseline, Claim, Counter, Distinct, HashGet, HashSet, Window, tag
from detector.state.memory import MemoryStore
from detector.state.redis import RedisStore
from test_state_contract import batches_strategy

pytestmark = pytest.mark.integration

T0 = 1_731_326_400_000


def mixed_batch(ns: str, i: int) -> list:
    p = f"p{i % 3}"
    ts = T0 + i * 20_000
    return [Window(tag(ns, p, "w"), ts, 1, 60, (60, 600)), Baseline(tag(ns, p, "b"), ts, 2),
            Distinct(tag(ns, p, "d"), ts, f"r{i % 7}", 60, 600), Counter(tag(ns, p, "c"), ts, 1, 120),
            HashSet(tag(ns, p, "h"), ts, "last", str(i), 300), HashGet(tag(ns, p, "h"), ("last",)),
            Claim(tag(ns, f"m{i // 2}"), ts, 600)]


@pytest.mark.parametrize("batch_script", [True, False], ids=["batch", "per-op"])
async def test_script_flush_between_and_during_batches_changes_nothing(redis_server, batch_script):
    ns = "t" + uuid.uuid4().hex[:10]
    store, memory = RedisStore(redis_server.url, batch_script=batch_script, batch_ops=3), MemoryStore()
    flusher = RedisStore(redis_server.url)
    stop = asyncio.Event()

    async def flush_all_the_time() -> int:
        flushes = 0
        while not stop.is_set():
            await flusher.redis.script_flush()
            flushes += 1
            await asyncio.sleep(0.0005)
        return flushes

    flushing = asyncio.create_task(flush_all_the_time())
    try:
        for i in range(200):
            batch = mixed_batch(ns, i)
            assert await store.run(batch) == await memory.run(batch), i
    finally:
        stop.set()
        flushes = await flushing
        await store.close()
        await flusher.close()
    assert flushes > 20 and store.script_loads > 10


async def test_unreachable_redis_raises_fast_and_the_store_recovers_by_itself(own_redis):
    store = RedisStore(own_redis.url, socket_timeout=0.5)
    key = tag("t", "1069", "c")
    try:
        assert await store.run([Counter(key, T0, 1, 600)]) == [1] and store.healthy
        own_redis.stop()
        started = time.monotonic()
        with pytest.raises(StateUnavailable):
            await store.run([Counter(key, T0, 1, 600)])
        with pytest.raises(StateUnavailable):
            await store.all_port_states()
        assert time.monotonic() - started < 2 and not store.healthy
        own_redis.start()                      # same port, empty: the scripts must be loaded again
        assert await store.run([Counter(key, T0, 1, 600), Window(tag("t", "1069", "w"), T0, 1, 60, (60,))]) \
            == [1, (1,)]
        assert store.healthy
    finally:
        await store.close()


async def test_a_redis_that_stops_answering_times_out_instead_of_hanging(own_redis):
    store = RedisStore(own_redis.url, socket_timeout=0.3)
    key = tag("t", "1069", "w")
    try:
        await store.run([Window(key, T0, 1, 60, (60,))])
        own_redis.pause()
        started = time.monotonic()
        with pytest.raises(StateUnavailable):
            await store.run([Window(key, T0, 1, 60, (60,))])
        assert time.monotonic() - started < 1.5 and not store.healthy
        own_redis.resume()
        # The timed-out pipeline may have been applied after all: that is the documented uncertainty.
        assert (await store.run([Window(key, T0, 0, 60, (60,))]))[0][0] in (1, 2)
        assert store.healthy
    finally:
        own_redis.resume()
        await store.close()


async def test_keys_without_a_hash_tag_are_refused(redis_server):
    store = RedisStore(redis_server.url)
    try:
        with pytest.raises(ValueError, match="hash tag"):
            await store.run([Counter("sg:rcpt:r_1", T0, 1, 60)])
    finally:
        await store.close()


async def test_port_state_hash_is_readable_without_python(redis_server):
    store = RedisStore(redis_server.url)
    port = "1069" + uuid.uuid4().hex[:8]
    act = PortAction(port, T0, "throttle", [], T0 - 5, T0 + 600_000, "ops:alice", rate_limit_per_min=30,
                     previous_state="watch", note="批量营销")
    try:
        await store.put_port_state(act)
        fields = await store.redis.hgetall(f"sg:portstate:{{{port}}}")
        assert await store.redis.zscore("sg:ports", port) == T0
        assert await store.redis.lrange(f"sg:porthist:{{{port}}}", 0, -1) == [fields["json"]]
    finally:
        await store.close()
    assert {k: v for k, v in fields.items() if k != "json"} == {
        "state": "throttle", "rate_limit_per_min": "30", "expires_at_ms": str(T0 + 600_000),
        "since_ms": str(T0 - 5), "ts_ms": str(T0), "decided_by": "ops:alice"}
    assert json.loads(fields["json"]) == act.as_dict()


async def test_a_conditional_port_state_write_survives_a_script_flush(redis_server):
    store = RedisStore(redis_server.url)
    port = "1069" + uuid.uuid4().hex[:8]
    try:
        assert await store.put_port_state(PortAction(port, T0, "watch", [], T0, None, "engine"), replaces=None)
        await store.redis.script_flush()         # a restarted or flushed server: loaded again, sent again
        assert await store.put_port_state(PortAction(port, T0 + 1, "throttle", [], T0, None, "engine"), replaces=T0)
        assert not await store.put_port_state(PortAction(port, T0 + 2, "block", [], T0, None, "engine"), replaces=T0)
        assert (await store.get_port_states([port]))[port].state == "throttle" and store.script_loads == 2
    finally:
        await store.close()


async def test_a_conditional_port_state_write_compares_with_the_record_the_store_reads(redis_server):
    """Review 14: put_port_state.lua compared ``replaces`` with the hash's flat ``ts_ms`` field, while the engine's
    record comes from its ``json``. A hash holding one without the other (written by hand, or by a tool that wrote
    only the json) was a record the engine read but could never replace, or no record that it could never create:
    every batch's change was dropped as overtaken, for good. MemoryStore stores both."""
    store = RedisStore(redis_server.url)
    ports = ["1069" + uuid.uuid4().hex[:8] for _ in range(2)]
    key = f"sg:portstate:{{{ports[0]}}}"
    try:
        read = PortAction(ports[0], T0, "watch", [], T0, T0 + 3_600_000, "engine")
        await store.redis.hset(key, mapping={"json": json.dumps(read.as_dict()), "state": "watch"})     # no ts_ms
        [basis] = (await store.get_port_states([ports[0]])).values()
        assert not await store.put_port_state(PortAction(ports[0], T0 + 2, "block", [], T0, None, "engine"),
                                              replaces=T0 + 1)
        assert await store.put_port_state(PortAction(ports[0], T0 + 1, "throttle", [], T0, None, "engine"),
                                          replaces=basis.ts_ms)
        assert (await store.get_port_states([ports[0]]))[ports[0]].state == "throttle"
        # flat fields and no json: the store reads no record there, so a write for a port without one stores
        await store.redis.hset(f"sg:portstate:{{{ports[1]}}}", mapping={"state": "block", "ts_ms": str(T0)})
        assert await store.get_port_states([ports[1]]) == {}
        assert await store.put_port_state(PortAction(ports[1], T0 + 1, "watch", [], T0, None, "engine"), replaces=None)
        assert (await store.get_port_states([ports[1]]))[ports[1]].state == "watch"
    finally:
        await store.close()


async def test_a_pipeline_of_a_thousand_ops_is_one_round_trip_per_batch(redis_server):
    """Not a benchmark: guards against an accidental round trip per op (which would take far longer)."""
    store = RedisStore(redis_server.url)
    ns = "t" + uuid.uuid4().hex[:10]
    batch = [op for i in range(143) for op in mixed_batch(ns, i)]
    try:
        await store.run(batch[:7])
        started = time.perf_counter()
        await store.run(batch)
        elapsed = time.perf_counter() - started
    finally:
        await store.close()
    assert len(batch) == 1001 and elapsed < 1.0


# -- batch mode: one batch.lua call per chunk of ops -------------------------------------------------------------
async def evalsha_calls(redis) -> int:
    stats = await redis.info("commandstats")
    return stats.get("cmdstat_evalsha", {}).get("calls", 0)


async def test_batch_mode_sends_one_call_per_chunk_and_keeps_order_across_chunks(own_redis):
    """50 ops in chunks of 7: 8 EVALSHAs; ops on one key on both sides of a chunk boundary still see each other."""
    ns = "t" + uuid.uuid4().hex[:10]
    store = RedisStore(own_redis.url, batch_ops=7)
    batch = [op for i in range(7) for op in mixed_batch(ns, i)] + [Counter(tag(ns, "p0", "c"), T0 + 200_000, 0, 120)]
    try:
        await store.load_scripts()
        await store.redis.config_resetstat()
        got = await store.run(batch)
        assert await evalsha_calls(store.redis) == 8
    finally:
        await store.close()
    assert len(batch) == 50 and got == await MemoryStore().run(batch)


class FlushAfterFirstChunk(RedisStore):
    """Slips a SCRIPT FLUSH into the pipeline right after the first chunk of the first attempt."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.flushed = False

    def _send(self, pipe, command):
        super()._send(pipe, command)
        if not self.flushed:
            self.flushed = True
            pipe.other("SCRIPT", "FLUSH")


async def test_port_reads_are_one_script_call_per_chunk_and_answer_like_the_per_port_pipeline(own_redis):
    """The engine reads every port of a batch: batch mode asks with one script call per ``batch_ops`` ports
    (keys in order, absent ports absent) and survives a SCRIPT FLUSH; per-op mode (Redis Cluster) asks port by port."""
    batch, per_port = RedisStore(own_redis.url, batch_ops=3), RedisStore(own_redis.url, batch_script=False)
    ports = [f"1069{i:04d}" for i in range(8)]
    try:
        for i, port in enumerate(ports[:5]):
            if i % 2 == 0:
                await batch.put_port_state(PortAction(port, T0 + i, "watch", [], T0, None, "engine"))
            if i != 2:
                await batch.register_signatures(port, [f"商户{i}"] if i % 3 else [], replace=True)
        wanted = ports + ports[:2]            # repeats asked once
        await batch.ping()
        before = await evalsha_calls(batch.redis)
        states, registry = await batch.get_port_states(wanted), await batch.registered_signatures(wanted)
        assert await evalsha_calls(batch.redis) - before == 2 * 3     # 8 distinct ports, 3 a call
        assert {p: a.as_dict() for p, a in states.items()} == \
            {p: a.as_dict() for p, a in (await per_port.get_port_states(wanted)).items()}
        assert registry == await per_port.registered_signatures(wanted)
        assert sorted(states) == [ports[0], ports[2], ports[4]] and states[ports[2]].ts_ms == T0 + 2
        assert registry == {ports[0]: frozenset(), ports[1]: frozenset({"商户1"}), ports[3]: frozenset(),
                            ports[4]: frozenset({"商户4"})}
        await per_port.redis.script_flush()
        assert (await batch.get_port_states(wanted)).keys() == states.keys()
        assert await batch.registered_signatures(wanted) == registry
        assert await batch.get_port_states([]) == {} and await batch.registered_signatures([]) == {}
    finally:
        await batch.close()
        await per_port.close()


@pytest.mark.parametrize("batch_script", [True, False], ids=["batch", "per-op"])
async def test_noscript_mid_batch_resends_only_what_did_not_run(redis_server, batch_script):
    """The first chunk (or op) runs, the rest get NOSCRIPT: they run once after the reload, in order."""
    ns = "t" + uuid.uuid4().hex[:10]
    store = FlushAfterFirstChunk(redis_server.url, batch_script=batch_script, batch_ops=5)
    batch = [op for i in range(6) for op in mixed_batch(ns, i)]
    try:
        got = await store.run(batch)
        loads = store.script_loads
    finally:
        await store.close()
    assert store.flushed and loads == 2          # loaded, flushed mid-pipeline, loaded again
    assert got == await MemoryStore().run(batch)   # counters and claims show nothing ran twice


async def test_a_batch_touching_thousands_of_keys(redis_server):
    ns = "t" + uuid.uuid4().hex[:10]
    store = RedisStore(redis_server.url, batch_ops=10_000)      # one call, 4,300 KEYS
    batch = [op for i in range(2_500) for op in (Counter(tag(ns, f"r{i}", "c"), T0 + i, 1 + i % 3, 600),
                                                   Claim(tag(ns, f"m{i % 1_800}"), T0 + i, 600))]
    batch += [Counter(tag(ns, f"r{i}", "c"), T0 + 3_000, 0, 600) for i in range(0, 2_500, 7)]
    try:
        got = await store.run(batch)
        keys = [k async for k in store.redis.scan_iter(match=f"sg:{ns}:*", count=1000)]
    finally:
        await store.close()
    assert got == await MemoryStore().run(batch)
    assert len(keys) == 2_500 + 1_800


async def test_a_failing_op_in_a_batch_raises_state_unavailable(redis_server):
    ns = "t" + uuid.uuid4().hex[:10]
    key = tag(ns, "1069", "w")
    store = RedisStore(redis_server.url)
    try:
        await store.redis.set(key, "not a hash")
        with pytest.raises(StateUnavailable, match="rejected the batch of 3 ops"):
            await store.run([Counter(tag(ns, "1069", "c"), T0, 1, 60), Window(key, T0, 1, 60, (60,)),
                             Claim(tag(ns, "m"), T0, 60)])
        assert store.healthy
    finally:
        await store.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(data=st.data(), batch_ops=st.integers(1, 9))
def test_batch_mode_answers_exactly_like_per_op_mode(redis_server, data, batch_ops):
    """Random sequences (late events, expiry, every op kind) under two prefixes: identical answers, HLLs too."""
    ns = "t" + uuid.uuid4().hex[:10]
    batches = data.draw(batches_strategy(ns))

    def moved(batch: list) -> list:
        return [op._replace(key=op.key.replace(f"sg:{ns}:", f"sg:{ns}b:")) for op in batch]

    async def compare() -> None:
        per_op = RedisStore(redis_server.url, batch_script=False)
        batched = RedisStore(redis_server.url, batch_ops=batch_ops)
        try:
            for batch in batches:
                assert await batched.run(moved(batch)) == await per_op.run(batch), batch
        finally:
            await per_op.close()
            await batched.close()

    asyncio.run(compare())


def test_bench_store_measures_both_modes_and_cleans_up(redis_server):
    """`smsguard bench store` against an existing Redis: same answers in both modes, no keys left behind."""
    import redis as sync_redis

    from detector.state.bench import StoreBenchConfig, render, run_store_bench

    cfg = StoreBenchConfig(messages=300, batch_size=100, ports=10, traffic="synthetic", chunk_ops=250,
                           warmup_batches=2, redis_url=redis_server.url)
    result = run_store_bench(cfg)
    table = render(result, cfg)
    assert result.same_answers and result.ops > 300 * 7
    paths = [f.path for f in result.figures]
    assert paths[:2] == ["per-op pipeline (batch_script=False)", "batch.lua (chunks of 250)"]
    assert all(f.ops > 0 and f.seconds > 0 for f in result.figures) and "| batch.lua (chunks of 250) |" in table
    client = sync_redis.Redis.from_url(redis_server.url)
    try:
        assert not list(client.scan_iter(match="sgb*", count=1000))
    finally:
        client.close()


# -- the op scripts' cheaper paths answer like the full ones ------------------------------------------------------
async def command_calls(redis, command: str) -> int:
    stats = await redis.info("commandstats")
    return stats.get(f"cmdstat_{command}", {}).get("calls", 0)


@pytest.mark.parametrize("batch_script", [True, False], ids=["batch", "per-op"])
async def test_window_reads_its_cached_sums_within_a_bucket_and_answers_like_memory(own_redis, batch_script):
    """Two hours of minutes on one key (a full hash), many ops per minute, late ops and reads in between:
    the answers are MemoryStore's, and the hash is read whole (HGETALL) only when the bucket moves or
    after a late op, not for every op."""
    key = tag("t", "1069", "vol")
    spans = (60, 600, 3600)
    ops, moves = [], 0
    for minute in range(120):
        moves += 1
        for j in range(10):
            ts = T0 + minute * 60_000 + j * 5_000
            ops.append(Window(key, ts, 1 + j % 3, 60, spans))
            if j == 4:
                ops.append(Window(key, ts, 0, 60, spans))                      # a read
            if j == 6 and minute % 10 == 3:
                ops.append(Window(key, ts - 300_000, 2, 60, spans))            # late: drops the cache
                ops.append(Window(key, ts, 1, 60, spans))                      # so this one reads it all
                moves += 2
    store = RedisStore(own_redis.url, batch_script=batch_script)
    try:
        await store.load_scripts()
        await store.redis.config_resetstat()
        got = [answer for i in range(0, len(ops), 97) for answer in await store.run(ops[i:i + 97])]
        full_reads = await command_calls(store.redis, "hgetall")
        fields = await store.redis.hkeys(key)
        ttl = await store.redis.ttl(key)
    finally:
        await store.close()
    assert got == await MemoryStore().run(ops)
    assert full_reads == moves and len(ops) > 9 * moves
    assert "-inf" in fields and 60 < len(fields) <= 2 * 60 + 4 + 1 and 0 < ttl <= 3660


async def test_distinct_leaves_an_old_bucket_index_alone(redis_server):
    """Before the bucket names were derived, Distinct kept a sorted set of its buckets under its key:
    an upgraded store reads the bucket HyperLogLogs and never touches (or trips over) that set."""
    ns = "t" + uuid.uuid4().hex[:10]
    key = tag(ns, "1069", "rcpt")
    first = [Distinct(key, T0 + i * 1000, f"r{i % 7}", 600, 3600) for i in range(20)]
    later = [Distinct(key, T0 + 1_200_000 + i * 1000, f"r{i % 9}", 600, 3600) for i in range(20)]
    store = RedisStore(redis_server.url)
    try:
        await store.run(first)
        bucket = (T0 // 600_000)
        await store.redis.zadd(key, {str(bucket): bucket})         # what the old script kept
        await store.redis.expire(key, 4200)
        got = await store.run(later)
        index = await store.redis.zrange(key, 0, -1)
    finally:
        await store.close()
    memory = MemoryStore()
    await memory.run(first)
    assert got == await memory.run(later) and got[-1] == 9
    assert index == [str(bucket)]


async def test_distinct_refreshes_a_bucket_ttl_only_when_the_member_changed_it(redis_server):
    ns = "t" + uuid.uuid4().hex[:10]
    key = tag(ns, "1069", "rcpt")
    bucket_key = f"{key}:{T0 // 600_000}"
    store = RedisStore(redis_server.url)
    try:
        await store.run([Distinct(key, T0, "r1", 600, 3600)])
        await store.redis.expire(bucket_key, 100)
        assert await store.run([Distinct(key, T0 + 1, "r1", 600, 3600)]) == [1]    # nothing new: TTL kept
        kept = await store.redis.ttl(bucket_key)
        assert await store.run([Distinct(key, T0 + 2, "r2", 600, 3600)]) == [2]    # new member: TTL set again
        renewed = await store.redis.ttl(bucket_key)
    finally:
        await store.close()
    assert 0 < kept <= 100 and 4100 < renewed <= 4200


async def test_signatures_respell_moves_opt_outs_and_registry_entries_stored_under_an_old_spelling(redis_server,
                                                                                                    monkeypatch):
    """Review (session 14): canonical_signature now drops a signature's inner spaces, so an opt-out stored before
    as s:优 品 汇 no longer stopped 【优 品 汇】's marketing, now read as 优品汇. `smsguard signatures respell` moves it."""
    from click.testing import CliRunner

    from detector.cli import main
    from detector.engine import Engine
    from detector.events import EventParser
    from detector.privacy import RecipientHasher
    from detector.settings import Settings
    from detector.state.redis import signature_registry_key

    parser = EventParser(RecipientHasher("test-secret-0123456789"))
    port = "1069" + str(uuid.uuid4().int)[:8]
    number = "138" + str(uuid.uuid4().int)[:8]
    recipient = parser.parse_optout({"ts": T0, "recipient": number, "port": port, "signature": "优品汇"}).recipient
    store = RedisStore(redis_server.url)
    try:     # what the old code stored: the spaces kept
        await store.run([HashSet(tag("optout", recipient), T0, "s:优 品 汇", str(T0), 400 * 86_400)])
        await store.redis.sadd(signature_registry_key(port), "", "优 品 汇", "京东")

        async def decide(i):
            engine = Engine(Settings.from_env({}), store)
            event = parser.parse_sms({"msg_id": f"{port}-{i}", "ts": T0 + 3_600_000 + i, "port": port,
                                      "recipient": number, "content": "【优 品 汇】双11大促，全场5折，回T退订",
                                      "category": "marketing"})
            return (await engine.process([event])).decisions[0]

        before = await decide(1)
        assert before.action != "block" and {"unregistered_signature"} <= {r.signal for r in before.reasons}
        monkeypatch.setenv("SMSGUARD_REDIS_URL", redis_server.url)
        dry = await asyncio.to_thread(CliRunner().invoke, main, ["signatures", "respell", "--dry-run"])
        assert dry.exit_code == 0 and "would move" in dry.output, dry.output
        assert await store.redis.sismember(signature_registry_key(port), "优 品 汇")      # nothing changed
        result = await asyncio.to_thread(CliRunner().invoke, main, ["signatures", "respell"])
        assert result.exit_code == 0, result.output
        assert await store.redis.smembers(signature_registry_key(port)) == {"", "优品汇", "京东"}
        assert await store.redis.hget(tag("optout", recipient), "s:优品汇") == str(T0)
        assert not await store.redis.hexists(tag("optout", recipient), "s:优 品 汇")
        after = await decide(2)
        assert after.action == "block" and "opted_out" in {r.signal for r in after.reasons}, after
        assert "unregistered_signature" not in {r.signal for r in after.reasons}
        again = await asyncio.to_thread(CliRunner().invoke, main, ["signatures", "respell"])
        assert "moved 0 opt-out and 0 registry" in again.output, again.output
    finally:
        await store.close()
