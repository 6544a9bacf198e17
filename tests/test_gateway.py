"""The gateway client: verdicts per port state, following port actions, and one shared rate across gateways."""
from __future__ import annotations

import asyncio
import json
import time
import uuid

from detector.dashboard.feeds import Publisher
from detector.events import TOPIC_PORT_ACTIONS, PortAction
from detector.gateway import DELAY, OK, REJECT, Gateway, bucket_key, burst_for
from detector.services import acreate_topics, free_port
from detector.state.redis import RedisStore

NOW = 1_731_326_400_000
DEAD_REDIS = f"redis://127.0.0.1:{free_port()}/0"       # nothing listens there


def action(port: str, state: str, ts: int = NOW, *, expires_at_ms: int | None = None, rate: int | None = None):
    return PortAction(port, ts, state, [], ts, expires_at_ms, "engine", rate_limit_per_min=rate)


def new_port() -> str:
    return "1069" + str(uuid.uuid4().int)[:10]


async def test_normal_watch_and_block_need_no_redis():
    gw = Gateway(DEAD_REDIS, clock=lambda: NOW)
    try:
        gw.apply(action("1", "watch"))
        gw.apply(action("2", "block"))
        gw.apply(action("3", "normal"))
        verdicts = [await gw.allow(p) for p in ("1", "2", "3", "never-seen")]
    finally:
        await gw.close()
    assert [(v.action, v.state) for v in verdicts] == [(OK, "watch"), (REJECT, "block"), (OK, "normal"),
                                                       (OK, "normal")]


async def test_states_lapse_locally_at_expires_at_and_older_actions_do_not_win():
    clock = [NOW]
    gw = Gateway(DEAD_REDIS, clock=lambda: clock[0])
    try:
        assert gw.apply(action("p", "block", expires_at_ms=NOW + 1000))
        assert not gw.apply(action("p", "normal", ts=NOW - 1))     # late, older: ignored
        assert (await gw.allow("p")).action == REJECT
        clock[0] = NOW + 1000
        assert (await gw.allow("p")).action == OK and gw.state_of("p") is None
    finally:
        await gw.close()


async def test_throttle_without_redis_falls_back_to_a_bucket_in_this_process():
    gw = Gateway(DEAD_REDIS, socket_timeout=0.2)
    try:
        gw.apply(action("p", "throttle", rate=60))
        first, second = await gw.allow("p"), await gw.allow("p")
    finally:
        await gw.close()
    assert first.action == OK and not gw.redis_ok
    assert second.action == DELAY and 900 <= second.retry_after_ms <= 1000


async def test_throttle_uses_the_shared_bucket_with_a_retry_after(redis_server):
    port = new_port()
    gw = Gateway(redis_server.url, burst_s=1.0)
    try:
        gw.apply(action(port, "throttle", rate=600))        # 10 a second, burst 10
        verdicts = [await gw.allow(port) for _ in range(12)]
        ttl = await gw.store.redis.pttl(bucket_key(port))
    finally:
        await gw.close()
    assert [v.action for v in verdicts] == [OK] * 10 + [DELAY] * 2
    assert 50 <= verdicts[-1].retry_after_ms <= 100
    assert 0 < ttl <= 2_000                # an idle bucket disappears once it would be empty


async def test_throttled_to_zero_rejects():
    gw = Gateway(DEAD_REDIS)
    try:
        gw.apply(action("p", "throttle", rate=0))
        assert (await gw.allow("p")).action == REJECT
    finally:
        await gw.close()


async def test_warm_start_from_redis_then_polling_picks_up_changes(redis_server):
    store = RedisStore(redis_server.url)
    blocked, throttled = new_port(), new_port()
    await store.put_port_state(action(blocked, "block"))
    gw = Gateway(redis_server.url, poll_interval_s=0.2)
    try:
        await gw.start()
        assert (await gw.allow(blocked)).action == REJECT
        await store.put_port_state(action(blocked, "normal", ts=NOW + 1))
        await store.put_port_state(action(throttled, "throttle", ts=NOW + 1, rate=60))
        deadline = time.monotonic() + 5
        while gw.state_of(throttled) is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert (await gw.allow(blocked)).action == OK
        assert gw.state_of(throttled).state == "throttle"
    finally:
        await gw.close()
        await store.close()


