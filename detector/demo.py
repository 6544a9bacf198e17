"""``smsguard demo``: the whole system on this machine, with traffic, in one command.

Starts tansu and redis-server (:mod:`detector.services`), creates the topics, runs one
detector worker and the dashboard as subprocesses (each in its own process group), embeds
a reference :class:`~detector.gateway.Gateway` and sends simulated traffic through it:
the gateway lets normal ports through, holds back throttled ones and stops blocked ones.

The simulated clock starts a little before midnight China time, so the port that turns
into a night-time spam blaster starts blasting a few seconds into the demo. A live summary
shows messages/s, decisions by action, the most flagged ports with their states and the
gateway's verdicts. Ctrl-C, SIGTERM or the end of ``--duration`` stop everything: child
process groups are terminated (then killed), and an ``atexit`` hook catches the rest.
"""
from __future__ import annotations

import asyncio
import atexit
import contextlib
import heapq
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detector.events import TOPIC_DECISIONS, TOPIC_OUTBOUND, TOPIC_PORT_ACTIONS
from detector.settings import Settings
from detector.simulator import PortProfile, TrafficSimulator, resolve_data_dir, scaled

LEVEL = {"normal": 0, "watch": 1, "throttle": 2, "block": 3}
DAY_MS = 86_400_000
MAX_DELAYS = 5                  # a message held back this often gives up (the sender would queue it elsewhere)


def smsguard_argv(*args: str) -> list[str]:
    """The command line of ``smsguard ARGS`` with this interpreter (works without the script on PATH)."""
    script = Path(sys.executable).with_name("smsguard")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-c", "from detector.cli import main; main()", *args]


def sim_start_before_midnight(now_ms: int, seconds: float, tz_offset_h: int = 8) -> int:
    """Event time ``seconds`` before the last local midnight (at most a day and ``seconds`` ago).

    >>> t = sim_start_before_midnight(1_731_340_800_000 + 3_600_000, 15)   # 01:00 China time
    >>> (t + 15_000 - 1_731_340_800_000) % 86_400_000
    0
    """
    offset = tz_offset_h * 3_600_000
    midnight = (now_ms + offset) // DAY_MS * DAY_MS - offset
    return int(midnight - seconds * 1000)


class ChildProcess:
    """A subprocess in its own process group; ``stop()`` terminates the group, then kills it."""

    _alive: "list[ChildProcess]" = []

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path, cwd: str | None = None):
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        ChildProcess._alive.append(self)

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError, PermissionError):   # stragglers of the group, too
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        self._log.close()
        with contextlib.suppress(ValueError):
            ChildProcess._alive.remove(self)
        return self.proc.returncode


@atexit.register
def _stop_children() -> None:
    for child in list(ChildProcess._alive):
        child.stop(timeout=3)


@dataclass
class PortView:
    kind: str = "?"
    sent: int = 0
    decided: int = 0
    flagged: int = 0
    blocked: int = 0
    state: str = "normal"
    gave_up: int = 0
    verdicts: Counter = field(default_factory=Counter)


