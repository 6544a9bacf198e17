"""Commands of the streaming side: ``smsguard simulate``, ``smsguard worker`` and ``smsguard demo``.

Heavy imports (faust, aiokafka, rich) happen inside the commands so ``smsguard --help`` stays fast.
"""
from __future__ import annotations

import time
import click

from detector.commands import output_file_option
from detector.settings import Settings

POSITIVE = click.FloatRange(min=0, min_open=True)


def register(main: click.Group, bench: click.Group) -> None:
    @main.command("simulate")
    @click.option("--rate", type=POSITIVE, default=100.0, show_default=True,
                  help="Messages a second, all ports together.")
    @click.option("--duration", type=POSITIVE, default=60.0, show_default=True,
                  help="Seconds of event time to generate.")
    @click.option("--ports", type=click.IntRange(min=1), default=20, show_default=True,
                  help="Ports in the default traffic mix.")
    @click.option("--seed", default=0, show_default=True, help="Same seed, same events.")
    @click.option("--start-ms", type=int, default=None, help="Event time of the first message (default: now).")
    @click.option("--malformed", type=click.IntRange(min=0), default=0, show_default=True,
                  help="Also emit this many contract-breaking events (after the others, in the file as on Kafka).")
    @output_file_option("-o", "--output", help="Write JSON lines to this file.")
    @click.option("--kafka", is_flag=True, help="Produce to the sms.outbound topic (SMSGUARD_KAFKA_BOOTSTRAP).")
    @click.option("--realtime", is_flag=True, help="With --kafka: send each event when its event time comes.")
    def simulate_cmd(rate, duration, ports, seed, start_ms, malformed, output, kafka, realtime):
        """Generate realistic outbound SMS traffic (for replay, the demo and benchmarks)."""
        from detector.simulator import TrafficSimulator, resolve_data_dir, scaled, write_jsonl

        settings = Settings.from_env()
        if not output and not kafka:
            raise click.UsageError("give -o FILE or --kafka")
        sim = TrafficSimulator(resolve_data_dir(settings.data_dir), seed=seed, tz_offset_h=settings.default_tz_offset_h)
        start = start_ms if start_ms is not None else int(time.time() * 1000)
        profiles = scaled(sim.default_profiles(ports), rate, at_ms=start, tz_offset_h=settings.default_tz_offset_h)
        if output:
            n = write_jsonl(sim.events(profiles, start, duration), output, extra=sim.malformed(malformed))
            click.echo(f"wrote {n} events to {output}" + (f", {malformed} of them malformed" if malformed else ""))
            return
        import asyncio

        from detector.events import TOPIC_OUTBOUND
        from detector.simulator import publish

        n = asyncio.run(publish(settings.kafka_bootstrap, settings.topic(TOPIC_OUTBOUND),
                                sim.events(profiles, start, duration), start_ms=start if realtime else None,
                                extra=sim.malformed(malformed)))
        click.echo(f"produced {n} events to {settings.topic(TOPIC_OUTBOUND)}")

    @main.command("worker")
    def worker_cmd():
        """Run a detector worker (faust): sms.outbound/optouts/complaints in, decisions and port actions out."""
        from detector.worker import run_worker

        run_worker(Settings.from_env())

    @main.command("demo")
    @click.option("--duration", type=float, default=None, help="Seconds to run (default: until Ctrl-C).")
    @click.option("--rate", type=POSITIVE, default=100.0, show_default=True,
                  help="Messages a second offered by all ports together.")
    @click.option("--ports", type=click.IntRange(min=1), default=20, show_default=True,
                  help="Ports in the traffic mix.")
    @click.option("--seed", default=0, show_default=True, help="Seed of the simulated traffic.")
    @click.option("--night-in", default=15.0, show_default=True,
                  help="Seconds until simulated midnight, when the night-time spam blaster starts.")
    def demo_cmd(duration, rate, ports, seed, night_in):
        """Run broker, Redis, a worker, the dashboard and a gateway with simulated traffic; show what happens."""
        from detector.demo import Demo

        Demo(Settings.from_env(), rate=rate, duration=duration, ports=ports, seed=seed, night_in_s=night_in).run()
