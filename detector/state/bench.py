"""``smsguard bench store``: what the Redis state store costs per op, per-op pipeline vs batch script.

The batches are the engine's own: simulator traffic (``SMSGUARD_DATA_DIR``) goes through
:class:`~detector.engine.Engine` over a recording in-memory store, in micro-batches of 500
messages, and every op list the engine hands to ``StateStore.run`` is kept (the msg_id claims,
then each batch's feeds: Distinct, Counter, HashGet and the per-port merged Window/Baseline).
``--traffic synthetic`` builds the same mix without the data set. The same batches then run,
in the same process against the same redis-server, through

* ``RedisStore(url, batch_script=False)``: one EVALSHA per op in one pipeline,
* ``RedisStore(url)``: one EVALSHA of batch.lua per batch (chunks of ``--chunk-ops``),

each under a key prefix of its own, so both start from an empty state and must give the same
answers (the command says whether they did). With ``--cluster`` the per-op path also runs against a
Redis Cluster of 3 primaries started for the run (``RedisStore(url, cluster=True)``, what
SMSGUARD_REDIS_CLUSTER selects; its redis CPU is summed over the primaries). Floors, same server:
PING pipelined on a raw socket (the server and the socket, no client library), the same PINGs
through redis-py's pipeline (the client library's cost per command, which the per-op mode pays
per op) and, when installed, ``redis-benchmark -c 1 -P 500 -t ping``.

Figures per path: wall µs per op and ops/s, the client's CPU µs per op (this process) and the
server's (``INFO cpu``), and msgs/s: messages per second the store alone would allow a worker.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from detector.errors import SmsGuardError
from detector.events import PortAction
from detector.state.base import ANY_RECORD, AnyRecord, Baseline, Claim, Counter, Distinct, HashGet, Op, StateStore, Window, tag
from detector.state.memory import MemoryStore

T0 = 1_731_304_800_000       # 2024-11-11T06:00:00Z, 14:00 in China: marketing hours, every profile active


@dataclass
class Figure:
    """One measured path: ``ops`` commands or ops in ``seconds`` of wall time."""
    path: str
    ops: int
    seconds: float
    client_cpu_s: float | None = None
    server_cpu_s: float | None = None
    messages: int | None = None

    @property
    def us_per_op(self) -> float:
        return self.seconds / self.ops * 1e6

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.seconds


class RecordingStore(StateStore):
    """A MemoryStore that keeps a copy of every op list ``run`` gets (the engine's real batches)."""

    def __init__(self) -> None:
        self.memory = MemoryStore()
        self.batches: list[list[Op]] = []

    async def run(self, ops: Sequence[Op]) -> list[Any]:
        self.batches.append(list(ops))
        return await self.memory.run(ops)

    async def get_port_states(self, ports: Iterable[str]) -> dict[str, PortAction]:
        return await self.memory.get_port_states(ports)

    async def put_port_state(self, action: PortAction, history_limit: int = 200, *,
                             replaces: int | None | AnyRecord = ANY_RECORD) -> bool:
        return await self.memory.put_port_state(action, history_limit, replaces=replaces)

    async def port_history(self, port: str, limit: int = 100) -> list[PortAction]:
        return await self.memory.port_history(port, limit)

    async def all_port_states(self) -> dict[str, PortAction]:
        return await self.memory.all_port_states()

    async def registered_signatures(self, ports: Iterable[str]) -> dict[str, frozenset[str]]:
        return await self.memory.registered_signatures(ports)

    async def register_signatures(self, port: str, signatures: Iterable[str], *, replace: bool = False) -> None:
        await self.memory.register_signatures(port, signatures, replace=replace)


async def engine_batches(data_dir: str, *, messages: int, batch_size: int, ports: int, rate: float,
                         seed: int = 7) -> list[list[Op]]:
    """The op lists the engine sends for ``messages`` simulated messages (no model: heuristics only)."""
    from detector.engine import Engine, NullScorer
    from detector.errors import InvalidEvent
    from detector.events import EventParser
    from detector.privacy import RecipientHasher
    from detector.settings import Settings
    from detector.simulator import TrafficSimulator, scaled

    settings = Settings.from_env()
    sim = TrafficSimulator(data_dir, seed=seed, tz_offset_h=settings.default_tz_offset_h)
    profiles = scaled(sim.default_profiles(ports), rate, at_ms=T0, tz_offset_h=settings.default_tz_offset_h)
    parser = EventParser(RecipientHasher(settings.recipient_secret))
    events = []
    for raw in sim.events(profiles, T0, messages / rate + 5):
        if len(events) >= messages:
            break
        try:
            events.append(parser.parse_any(raw))
        except InvalidEvent:
            continue
    if not events:
        raise SmsGuardError(f"the simulator produced no events from {data_dir}")
    recorder = RecordingStore()
    engine = Engine(settings, recorder, NullScorer())
    for i in range(0, len(events), batch_size):
        await engine.process(events[i:i + batch_size])
    return recorder.batches


def synthetic_batches(*, messages: int, batch_size: int, ports: int, rate: float, seed: int = 7) -> list[list[Op]]:
    """The engine's mix without the data set: per message 1 Claim (its own run, as the engine does),
    3-4 Distinct, 2 Counter, 1 HashGet; per port and batch a merged Window (two spans) and a Baseline.

    >>> batches = synthetic_batches(messages=100, batch_size=50, ports=5, rate=1000.0)
    >>> len(batches), [type(op).__name__ for op in batches[0][:1]], len(batches[1]) > 300
    (4, ['Claim'], True)
    """
    rng = random.Random(seed)
    port_names = [f"10690{i:04d}" for i in range(ports)]
    batches: list[list[Op]] = []
    for first in range(0, messages, batch_size):
        ts = [T0 + int((first + j) * 1000 / rate) for j in range(min(batch_size, messages - first))]
        batches.append([Claim(tag("msg", f"m{first + j}"), t, 86_400) for j, t in enumerate(ts)])
        ops: list[Op] = []
        volume: dict[str, list[int]] = {}
        for t in ts:
            port = rng.choice(port_names)
            rcpt = f"r_{rng.randrange(200_000):05x}"
            template = f"t{rng.randrange(2_000)}"
            ops.append(Distinct(tag("port", port, "rcpt"), t, rcpt, 600, 3600))
            ops.append(Distinct(tag("tpl", template, "ports"), t, port, 600, 3600))
            ops.append(Distinct(tag("rcpt", rcpt, "ports"), t, port, 3600, 86_400))
            if rng.random() < 0.5:
                ops.append(Distinct(tag("port", port, "tpl"), t, template, 600, 3600))
            ops.append(Counter(tag("rcpt", rcpt, port), t, 1, 3600))
            ops.append(Counter(tag("rcpt", rcpt, "day"), t, 1, 86_400))
            ops.append(HashGet(tag("optout", rcpt), (f"p:{port}",)))
            entry = volume.setdefault(port, [0, t])
            entry[0] += 1
            entry[1] = t
        for port, (amount, t) in volume.items():
            ops.append(Window(tag("port", port, "vol"), t, amount, 60, (60, 600)))
            ops.append(Baseline(tag("port", port, "base"), t, amount))
        batches.append(ops)
    return batches


def with_prefix(batches: list[list[Op]], prefix: str) -> list[list[Op]]:
    """The same ops on keys under ``prefix`` (the hash tag stays), so runs do not share state.

    >>> with_prefix([[Claim("sg:msg:{m1}", 0, 10)]], "sgb1")
    [[Claim(key='sgb1:msg:{m1}', ts_ms=0, ttl_s=10)]]
    """
    return [[op._replace(key=prefix + op.key.removeprefix("sg")) for op in batch] for batch in batches]


async def _server_cpu(redis: Any) -> float:
    """CPU seconds the server has used (every primary's, summed, for a cluster client)."""
    from redis.asyncio.cluster import RedisCluster

    if isinstance(redis, RedisCluster):
        infos = list((await redis.info("cpu", target_nodes=RedisCluster.PRIMARIES)).values())
    else:
        infos = [await redis.info("cpu")]
    return sum(float(info["used_cpu_user"]) + float(info["used_cpu_sys"]) for info in infos)


async def time_store(path: str, url: str, batches: list[list[Op]], *, warmup: int, messages: int,
                     **store_options: Any) -> tuple[Figure, list[list[Any]]]:
    """Run ``batches`` in order through one RedisStore; time all but the first ``warmup`` batches."""
    from detector.state.redis import RedisStore

    store = RedisStore(url, **store_options)
    answers: list[list[Any]] = []
    try:
        for batch in batches[:warmup]:
            answers.append(await store.run(batch))
        timed = batches[warmup:]
        cpu0, server0, wall0 = time.process_time(), await _server_cpu(store.redis), time.perf_counter()
        for batch in timed:
            answers.append(await store.run(batch))
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        server = await _server_cpu(store.redis) - server0
    finally:
        await store.close()
    ops = sum(len(b) for b in timed)
    return Figure(path, ops, wall, cpu, server, messages), answers


async def raw_ping_pipeline(host: str, port: int, *, per_round: int, rounds: int) -> Figure:
    """PINGs pipelined on a bare socket: the server and loopback floor per command."""
    reader, writer = await asyncio.open_connection(host, port)
    request, reply = b"*1\r\n$4\r\nPING\r\n" * per_round, 7 * per_round      # each reply is +PONG\r\n
    try:
        started = time.perf_counter()
        for _ in range(rounds):
            writer.write(request)
            await reader.readexactly(reply)
        return Figure("PING, raw socket pipeline", per_round * rounds, time.perf_counter() - started)
    finally:
        writer.close()
        await writer.wait_closed()


async def client_ping_pipeline(url: str, *, per_round: int, rounds: int) -> Figure:
    """The same PINGs through redis-py's pipeline: the client library's cost per command."""
    from redis.asyncio import Redis

    redis = Redis.from_url(url, decode_responses=True)
    try:
        await redis.ping()
        cpu0, started = time.process_time(), time.perf_counter()
        for _ in range(rounds):
            pipe = redis.pipeline(transaction=False)
            for _ in range(per_round):
                pipe.ping()
            await pipe.execute()
        return Figure("PING, redis-py pipeline", per_round * rounds, time.perf_counter() - started,
                      time.process_time() - cpu0)
    finally:
        await redis.aclose()


def redis_benchmark_ping(host: str, port: int, *, requests: int = 1_000_000) -> Figure | None:
    """``redis-benchmark -c 1 -P 500 -t ping`` (PING_MBULK), or None when the tool is not installed."""
    tool = shutil.which("redis-benchmark")
    if tool is None:
        return None
    out = subprocess.run([tool, "-h", host, "-p", str(port), "-c", "1", "-P", "500", "-n", str(requests),
                          "-t", "ping", "--csv"], capture_output=True, text=True, timeout=120, check=False).stdout
    for line in out.splitlines():
        cells = [c.strip('"') for c in line.split(",")]
        if cells and cells[0] == "PING_MBULK":
            rps = float(cells[1])
            return Figure("PING, redis-benchmark -c 1 -P 500", requests, requests / rps)
    return None


@dataclass
class StoreBenchConfig:
    messages: int = 10_000
    batch_size: int = 500
    ports: int = 200
    rate: float = 10_000.0            # simulated msgs/s: how many messages of a port share a batch
    traffic: str = "engine"           # engine | synthetic
    chunk_ops: int = 1_000
    warmup_batches: int = 4
    data_dir: str = ""
    redis_url: str | None = None      # an existing server; default: start our own redis-server
    cluster: bool = False             # also time the per-op path on a Redis Cluster of 3 primaries started here


@dataclass
class StoreBenchResult:
    figures: list[Figure]
    batches: int
    ops: int
    ops_per_message: float
    kinds: dict[str, int]
    same_answers: bool
    differing: int
    load_average: float = 0.0       # 1-minute load average when the timing started (other processes compete)


async def _measure(cfg: StoreBenchConfig, url: str, cluster_url: str | None = None) -> StoreBenchResult:
    from urllib.parse import urlsplit

    if cfg.traffic == "engine":
        batches = await engine_batches(cfg.data_dir, messages=cfg.messages, batch_size=cfg.batch_size,
                                       ports=cfg.ports, rate=cfg.rate)
    elif cfg.traffic == "synthetic":
        batches = synthetic_batches(messages=cfg.messages, batch_size=cfg.batch_size, ports=cfg.ports, rate=cfg.rate)
    else:
        raise SmsGuardError(f"unknown traffic {cfg.traffic!r}: engine or synthetic")
    kinds: dict[str, int] = {}
    for batch in batches:
        for op in batch:
            kinds[type(op).__name__] = kinds.get(type(op).__name__, 0) + 1
    total_ops = sum(kinds.values())
    # the messages of the timed batches: the engine runs two op lists (claims, feeds) per message batch
    warmup = min(cfg.warmup_batches, max(0, len(batches) - 2))
    timed_share = sum(len(b) for b in batches[warmup:]) / total_ops
    messages = round(cfg.messages * timed_share)

    run_id = uuid.uuid4().hex[:6]
    load_average = os.getloadavg()[0]
    per_op, per_op_answers = await time_store("per-op pipeline (batch_script=False)", url,
                                              with_prefix(batches, f"sgb{run_id}p"), warmup=warmup,
                                              messages=messages, batch_script=False)
    batch, batch_answers = await time_store(f"batch.lua (chunks of {cfg.chunk_ops})", url,
                                            with_prefix(batches, f"sgb{run_id}b"), warmup=warmup,
                                            messages=messages, batch_ops=cfg.chunk_ops)
    differing = sum(a != b for x, y in zip(per_op_answers, batch_answers) for a, b in zip(x, y))
    on_cluster = []
    if cluster_url:
        cluster, cluster_answers = await time_store("Redis Cluster, 3 primaries (per-op, cluster=True)", cluster_url,
                                                    with_prefix(batches, f"sgb{run_id}c"), warmup=warmup,
                                                    messages=messages, cluster=True)
        differing += sum(a != b for x, y in zip(per_op_answers, cluster_answers) for a, b in zip(x, y))
        on_cluster.append(cluster)

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    per_round = max(1, round(total_ops / max(1, len(batches))))
    floors = [await raw_ping_pipeline(host, port, per_round=per_round, rounds=200),
              await client_ping_pipeline(url, per_round=per_round, rounds=50)]
    benchmark = await asyncio.to_thread(redis_benchmark_ping, host, port)
    if benchmark is not None:
        floors.append(benchmark)
    if cfg.redis_url:
        await _delete_prefixed(url, f"sgb{run_id}*")
    return StoreBenchResult([per_op, batch, *on_cluster, *floors], len(batches), total_ops,
                            total_ops / cfg.messages, kinds,
                            differing == 0, differing, load_average)


async def _delete_prefixed(url: str, pattern: str) -> None:
    from redis.asyncio import Redis

    redis = Redis.from_url(url)
    try:
        keys = [k async for k in redis.scan_iter(match=pattern, count=1000)]
        for i in range(0, len(keys), 1000):
            await redis.unlink(*keys[i:i + 1000])
    finally:
        await redis.aclose()


def run_store_bench(cfg: StoreBenchConfig) -> StoreBenchResult:
    """Measure against ``cfg.redis_url`` or a redis-server of our own (started and stopped here), and with
    ``cfg.cluster`` a Redis Cluster of our own too."""
    from detector.services import start_redis, start_redis_cluster

    with contextlib.ExitStack() as services:
        cluster_url = services.enter_context(start_redis_cluster()).url if cfg.cluster else None
        url = cfg.redis_url or services.enter_context(start_redis()).url
        return asyncio.run(_measure(cfg, url, cluster_url))


def render(result: StoreBenchResult, cfg: StoreBenchConfig) -> str:
    """The figures as a Markdown table with the op mix above it.

    >>> r = StoreBenchResult([Figure("a", 1000, 0.05, 0.04, 0.01, 500)], 2, 1000, 2.0, {"Claim": 1000}, True, 0)
    >>> print(render(r, StoreBenchConfig(messages=500)).splitlines()[-1])
    | a | 1,000 | 50.0 | 20,000 | 40.0 | 10.0 | 10,000 |
    """
    mix = ", ".join(f"{kind} {n:,}" for kind, n in sorted(result.kinds.items(), key=lambda kv: -kv[1]))
    lines = [
        f"{cfg.messages:,} messages ({cfg.traffic} traffic, {cfg.ports} ports, {cfg.rate:,.0f} msgs/s of event time) "
        f"in batches of {cfg.batch_size}: {result.batches} op lists, {result.ops:,} ops "
        f"({result.ops_per_message:.1f} per message): {mix}.",
        "Answers identical on every path: " + ("yes" if result.same_answers else f"NO ({result.differing} differ)"),
        f"Load average when timing started: {result.load_average:.1f} on {os.cpu_count()} cores "
        "(wall times include waiting for the CPU; the CPU columns do not).",
        "",
        "| path | ops timed | µs/op | ops/s | client CPU µs/op | redis CPU µs/op | msgs/s (store only) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]

    def cell(value: float | None, fmt: str) -> str:
        return "" if value is None else format(value, fmt)

    for f in result.figures:
        lines.append(" | ".join([
            f"| {f.path}", f"{f.ops:,}", f"{f.us_per_op:.1f}", f"{f.ops_per_s:,.0f}",
            cell(None if f.client_cpu_s is None else f.client_cpu_s / f.ops * 1e6, ".1f"),
            cell(None if f.server_cpu_s is None else f.server_cpu_s / f.ops * 1e6, ".1f"),
            cell(None if f.messages is None else f.messages / f.seconds, ",.0f")]) + " |")
    return "\n".join(lines)