async def test_follows_the_port_actions_topic(broker, redis_server, topic_prefix):
    topic = topic_prefix + TOPIC_PORT_ACTIONS
    await acreate_topics(broker.bootstrap, [topic], 2, compacted=[topic])
    port = new_port()
    publisher = Publisher(broker.bootstrap)
    gw = Gateway(redis_server.url, kafka_bootstrap=broker.bootstrap, topic=topic)
    try:
        await publisher.send(topic, port, action(port, "watch").as_dict())     # before start: lookback
        await gw.start()
        await publisher.send(topic, port, action(port, "block", ts=NOW + 1).as_dict())
        deadline = time.monotonic() + 20
        while (gw.state_of(port) is None or gw.state_of(port).state != "block") and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert (await gw.allow(port)).action == REJECT
        assert gw.following
    finally:
        await gw.close()
        await publisher.close()


async def test_many_gateways_share_one_rate(redis_server):
    """Six gateways hammer one throttled port for 3 s; together they get the port's rate (±10%)."""
    port, rate_per_min, seconds = new_port(), 3_000, 3.0           # 50 a second
    gateways = [Gateway(redis_server.url) for _ in range(6)]
    for gw in gateways:
        gw.apply(action(port, "throttle", rate=rate_per_min))
    allowed = 0
    started = time.monotonic()

    async def send_all_the_time(gw: Gateway) -> None:
        nonlocal allowed
        while time.monotonic() - started < seconds:
            verdict = await gw.allow(port)
            if verdict.action == OK:
                allowed += 1
            else:
                await asyncio.sleep(min(verdict.retry_after_ms, 50) / 1000)

    try:
        await asyncio.gather(*(send_all_the_time(gw) for gw in gateways))
    finally:
        for gw in gateways:
            await gw.close()
    burst = burst_for(rate_per_min, 1.0)
    expected = rate_per_min / 60 * seconds
    assert abs((allowed - burst) - expected) <= 0.1 * expected, (allowed, burst, expected)


def test_reference_gateway_command_prints_a_verdict_per_send(redis_server):
    from click.testing import CliRunner

    from detector.cli import main

    blocked = new_port()

    async def put() -> None:
        store = RedisStore(redis_server.url)
        await store.put_port_state(action(blocked, "block"))
        await store.close()

    asyncio.run(put())
    sends = f'{blocked}\n{{"port": "10690001", "content": "你好"}}\n\n'
    result = CliRunner().invoke(main, ["gateway", "--redis-url", redis_server.url, "--poll", "1"], input=sends)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert lines == [{"port": blocked, "verdict": "reject", "retry_after_ms": 0, "state": "block"},
                     {"port": "10690001", "verdict": "ok", "retry_after_ms": 0, "state": "normal"}]


async def test_a_hung_redis_costs_one_timeout_then_the_local_bucket_until_it_answers_again(own_redis):
    port = new_port()
    gw = Gateway(own_redis.url, socket_timeout=0.2, burst_s=60.0)
    gw.redis_retry_s = 0.5
    try:
        gw.apply(action(port, "throttle", rate=600))
        assert (await gw.allow(port)).action == OK and gw.redis_ok
        own_redis.pause()
        started = time.monotonic()
        verdicts = [await gw.allow(port) for _ in range(50)]
        elapsed = time.monotonic() - started
        assert all(v.action == OK for v in verdicts) and not gw.redis_ok
        assert elapsed < 0.5                       # one timeout, not fifty
        own_redis.resume()
        await asyncio.sleep(0.6)
        assert (await gw.allow(port)).action == OK and gw.redis_ok
    finally:
        own_redis.resume()
        await gw.close()


