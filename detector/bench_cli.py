"""``smsguard bench stream`` and ``smsguard bench soak``: the worker on real processes, next to baselines.

Heavy imports happen inside the commands (``smsguard --help`` stays fast).
"""
from __future__ import annotations

import asyncio
import shlex
import sys
from pathlib import Path

import click


def _command_line() -> str:
    return "smsguard " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _config(**options):
    from detector.bench_stream import StreamBenchConfig, ensure_model
    from detector.registry import resolve_models_dir
    from detector.settings import Settings
    from detector.simulator import resolve_data_dir

    settings = Settings.from_env()
    models_dir = str(resolve_models_dir(options.pop("models_dir") or settings.models_dir).resolve())
    version = ensure_model(models_dir)
    options.setdefault("fetch_max_wait_ms", int(settings.fetch_max_wait_ms))
    options.setdefault("batch_size", int(settings.batch_size))
    return StreamBenchConfig(models_dir=models_dir, data_dir=str(resolve_data_dir(settings.data_dir).resolve()),
                             model_version=version, **options)


#: shared by ``bench stream`` and ``bench soak``
_send_every_option = click.option(
    "--send-every-ms", type=float, default=5.0, show_default=True,
    help="How often the load generator sends the events due, as one record batch per partition (a producer's "
         "linger.ms). The dev broker's CPU grows with the number of batches.")


def register(main: click.Group, bench: click.Group) -> None:
    @bench.command("stream")
    @click.option("--quick", is_flag=True, help="Short run (about 3-4 minutes on 2 cores) for smoke use.")
    @click.option("--workers", default="1,2", show_default=True, help="Worker counts to measure, comma separated.")
    @click.option("--rate", default="5000", show_default=True,
                  help="Offered rate(s) of the latency runs (msgs/s), comma separated, e.g. 250,5000.")
    @click.option("--rate-seconds", type=float, default=None, help="Length of each fixed-rate run (default 60, quick 10).")
    @click.option("--backlog", type=int, default=None, help="Backlog drained at full speed (default 150k, quick 10k).")
    @click.option("--ports", type=int, default=200, show_default=True, help="Ports in the simulated traffic.")
    @click.option("--fetch-wait-ms", type=int, default=None,
                  help="SMSGUARD_FETCH_MAX_WAIT_MS of the workers and the pass-through (default: the setting).")
    @_send_every_option
    @click.option("--batch-size", type=int, default=None,
                  help="SMSGUARD_BATCH_SIZE of the workers and the shell (default: the setting).")
    @click.option("--only", default="passthrough,naive,shell,worker", show_default=True,
                  help="Processor kinds to run: passthrough, naive, shell, worker.")
    @click.option("--models-dir", default=None, help="Model registry with a promoted model (default SMSGUARD_MODELS_DIR).")
    @click.option("--profile", "profile_dir", type=click.Path(file_okay=False), default=None,
                  help="py-spy the single worker into this directory (collapsed stacks) and print the top frames.")
    @click.option("--record", type=click.Path(dir_okay=False), default=None,
                  help="Append the results, with this command line, as a section to this Markdown file.")
    @click.option("--run-dir", type=click.Path(file_okay=False), default="/tmp/smsguard-bench", show_default=True,
                  help="Service and process logs.")
    def stream_cmd(quick, workers, rate, rate_seconds, backlog, ports, fetch_wait_ms, send_every_ms, batch_size, only,
                   models_dir, profile_dir, record, run_dir):
        """Throughput, latency, CPU and RSS of the worker (N=1,2) next to a raw pass-through and a naive faust agent."""
        from detector.bench_stream import (load_average, profile_markdown, record_section, results_markdown,
                                           run_stream_bench)
        from detector.services import local_stack

        rates = tuple(float(r) for r in rate.split(",") if r.strip())
        cfg = _config(workers=tuple(int(w) for w in workers.split(",") if w.strip()), rate=max(rates), rates=rates,
                      rate_seconds=rate_seconds or (10.0 if quick else 60.0),
                      backlog=backlog or (10_000 if quick else 150_000),
                      baseline_backlog=2 * (backlog or (10_000 if quick else 150_000)),
                      naive_seconds=8.0 if quick else 30.0, settle_s=15.0 if quick else 60.0, ports=ports,
                      send_every_ms=send_every_ms,
                      **({"fetch_max_wait_ms": fetch_wait_ms} if fetch_wait_ms is not None else {}),
                      **({"batch_size": batch_size} if batch_size is not None else {}),
                      kinds=tuple(k.strip() for k in only.split(",") if k.strip()),
                      profile_dir=Path(profile_dir) if profile_dir else None, run_dir=Path(run_dir),
                      models_dir=models_dir)
        click.echo(f"load average before: {load_average()}", err=True)
        with local_stack(log_dir=cfg.run_dir / "services") as stack:
            results = asyncio.run(run_stream_bench(stack, cfg))
        body = results_markdown(results, cfg)
        if cfg.profile_dir:
            for path in sorted(cfg.profile_dir.glob("worker-*.collapsed.txt")):
                phase = path.name.removeprefix("worker-").removesuffix(".collapsed.txt")
                body += f"\nProfile of the single worker, {phase} phase:\n\n" + profile_markdown(path)
        click.echo(body)
        if record:
            title = f"bench stream{' --quick' if quick else ''}, {rate} msgs/s offered"
            record_section(Path(record), title, _command_line(), body)
            click.echo(f"recorded in {record}", err=True)
        if any(r.error for r in results):
            sys.exit(1)

    @bench.command("soak")
    @click.option("--minutes", type=float, default=10.0, show_default=True)
    @click.option("--rate", type=float, default=1_000.0, show_default=True, help="Offered rate (msgs/s).")
    @click.option("--every", type=float, default=30.0, show_default=True, help="Seconds between samples.")
    @click.option("--dedup-ttl", type=int, default=300, show_default=True,
                  help="SMSGUARD_DEDUP_TTL_S of the worker (short, so memory can level off within the run).")
    @click.option("--ports", type=int, default=200, show_default=True)
    @click.option("--models-dir", default=None)
    @click.option("--record", type=click.Path(dir_okay=False), default=None)
    @click.option("--run-dir", type=click.Path(file_okay=False), default="/tmp/smsguard-soak", show_default=True)
    @_send_every_option
    def soak_cmd(minutes, rate, every, dedup_ttl, ports, models_dir, record, run_dir, send_every_ms):
        """One worker at a steady rate for a long time: RSS, Redis memory, throughput, lost decisions."""
        from detector.bench_stream import record_section, run_soak, soak_markdown
        from detector.services import local_stack

        cfg = _config(rate=rate, ports=ports, run_dir=Path(run_dir), models_dir=models_dir, send_every_ms=send_every_ms)
        with local_stack(log_dir=cfg.run_dir / "services") as stack:
            report = asyncio.run(run_soak(stack, cfg, minutes, every, dedup_ttl))
        body = soak_markdown(report)
        click.echo(body)
        if record:
            record_section(Path(record), f"bench soak, {minutes:g} min at {rate:,.0f} msgs/s", _command_line(), body)
        if report["lost"]:
            sys.exit(1)

    @bench.command("stream-baseline", hidden=True)
    @click.argument("kind", type=click.Choice(["passthrough", "naive", "shell"]))
    def baseline_cmd(kind):
        """A baseline processor of `bench stream` (configured through SMSGUARD_* like the worker)."""
        from detector.bench_stream import run_baseline

        run_baseline(kind)