@dataclass
class DemoStats:
    started: float = field(default_factory=time.monotonic)
    sim_start_ms: int = 0
    sim_now_ms: int = 0
    sent: int = 0
    decisions: int = 0
    actions: Counter = field(default_factory=Counter)
    verdicts: Counter = field(default_factory=Counter)
    port_actions: int = 0
    gave_up: int = 0
    ports: dict[str, PortView] = field(default_factory=lambda: defaultdict(PortView))
    _rates: deque = field(default_factory=lambda: deque(maxlen=12))     # (t, sent, decisions)

    def tick(self) -> tuple[float, float]:
        """Messages/s sent and decided over the last few seconds."""
        now = time.monotonic()
        self._rates.append((now, self.sent, self.decisions))
        t0, s0, d0 = self._rates[0]
        dt = max(now - t0, 1e-6)
        return (self.sent - s0) / dt, (self.decisions - d0) / dt

    def top_ports(self, n: int = 8) -> list[tuple[str, PortView]]:
        return sorted(self.ports.items(), key=lambda kv: (-LEVEL[kv[1].state], -(kv[1].flagged + kv[1].blocked),
                                                          -kv[1].sent))[:n]

    def text(self) -> str:
        """A plain summary (for logs and non-terminals)."""
        lines = [f"sent {self.sent}, decisions {self.decisions} "
                 f"({', '.join(f'{a} {n}' for a, n in sorted(self.actions.items())) or 'none yet'}), "
                 f"port actions {self.port_actions}, gateway verdicts "
                 f"({', '.join(f'{v} {n}' for v, n in sorted(self.verdicts.items()))}), "
                 f"given up after {MAX_DELAYS} delays {self.gave_up}"]
        for port, view in self.top_ports():
            if view.flagged or view.blocked or view.state != "normal":
                lines.append(f"  port {port} [{view.kind}] state={view.state} sent={view.sent} "
                             f"flagged={view.flagged} blocked={view.blocked} gateway={dict(view.verdicts)} "
                             f"gave_up={view.gave_up}")
        return "\n".join(lines)


def _render(stats: DemoStats, dashboard_url: str | None, tz_offset_h: int):
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table

    sent_rate, decided_rate = stats.tick()
    clock = time.strftime("%H:%M:%S", time.gmtime((stats.sim_now_ms + tz_offset_h * 3_600_000) / 1000))
    head = Table.grid(padding=(0, 3))
    head.add_row(f"[b]elapsed[/] {time.monotonic() - stats.started:5.0f}s", f"[b]sim clock[/] {clock} (UTC+{tz_offset_h})",
                 f"[b]sent[/] {stats.sent} ({sent_rate:.0f}/s)", f"[b]decided[/] {stats.decisions} ({decided_rate:.0f}/s)")
    head.add_row(*(f"[b]{a}[/] {stats.actions.get(a, 0)}" for a in ("allow", "flag", "block")),
                 f"[b]gateway[/] ok {stats.verdicts['ok']} · delay {stats.verdicts['delay']} · "
                 f"reject {stats.verdicts['reject']} · gave up {stats.gave_up}")
    ports = Table(title="most flagged ports", expand=True)
    for col in ("port", "kind", "state", "sent", "decided", "flagged", "blocked", "gw ok", "gw delay", "gw reject"):
        ports.add_column(col, justify="right" if col not in ("port", "kind", "state") else "left")
    colour = {"normal": "green", "watch": "yellow", "throttle": "dark_orange", "block": "red"}
    for port, v in stats.top_ports():
        ports.add_row(port, v.kind, f"[{colour[v.state]}]{v.state}[/]", str(v.sent), str(v.decided), str(v.flagged),
                      str(v.blocked), str(v.verdicts["ok"]), str(v.verdicts["delay"]), str(v.verdicts["reject"]))
    foot = f"dashboard: {dashboard_url}" if dashboard_url else "dashboard: not running"
    return Panel(Group(head, ports, foot + "   ·   Ctrl-C stops everything"), title="smsguard demo")