HAMMER = """
import asyncio, sys, time
from detector.events import PortAction
from detector.gateway import Gateway

async def main(url, port, rate):
    gw = Gateway(url)
    gw.apply(PortAction(port, 1, "throttle", [], 1, None, "test", rate_limit_per_min=rate))
    await gw.store.ping()
    print("ready", flush=True)
    start_at, end_at = map(float, sys.stdin.readline().split())
    while time.time() < start_at:
        await asyncio.sleep(0.001)
    allowed = 0
    while time.time() < end_at:
        verdict = await gw.allow(port)
        if verdict.ok:
            allowed += 1
        else:
            await asyncio.sleep(min(verdict.retry_after_ms, 50) / 1000)
    await gw.close()
    print(allowed)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


def test_gateway_processes_share_one_rate(redis_server):
    """Three gateway processes on one throttled port: the Lua bucket is the only coordination."""
    import subprocess
    import sys

    port, rate_per_min, seconds = new_port(), 2_400, 3.0            # 40 a second
    procs = [subprocess.Popen([sys.executable, "-c", HAMMER, redis_server.url, port, str(rate_per_min)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(3)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    start_at = time.time() + 0.2
    for p in procs:
        p.stdin.write(f"{start_at} {start_at + seconds}\n")
        p.stdin.close()
    counts = [int(p.stdout.read()) for p in procs]
    assert all(p.wait(timeout=30) == 0 for p in procs)
    expected = rate_per_min / 60 * seconds
    assert all(c > 0 for c in counts), counts
    assert abs(sum(counts) - burst_for(rate_per_min, 1.0) - expected) <= 0.1 * expected, counts


async def test_an_operator_block_after_an_engine_throttle_dated_in_the_future_is_enforced():
    """The engine stamps event time (a sender clock 1 h fast), the operator the wall clock: the block still wins."""
    from detector.policy import Policy, operator_action

    throttle = Policy.load().next_port_state("p", None, 3.0, [], NOW + 3_600_000)
    block = operator_action("p", "block", "ops-li", "fraud", now_ms=NOW, current=throttle)
    gw = Gateway(DEAD_REDIS, clock=lambda: NOW)
    try:
        assert gw.apply(throttle) and gw.apply(block)
        assert (await gw.allow("p")).action == REJECT
    finally:
        await gw.close()


async def block_behind_the_lookback(broker, topic_prefix) -> tuple[str, str]:
    """A one-partition port-actions topic: a block, then more than the warm-start lookback (1,000) of others."""
    from detector.simulator import publish

    topic = topic_prefix + TOPIC_PORT_ACTIONS
    await acreate_topics(broker.bootstrap, [topic], 1, compacted=[topic])
    blocked = new_port()
    await publish(broker.bootstrap, topic, [action(blocked, "block").as_dict()] +
                  [action(new_port(), "watch").as_dict() for _ in range(1_200)])
    return topic, blocked


async def assert_knows_the_block_once_ready(gw, blocked):
    try:
        await gw.start()
        assert await gw.ready(timeout=30)
        assert (await gw.allow(blocked)).action == REJECT
    finally:
        await gw.close()


async def test_ready_waits_for_the_topic_when_redis_is_down_at_start(broker, topic_prefix):
    """Without the Redis warm start, a blocked port is only known once the topic has been read: ready() says when."""
    topic, blocked = await block_behind_the_lookback(broker, topic_prefix)
    await assert_knows_the_block_once_ready(
        Gateway(DEAD_REDIS, kafka_bootstrap=broker.bootstrap, topic=topic, socket_timeout=0.2), blocked)


async def test_an_empty_redis_makes_the_gateway_read_the_whole_topic(broker, redis_server, topic_prefix):
    """An empty Redis (flushed, a new instance) is no warm start: the 1,000-record lookback would miss the block."""
    topic, blocked = await block_behind_the_lookback(broker, topic_prefix)
    store = RedisStore(redis_server.url)
    await store.redis.flushdb()
    await store.close()
    await assert_knows_the_block_once_ready(
        Gateway(redis_server.url, kafka_bootstrap=broker.bootstrap, topic=topic), blocked)
