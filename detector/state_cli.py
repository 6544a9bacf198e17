"""``smsguard bench store``: the Redis state store's cost per op, per-op pipeline vs batch script."""
from __future__ import annotations

import click


def register(main: click.Group, bench: click.Group) -> None:
    @bench.command("store")
    @click.option("--messages", type=int, default=10_000, show_default=True, help="Simulated messages.")
    @click.option("--batch-size", type=int, default=500, show_default=True, help="Messages per engine micro-batch.")
    @click.option("--ports", type=int, default=200, show_default=True, help="Ports in the simulated traffic.")
    @click.option("--rate", type=float, default=10_000.0, show_default=True,
                  help="Simulated msgs/s of event time (how many messages of a port share a batch).")
    @click.option("--traffic", type=click.Choice(["engine", "synthetic"]), default="engine", show_default=True,
                  help="engine: the engine's op lists for simulator traffic (needs SMSGUARD_DATA_DIR); "
                       "synthetic: the same op mix without the data.")
    @click.option("--chunk-ops", type=int, default=1_000, show_default=True, help="Ops per batch.lua call.")
    @click.option("--redis-url", default=None,
                  help="Measure an existing Redis (keys under a prefix of their own, deleted after); "
                       "default: start a redis-server of our own.")
    @click.option("--cluster", is_flag=True,
                  help="Also time the per-op path on a Redis Cluster of 3 primaries started for the run.")
    def store_cmd(messages, batch_size, ports, rate, traffic, chunk_ops, redis_url, cluster):
        """µs/op and ops/s of RedisStore's per-op pipeline and batch script, with PING pipelines as a floor."""
        from detector.settings import Settings
        from detector.simulator import resolve_data_dir
        from detector.state.bench import StoreBenchConfig, render, run_store_bench

        cfg = StoreBenchConfig(messages=messages, batch_size=batch_size, ports=ports, rate=rate, traffic=traffic,
                               chunk_ops=chunk_ops, redis_url=redis_url, cluster=cluster,
                               data_dir=str(resolve_data_dir(Settings.from_env().data_dir)))
        click.echo(render(run_store_bench(cfg), cfg))
