"""``smsguard gateway`` (the reference gateway) and ``smsguard bench gateway``."""
from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from typing import Awaitable, Callable, TextIO

import click

from detector.events import TOPIC_PORT_ACTIONS, PortAction
from detector.settings import Settings


def register(main: click.Group, bench: click.Group) -> None:
    main.add_command(gateway_cmd)
    bench.add_command(bench_gateway_cmd)


def _port_of(line: str) -> str | None:
    """A port from a line: the bare port, or a JSON object with a ``port`` field.

    >>> _port_of("10690001\\n"), _port_of('{"port": "10690002", "content": "..."}'), _port_of("  ")
    ('10690001', '10690002', None)
    """
    line = line.strip()
    if not line:
        return None
    if line.startswith("{"):
        try:
            port = json.loads(line).get("port")
        except (ValueError, AttributeError):
            return None
        return str(port) if port else None
    return line


@click.command("gateway")
@click.option("--redis-url", default=None,
              help="Default: SMSGUARD_REDIS_URL (a cluster node with SMSGUARD_REDIS_CLUSTER).")
@click.option("--bootstrap", default=None, help="Kafka to follow port actions on. Default: SMSGUARD_KAFKA_BOOTSTRAP.")
@click.option("--poll", "poll_s", type=float, default=None,
              help="Poll Redis every this many seconds instead of following the Kafka topic.")
@click.option("--states", "show_states", is_flag=True, help="Print the port states the gateway sees and exit.")
@click.option("--input", "source", type=click.File("r"), default="-", show_default=True,
              help="Sends, one a line: a port, or a JSON object with a port field.")
@click.option("--ready-timeout", type=float, default=60.0, show_default=True,
              help="Seconds to wait for the port states published before start (topic read to its end, or "
                   "Redis read once) before answering; then it answers anyway and says so on stderr.")
def gateway_cmd(redis_url: str | None, bootstrap: str | None, poll_s: float | None, show_states: bool,
                source: TextIO, ready_timeout: float) -> None:
    """Reference gateway: follow port actions and print what it would do with each send.

    Reads one send a line and prints one JSON verdict a line:
    {"port": ..., "verdict": "ok" | "delay" | "reject", "retry_after_ms": ..., "state": ...}.
    """
    settings = Settings.from_env()
    asyncio.run(_run_gateway(redis_url or settings.redis_url,
                             None if poll_s else (bootstrap or settings.kafka_bootstrap),
                             settings.topic(TOPIC_PORT_ACTIONS), poll_s or 2.0, show_states, source,
                             ready_timeout, cluster=settings.redis_cluster))


async def _run_gateway(redis_url: str, bootstrap: str | None, topic: str, poll_s: float, show_states: bool,
                       source: TextIO, ready_timeout: float = 60.0, *, cluster: bool = False) -> None:
    from detector.gateway import Gateway

    async with Gateway(redis_url, kafka_bootstrap=bootstrap, topic=topic, poll_interval_s=poll_s,
                       cluster=cluster) as gw:
        # answering before then would let a blocked port through when Redis was down or empty at start
        if not await gw.ready(ready_timeout):
            click.secho(f"smsguard gateway: port states not fully read after {ready_timeout:g} s "
                        f"(Kafka or Redis unreachable?); answering with what is known", fg="yellow", err=True)
        if show_states:
            for port, action in sorted(gw.states().items()):
                click.echo(json.dumps(_state_row(action), ensure_ascii=False))
            return
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, source.readline)     # stdin must not block the follower
            if not line:
                return
            port = _port_of(line)
            if port is None:
                continue
            verdict = await gw.allow(port)
            click.echo(json.dumps({"port": port, "verdict": verdict.action, "retry_after_ms": verdict.retry_after_ms,
                                   "state": verdict.state}))
            sys.stdout.flush()


def _state_row(action: PortAction) -> dict:
    return {"port": action.port, "state": action.state, "rate_limit_per_min": action.rate_limit_per_min,
            "expires_at_ms": action.expires_at_ms, "decided_by": action.decided_by}


# -- bench ------------------------------------------------------------------------------------------------
@click.command("gateway")
@click.option("--redis-url", default=None,
              help="Default: SMSGUARD_REDIS_URL (a cluster node with SMSGUARD_REDIS_CLUSTER).")
@click.option("--start-redis", is_flag=True, help="Start a private redis-server for the run.")
@click.option("-n", "calls", type=int, default=20_000, show_default=True, help="Calls per case.")
def bench_gateway_cmd(redis_url: str | None, start_redis: bool, calls: int) -> None:
    """Gateway.allow() latency per port state, against a raw Redis PING round trip in the same run."""
    server = None
    settings = Settings.from_env()
    cluster = settings.redis_cluster
    if start_redis:
        from detector.services import start_redis as start
        server = start()
        redis_url, cluster = server.url, False
    try:
        rows = asyncio.run(_bench(redis_url or settings.redis_url, calls, cluster=cluster))
    finally:
        if server is not None:
            server.stop()
    click.echo(f"{'case':<44} {'p50 µs':>9} {'p99 µs':>9} {'mean µs':>9}")
    for name, samples in rows:
        samples.sort()
        p50 = samples[len(samples) // 2] / 1000
        p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))] / 1000
        click.echo(f"{name:<44} {p50:>9.1f} {p99:>9.1f} {statistics.fmean(samples) / 1000:>9.1f}")


async def _timed(calls: int, call: Callable[[], Awaitable[object]]) -> list[int]:
    for _ in range(min(calls, 500)):          # warm up connections and caches
        await call()
    samples = []
    clock = time.perf_counter_ns
    for _ in range(calls):
        started = clock()
        await call()
        samples.append(clock() - started)
    return samples


async def _bench(redis_url: str, calls: int, *, cluster: bool = False) -> list[tuple[str, list[int]]]:
    from detector.gateway import Gateway

    gw = Gateway(redis_url, cluster=cluster)
    now = int(time.time() * 1000)
    suffix = str(now)
    for state, rate in (("watch", None), ("block", None), ("throttle", 10_000_000), ("throttle", 1)):
        port = f"bench-{state}-{rate}-{suffix}"
        gw.apply(PortAction(port, now, state, [], now, None, "bench", rate_limit_per_min=rate))
    try:
        await gw.store.ping()
        return [
            ("redis PING round trip (baseline)", await _timed(calls, gw.store.redis.ping)),
            ("allow(): normal port (no Redis)", await _timed(calls, lambda: gw.allow(f"bench-normal-{suffix}"))),
            ("allow(): watch port (no Redis)", await _timed(calls, lambda: gw.allow(f"bench-watch-None-{suffix}"))),
            ("allow(): blocked port (no Redis)", await _timed(calls, lambda: gw.allow(f"bench-block-None-{suffix}"))),
            ("allow(): throttled port, ok (Lua bucket)",
             await _timed(calls, lambda: gw.allow(f"bench-throttle-10000000-{suffix}"))),
            ("allow(): throttled port, delay (Lua bucket)",
             await _timed(calls, lambda: gw.allow(f"bench-throttle-1-{suffix}"))),
        ]
    finally:
        await gw.close()