class Demo:
    def __init__(self, settings: Settings, *, rate: float, duration: float | None, ports: int, seed: int,
                 night_in_s: float, console=None):
        from rich.console import Console

        self.base = settings
        self.rate = rate
        self.duration = duration
        self.ports = ports
        self.seed = seed
        self.night_in_s = night_in_s
        self.console = console or Console()
        self.stats = DemoStats()
        self.dashboard_url: str | None = None
        self.children: list[ChildProcess] = []
        self.log_dir = Path(tempfile.mkdtemp(prefix="smsguard-demo-"))
        self._stop = asyncio.Event()
        # The demo world runs on a simulated clock that starts just before midnight (China time);
        # the gateway follows it too, so port states lapse in the same time the detector sets them.
        self.sim_start_ms = sim_start_before_midnight(int(time.time() * 1000), night_in_s,
                                                      settings.default_tz_offset_h)
        self.began = time.monotonic()

    def sim_now_ms(self) -> float:
        return self.sim_start_ms + (time.monotonic() - self.began) * 1000

    # -- processes -------------------------------------------------------------------------------------
    def start_processes(self, stack) -> Settings:
        from detector.services import create_smsguard_topics, free_port

        models = Path(self.base.models_dir)
        settings = self.base.replace(
            kafka_bootstrap=stack.broker.bootstrap, redis_url=stack.redis.url, redis_cluster=False, topic_prefix="",
            app_id="smsguard-demo", worker_web_port=free_port(), dashboard_port=free_port(),
            models_dir=str(models if models.is_absolute() else (Path.cwd() / models).resolve()),
            log_format="json", batch_window_s=0.1,
            # tansu holds a group's first JoinGroup for half the session timeout: keep it short here
            broker_session_timeout_s=min(float(self.base.broker_session_timeout_s), 3.0),
        )
        create_smsguard_topics(settings)
        env = {**os.environ, **settings.as_env()}
        self.children.append(ChildProcess("worker", smsguard_argv("worker"), env, self.log_dir / "worker.log"))
        from detector.cli import main
        if "dashboard" in main.commands:
            self.children.append(ChildProcess("dashboard", smsguard_argv("dashboard"), env,
                                              self.log_dir / "dashboard.log"))
            self.dashboard_url = f"http://{settings.dashboard_host}:{settings.dashboard_port}/"
        else:
            self.console.print("[yellow]note:[/] `smsguard dashboard` does not exist yet; running without it")
        return settings

    def stop_processes(self) -> None:
        for child in reversed(self.children):
            child.stop()

    # -- traffic through the gateway ------------------------------------------------------------------
    async def send_traffic(self, settings: Settings, gateway, producer) -> None:
        sim = TrafficSimulator(resolve_data_dir(settings.data_dir), seed=self.seed, tz_offset_h=settings.default_tz_offset_h)
        start = self.sim_start_ms
        profiles: list[PortProfile] = scaled(sim.default_profiles(self.ports), self.rate, at_ms=start,
                                             tz_offset_h=settings.default_tz_offset_h)
        for p in profiles:
            view = self.stats.ports[p.port]
            view.kind = "night spam" if view.kind not in ("?", p.kind) else p.kind
        self.stats.sim_start_ms = self.stats.sim_now_ms = start
        horizon = (self.duration or 7 * 86_400) + 5
        events = sim.events(profiles, start, horizon)
        topic = settings.topic(TOPIC_OUTBOUND)
        began = self.began = time.monotonic()
        retries: list[tuple[float, int, dict, int]] = []      # (due, seq, event, delays so far)
        seq = 0
        pending = next(events, None)
        while not self._stop.is_set() and (pending is not None or retries):
            now = time.monotonic()
            due_new = began + (pending["ts"] - start) / 1000 if pending is not None else float("inf")
            due_retry = retries[0][0] if retries else float("inf")
            due = min(due_new, due_retry)
            if due > now:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), min(due - now, 0.5))
                continue
            if due_retry <= due_new:
                _, _, event, delays = heapq.heappop(retries)
            else:
                event, delays = pending, 0
                pending = next(events, None)
            self.stats.sim_now_ms = start + int((now - began) * 1000)
            verdict = await gateway.allow(event["port"])
            view = self.stats.ports[event["port"]]
            view.verdicts[verdict.action] += 1
            self.stats.verdicts[verdict.action] += 1
            if verdict.action == "ok":
                # keep the event's own time: the detector works in event time
                await producer.send(topic, json.dumps(event, ensure_ascii=False).encode(), key=event["port"].encode())
                view.sent += 1
                self.stats.sent += 1
            elif verdict.action == "delay" and delays < MAX_DELAYS:
                seq += 1
                heapq.heappush(retries, (now + max(verdict.retry_after_ms, 50) / 1000, seq, event, delays + 1))
            elif verdict.action == "delay":
                view.gave_up += 1           # held back too often: the sender drops it
                self.stats.gave_up += 1

    async def follow_outputs(self, settings: Settings) -> None:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(settings.topic(TOPIC_DECISIONS), settings.topic(TOPIC_PORT_ACTIONS),
                                    bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                                    auto_offset_reset="earliest", metadata_max_age_ms=2_000)
        await consumer.start()
        try:
            while not self._stop.is_set():
                batches = await consumer.getmany(timeout_ms=300, max_records=5_000)
                for tp, records in batches.items():
                    for record in records:
                        self._on_output(tp.topic, json.loads(record.value))
        finally:
            await consumer.stop()

    def _on_output(self, topic: str, value: dict[str, Any]) -> None:
        view = self.stats.ports[value["port"]]
        if value.get("type") == "decision":
            self.stats.decisions += 1
            self.stats.actions[value["action"]] += 1
            view.decided += 1
            view.flagged += value["action"] == "flag"
            view.blocked += value["action"] == "block"
        elif value.get("type") == "port_action":
            self.stats.port_actions += 1
            view.state = value["state"]

    async def show(self) -> None:
        from rich.live import Live

        tz = self.base.default_tz_offset_h
        if self.console.is_terminal:
            with Live(_render(self.stats, self.dashboard_url, tz), console=self.console, refresh_per_second=2,
                      transient=False) as live:
                while not self._stop.is_set():
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), 1.0)
                    live.update(_render(self.stats, self.dashboard_url, tz))
        else:       # a pipe or a log file: a plain line every few seconds
            while not self._stop.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), 5.0)
                self.stats.tick()
                self.console.print(f"[{time.monotonic() - self.stats.started:4.0f}s] {self.stats.text()}",
                                   highlight=False, soft_wrap=True, markup=False)

    async def run_async(self, settings: Settings) -> None:
        from aiokafka import AIOKafkaProducer

        from detector.gateway import Gateway

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stop.set)
        gateway = Gateway(settings.redis_url, kafka_bootstrap=settings.kafka_bootstrap, cluster=settings.redis_cluster,
                          topic=settings.topic(TOPIC_PORT_ACTIONS), clock=self.sim_now_ms)
        await gateway.start()
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=20)
        await producer.start()
        tasks = [asyncio.create_task(self.send_traffic(settings, gateway, producer), name="traffic"),
                 asyncio.create_task(self.follow_outputs(settings), name="outputs"),
                 asyncio.create_task(self.show(), name="show")]
        try:
            if self.duration:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.duration)
            else:
                await self._stop.wait()
        finally:
            self._stop.set()
            done = await asyncio.gather(*tasks, return_exceptions=True)
            for task, outcome in zip(tasks, done):
                if isinstance(outcome, BaseException) and not isinstance(outcome, asyncio.CancelledError):
                    self.console.print(f"[red]{task.get_name()} failed:[/] {outcome!r}")
            with contextlib.suppress(Exception):
                await producer.stop()
            with contextlib.suppress(Exception):
                await gateway.close()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    def run(self) -> DemoStats:
        from detector.services import local_stack

        self.console.print(f"starting tansu, redis-server, a worker and the dashboard (logs in {self.log_dir}) …")
        with local_stack(log_dir=self.log_dir) as stack:
            try:
                settings = self.start_processes(stack)
                self.console.print(f"broker {stack.broker.bootstrap} · redis {stack.redis.url} · "
                                   f"dashboard {self.dashboard_url or '(none)'} · "
                                   f"{self.rate:g} msg/s, a night-time blaster from {self.night_in_s:g}s in")
                asyncio.run(self.run_async(settings))
            finally:
                self.stop_processes()
        self.console.print("final: " + self.stats.text(), highlight=False, soft_wrap=True, markup=False)
        self.console.print(f"stopped: broker, redis, worker{' and dashboard' if self.dashboard_url else ''} "
                           f"(logs kept in {self.log_dir})")
        return self.stats

