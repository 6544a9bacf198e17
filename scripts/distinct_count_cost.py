"""Redis CPU of a Distinct op in steady state: counting every message's port fan-out, or only the port's last
message of each micro-batch (``Distinct.count=False`` for the others, as the engine does for port_recipients).

    .venv/bin/python scripts/distinct_count_cost.py

Starts its own redis-server (Debian's), sends 120,000 ops for 20 ports over 70 minutes of event time, so that
every 10-minute bucket of the one-hour span exists and a count merges six HyperLogLogs, in micro-batches of
500 through RedisStore's batch script. It prints Redis's CPU (INFO cpu) and the wall time per op, twice for
each mode.
"""
import asyncio
import time

import redis

from detector.services import start_redis
from detector.state.base import Distinct, tag
from detector.state.redis import RedisStore

T0 = 1_731_326_400_000
OPS, PORTS, BATCH = 120_000, 20, 500


def redis_cpu_s(client: redis.Redis) -> float:
    info = client.info("cpu")
    return info["used_cpu_sys"] + info["used_cpu_user"]


def fan_out_ops(prefix: str, count_every_op: bool) -> list[Distinct]:
    ops = []
    for i in range(OPS):
        ts = T0 + i * (70 * 60_000 // OPS)
        last_of_port = i % BATCH >= BATCH - PORTS      # ports take turns: the batch's last 20 ops are one per port
        ops.append(Distinct(tag(prefix, f"1069{i % PORTS:04d}", "rcpt"), ts, f"r{i}", 600, 3600,
                            count_every_op or last_of_port))
    return ops


async def measure(url: str, client: redis.Redis, ops: list[Distinct]) -> tuple[float, float]:
    store = RedisStore(url)
    cpu, wall = redis_cpu_s(client), time.perf_counter()
    for start in range(0, len(ops), BATCH):
        await store.run(ops[start:start + BATCH])
    wall, cpu = time.perf_counter() - wall, redis_cpu_s(client) - cpu
    await store.close()
    return cpu / len(ops) * 1e6, wall / len(ops) * 1e6


async def main(url: str) -> None:
    client = redis.Redis.from_url(url)
    for round_ in range(2):
        for every in (True, False):
            cpu_us, wall_us = await measure(url, client, fan_out_ops(f"dc{round_}{int(every)}", every))
            label = "count every op" if every else "count the last"
            print(f"{label}: Redis CPU {cpu_us:6.2f} µs/op, wall {wall_us:6.2f} µs/op")


if __name__ == "__main__":
    server = start_redis()
    try:
        asyncio.run(main(server.url))
    finally:
        server.stop()
