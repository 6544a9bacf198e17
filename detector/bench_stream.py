"""End-to-end stream benchmarks on real processes: ``smsguard bench stream`` and ``smsguard bench soak``.

Everything runs against one tansu broker and one redis-server started here, and every figure is
measured next to baselines taken in the same run, on the same broker:

* ``passthrough``: raw aiokafka consume → produce (no parsing, no scoring), delivery awaited per batch
  like the worker does; the ceiling the broker and the client library allow;
* ``naive``: a faust agent that takes one message at a time through the same parser and engine
  (classifier + heuristics + policy) and sends its decision without batching;
* ``shell``: the worker's own code with a null engine (every message allowed, no model, no state): faust's
  consumer path, parsing, encoding and delivery, i.e. what the worker costs before the engine's first op;
* ``worker``: ``smsguard worker`` itself, N processes in one consumer group.

Each processor kind gets its own topics (a topic prefix per scenario) and processes of its own:
they are started, warmed up (every process must have handled events of its own), then frozen
with SIGSTOP while a backlog is produced, and thawed: the drain rate of that backlog is the
"full speed" figure. The same processes then get traffic at a fixed offered rate, each event
stamped with its real send time, and ``decided_at_ms - ts`` of every decision gives the latency.
CPU time and RSS come from ``/proc/<pid>/stat`` of the processors.

>>> percentile([5, 1, 3, 2, 4], 50), percentile([], 99)
(3, None)
>>> summarize_collapsed(["a (x.py:1);b (x.py:2) 3", "a (x.py:1);c (y.py:9) 1"], top=2)["self"]
[('b (x.py:2)', 3), ('c (y.py:9)', 1)]
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import orjson

from detector.engine import Engine, EngineResult
from detector.errors import ServiceError, SmsGuardError
from detector.events import TOPIC_DECISIONS, TOPIC_OUTBOUND, Decision, SmsEvent
from detector.logs import get_logger
from detector.services import ALL_TOPICS, COMPACTED_TOPICS, LocalStack, _die_with_parent, acreate_topics, free_port

log = get_logger(__name__)

KINDS = ("passthrough", "naive", "shell", "worker")
PASSTHROUGH_OUT = "bench.passthrough-out"
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_EVENTS_IN = re.compile(rb'^smsguard_events_in_total\{topic="sms\.outbound"\} ([0-9.e+]+)$', re.M)


def now_ms() -> int:
    return int(time.time() * 1000)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0-100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


# --- process accounting --------------------------------------------------------------------------

@dataclass(frozen=True)
class ProcSample:
    cpu_s: float       # user + system CPU seconds since the process started
    rss_bytes: int
    runq_wait_s: float = 0.0   # main thread: seconds runnable but waiting for a CPU (a shared machine's cost)


def proc_sample(pid: int) -> ProcSample | None:
    """CPU time, RSS and run-queue wait of ``pid`` from ``/proc/<pid>/stat`` and ``schedstat``; None when gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
        sched = Path(f"/proc/{pid}/schedstat").read_text().split()
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2:].split()      # after "pid (comm) "; comm may hold spaces
    utime, stime, rss_pages = int(fields[11]), int(fields[12]), int(fields[21])
    return ProcSample((utime + stime) / _CLK_TCK, rss_pages * _PAGE, int(sched[1]) / 1e9)


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def machine_facts() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release(),
            "cpu_model": _cpu_model()}


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


# --- the processors under test -------------------------------------------------------------------

@dataclass
class Processor:
    """One OS process consuming the input topic (a worker or a baseline)."""
    proc: subprocess.Popen
    web_port: int | None
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def sample(self) -> ProcSample:
        return proc_sample(self.pid) or ProcSample(0.0, 0)

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, sig)

    def events_in(self) -> float | None:
        """The worker's own count of outbound events read (its /metrics), None without a web port."""
        if not self.web_port:
            return None
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/metrics", timeout=2) as response:
                match = _EVENTS_IN.search(response.read())
        except OSError:
            return 0.0
        return float(match.group(1)) if match else 0.0

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self, size: int = 3000) -> str:
        with contextlib.suppress(OSError):
            data = self.log_path.read_bytes()
            return data[-size:].decode("utf-8", "replace")
        return ""


def processor_argv(kind: str) -> list[str]:
    """The command line of a processor of ``kind`` (all are `smsguard` subcommands)."""
    if kind == "worker":
        if os.environ.get("BENCH_WORKER_SCRIPT"):     # diagnostics: a wrapped worker
            return [sys.executable, os.environ["BENCH_WORKER_SCRIPT"]]
        return [sys.executable, "-m", "detector.cli", "worker"]
    if kind in ("passthrough", "naive", "shell"):
        return [sys.executable, "-m", "detector.cli", "bench", "stream-baseline", kind]
    raise SmsGuardError(f"unknown processor kind {kind!r}; one of {', '.join(KINDS)}")


def start_processor(kind: str, env: dict[str, str], log_path: Path, *, with_web: bool = True) -> Processor:
    web_port = free_port() if with_web and kind == "worker" else 0
    child_env = {**os.environ, **env, "SMSGUARD_WORKER_WEB_PORT": str(web_port)}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(processor_argv(kind), env=child_env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)  # never outlive the bench
    return Processor(proc, web_port or None, log_path)


# --- traffic ------------------------------------------------------------------------------------

class Traffic:
    """Simulator traffic (templates, verification codes, marketing, spam; many ports) as Kafka records."""

    def __init__(self, data_dir: str | Path, *, ports: int, rate: float, seed: int = 7, tz_offset_h: int = 8):
        from detector.simulator import TrafficSimulator, scaled

        self.sim = TrafficSimulator(data_dir, seed=seed, tz_offset_h=tz_offset_h)
        self.rate = rate
        self.profiles = scaled(self.sim.default_profiles(ports), rate, at_ms=now_ms(), tz_offset_h=tz_offset_h)

    def backlog(self, n: int, tag: str) -> list[tuple[bytes, bytes]]:
        """``n`` events in event-time order over the recent past (n / rate seconds up to now)."""
        duration_s = n / self.rate + 5
        start = now_ms() - int(duration_s * 1000)
        out = []
        for i, event in enumerate(self.sim.events(self.profiles, start, duration_s)):
            if i >= n:
                break
            event["msg_id"] = f"{tag}-{i}"
            out.append((event["port"].encode(), json.dumps(event, ensure_ascii=False).encode()))
        return out

    def live(self, tag: str, pool: int = 20_000) -> Iterator[dict]:
        """Endless events (a cycled pool) whose caller stamps ``ts`` with the send time."""
        base = list(self.sim.events(self.profiles, now_ms(), pool / self.rate + 5))[:pool]
        if not base:
            raise SmsGuardError("the simulator produced no events for these profiles")
        i = 0
        while True:
            event = dict(base[i % len(base)])
            event["msg_id"] = f"{tag}-{i}"
            i += 1
            yield event


def encode_live(event: dict, ts_ms: int) -> tuple[bytes, bytes]:
    event["ts"] = ts_ms
    # orjson: this process offers and reads every message on the machine the workers run on, so what it
    # spends is CPU the workers do not get (stdlib json was ~12 % of its samples at 5,000 msgs/s)
    return event["port"].encode(), orjson.dumps(event)


async def offer(producer, topic: str, live: Iterator[dict], prefix: str, rate: float, seconds: float,
                on_tick=None, sent_log: list[tuple[str, str]] | None = None, every_s: float = 0.005) -> int:
    """Send ``rate`` events a second for ``seconds``, msg_ids ``prefix0…``, each stamped with its send time.

    Every ``every_s`` the events due so far go out as one record batch per partition, like a Kafka producer
    whose ``linger.ms`` is ``every_s`` (5 ms: Apache Kafka's default since 4.0, and aiokafka sends at once).

    ``on_tick(sent, elapsed)`` (sync or async) runs every few milliseconds; ``sent_log`` gets
    ``(msg_id, port)`` of every event sent. Returns how many were sent.
    """
    from detector.worker import KeyPartitions, send_record_batches

    # Each tick's events go out as one record batch per partition, as the worker sends its decisions: per-record
    # producer.send (a future, a pure-Python murmur2 of the key) made this process a quarter of a core at
    # 5,000 msgs/s, taken from the processors it measures. Batches are not awaited one by one (that would
    # hold the schedule to the broker's acks); a failed one raises at the next tick.
    partitioner = KeyPartitions()
    in_flight: list[asyncio.Future] = []
    started = time.monotonic()
    sent = 0
    while True:
        elapsed = time.monotonic() - started
        if on_tick is not None:
            maybe = on_tick(sent, elapsed)
            if asyncio.iscoroutine(maybe):
                await maybe
        if elapsed >= seconds:
            break
        due = min(int(elapsed * rate) + 1, int(seconds * rate))
        stamp = now_ms()
        records = []
        while sent < due:
            event = next(live)
            event["msg_id"] = f"{prefix}{sent}"
            key, value = encode_live(event, stamp)
            records.append((topic, key, value))
            if sent_log is not None:
                sent_log.append((event["msg_id"], event["port"]))
            sent += 1
        if records:
            await send_record_batches(producer, records, partitioner, in_flight)
        for future in [f for f in in_flight if f.done()]:
            future.result()             # a batch the broker refused: stop here rather than report a rate
        in_flight = [f for f in in_flight if not f.done()]
        await asyncio.sleep(every_s)
    await asyncio.gather(*in_flight)
    await producer.flush()
    return sent


class Outputs:
    """Follows an output topic from its start: the first emit time, latency and action of every msg_id."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, *, passthrough: bool = False,
                 keep: bool = False):
        self.bootstrap, self.topic, self.partitions, self.passthrough = bootstrap, topic, partitions, passthrough
        self.payloads: dict[str, list[dict]] | None = {} if keep else None    # every copy, for the tests
        self.latency_ms: dict[str, int] = {}
        self.actions: dict[str, str] = {}
        self.received = 0
        self._groups: Counter[str] = Counter()    # distinct msg_ids per "group-" (the id up to its last "-")
        self.duplicates = 0
        self.conflicting = 0          # a duplicate decision with another action than the first
        self._task: asyncio.Task | None = None
        self._consumer = None

    @property
    def unique(self) -> int:
        return len(self.latency_ms)

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        self._consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                          auto_offset_reset="earliest", max_partition_fetch_bytes=8 * 1024 * 1024,
                                          fetch_max_wait_ms=100)   # tansu holds a fetch this long when idle
        await self._consumer.start()
        parts = [TopicPartition(self.topic, p) for p in range(self.partitions)]
        self._consumer.assign(parts)
        await self._consumer.seek_to_beginning(*parts)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=100, max_records=10_000)
            for records in batches.values():
                for record in records:
                    self._add(record)

    def _add(self, record) -> None:
        self.received += 1
        value = orjson.loads(record.value)
        msg_id = value["msg_id"]
        if self.payloads is not None:
            self.payloads.setdefault(msg_id, []).append(value)
        if self.passthrough:
            latency, action = record.timestamp - int(value["ts"]), "pass"
        else:
            latency, action = int(value["decided_at_ms"]) - int(value["ts_ms"]), value["action"]
        if msg_id in self.latency_ms:
            self.duplicates += 1
            self.conflicting += self.actions[msg_id] != action
            return
        self.latency_ms[msg_id] = latency
        self.actions[msg_id] = action
        self._groups[msg_id[:msg_id.rfind("-") + 1]] += 1

    def count(self, prefix: str) -> int:
        """Distinct msg_ids decided that start with ``prefix``.

        A prefix ending in "-" (every caller's ``tag-phase-``) is answered from the per-group counts: a
        scan of every msg_id, polled every 0.1 s while a run settles, took CPU from the workers it measures.
        """
        if prefix.endswith("-"):
            return sum(n for group, n in self._groups.items() if group.startswith(prefix))
        return sum(1 for m in self.latency_ms if m.startswith(prefix))

    async def wait_for(self, prefix: str, n: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count(prefix) >= n:
                return True
            await asyncio.sleep(0.1)
        return self.count(prefix) >= n

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._consumer:
            await self._consumer.stop()


# --- one scenario: a processor kind × N processes --------------------------------------------------

@dataclass
class Sample:
    t: float                # monotonic seconds
    decided: int
    cpu_s: float            # all processors together
    rss_bytes: list[int]
    runq_wait_s: float = 0.0
    services_cpu_s: tuple[float, float] = (0.0, 0.0)     # redis-server, broker
    harness_cpu_s: float = 0.0      # this process: the offering producer and the consumer of the decisions


@dataclass
class Phase:
    name: str
    messages: int = 0
    decided: int = 0
    seconds: float = 0.0
    throughput: float = 0.0
    cpu_ms_per_msg: float | None = None
    cpu_cores: float | None = None
    runq_wait: float | None = None      # seconds waiting for a CPU per second, all processors together
    redis_ms_per_msg: float | None = None     # redis-server's CPU per decided message (its Lua work)
    broker_ms_per_msg: float | None = None    # the broker's, which also serves this benchmark's own clients
    harness_cores: float | None = None        # this benchmark's own process, on the same two cores
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    rss_mb: list[float] = field(default_factory=list)
    load: str = ""
    note: str = ""


@dataclass
class ScenarioResult:
    kind: str
    processes: int
    phases: list[Phase] = field(default_factory=list)
    duplicates: int = 0
    conflicting: int = 0
    error: str = ""

    @property
    def label(self) -> str:
        return self.kind if self.kind != "worker" else f"worker x{self.processes}"

    def phase(self, name: str) -> Phase | None:
        return next((p for p in self.phases if p.name == name), None)


@dataclass
class StreamBenchConfig:
    workers: tuple[int, ...] = (1, 2)
    rate: float = 5_000.0                 # the simulator's rate (event-time spacing of the backlog) and the soak's
    rates: tuple[float, ...] = (5_000.0,)  # offered rates of the latency runs
    rate_seconds: float = 60.0
    backlog: int = 150_000
    baseline_backlog: int = 300_000
    naive_seconds: float = 30.0           # the naive agent is measured over this long, not to the end
    drain_timeout: float = 300.0
    settle_s: float = 60.0                # how long a fixed-rate run's last messages may take to be decided
    ports: int = 200
    partitions: int = 4
    batch_size: int = 500
    fetch_max_wait_ms: int = 100          # SMSGUARD_FETCH_MAX_WAIT_MS of the worker and the pass-through's consumer
    send_every_ms: float = 5.0            # the load generator's linger: one record batch per partition this often
    seed: int = 7
    profile_dir: Path | None = None
    run_dir: Path = Path("/tmp/smsguard-bench")
    models_dir: str = "models"
    data_dir: str = "../shared/data/sms_zh"
    kinds: tuple[str, ...] = KINDS
    model_version: str = ""


class Scenario:
    """Processors of one kind on topics of their own, measured by draining a backlog then at a fixed rate."""

    def __init__(self, stack: LocalStack, cfg: StreamBenchConfig, traffic: Traffic, kind: str, processes: int):
        self.stack, self.cfg, self.traffic, self.kind, self.n = stack, cfg, traffic, kind, processes
        self.tag = f"{kind}{processes}-{uuid.uuid4().hex[:6]}"
        self.prefix = f"bench-{self.tag}."
        self.result = ScenarioResult(kind, processes)
        self.processors: list[Processor] = []
        self.samples: list[Sample] = []
        self._sampling: asyncio.Task | None = None

    @property
    def in_topic(self) -> str:
        return self.prefix + TOPIC_OUTBOUND

    @property
    def out_topic(self) -> str:
        return self.prefix + (PASSTHROUGH_OUT if self.kind == "passthrough" else TOPIC_DECISIONS)

    def env(self) -> dict[str, str]:
        return {**self.stack.env(), "SMSGUARD_TOPIC_PREFIX": self.prefix, "SMSGUARD_APP_ID": f"bench-{self.tag}",
                "SMSGUARD_PARTITIONS": str(self.cfg.partitions), "SMSGUARD_BATCH_SIZE": str(self.cfg.batch_size),
                "SMSGUARD_FETCH_MAX_WAIT_MS": str(self.cfg.fetch_max_wait_ms),
                "SMSGUARD_MODELS_DIR": str(self.cfg.models_dir), "SMSGUARD_DATA_DIR": str(self.cfg.data_dir),
                "SMSGUARD_LOG_LEVEL": "WARNING", "BENCH_OUT_TOPIC": self.out_topic}

    async def run(self) -> ScenarioResult:
        from aiokafka import AIOKafkaProducer

        await acreate_topics(self.stack.broker.bootstrap,
                             [self.prefix + t for t in ALL_TOPICS] + [self.prefix + PASSTHROUGH_OUT],
                             self.cfg.partitions, compacted={self.prefix + t for t in COMPACTED_TOPICS})
        outputs = Outputs(self.stack.broker.bootstrap, self.out_topic, self.cfg.partitions,
                          passthrough=self.kind == "passthrough")
        producer = AIOKafkaProducer(bootstrap_servers=self.stack.broker.bootstrap, linger_ms=5,
                                    max_batch_size=256 * 1024)
        await producer.start()
        await outputs.start()
        logs = self.cfg.run_dir / "logs"
        try:
            self.processors = [start_processor(self.kind, self.env(), logs / f"{self.tag}-{i}.log")
                               for i in range(self.n)]
            self._sampling = asyncio.create_task(self._sample_forever(outputs))
            live = self.traffic.live(f"{self.tag}-live")
            await self._warm_up(producer, outputs, live)
            drained = await self._drain(producer, outputs)
            if drained and self.kind not in ("naive", "shell"):     # baselines of the drain rate only
                for rate in sorted(self.cfg.rates):       # the lowest first: a saturated run leaves a backlog
                    await self._fixed_rate(producer, outputs, live, rate)
        except SmsGuardError as exc:
            self.result.error = str(exc)
            log.error("scenario failed", extra={"scenario": self.tag, "error": str(exc)[:300]})
        finally:
            if self._sampling:
                self._sampling.cancel()
            for p in self.processors:
                p.stop()
            await producer.stop()
            await outputs.stop()
        self.result.duplicates, self.result.conflicting = outputs.duplicates, outputs.conflicting
        return self.result

    def _services_cpu(self) -> tuple[float, float]:
        """CPU seconds of redis-server and of the broker so far: the worker's cost outside its own process."""
        cpu = []
        for service in (self.stack.redis, self.stack.broker):
            sample = proc_sample(service.pid) if service.pid else None
            cpu.append(sample.cpu_s if sample else 0.0)
        return cpu[0], cpu[1]

    async def _sample_forever(self, outputs: Outputs) -> None:
        while True:
            samples = [p.sample() for p in self.processors]
            self.samples.append(Sample(time.monotonic(), outputs.unique, sum(s.cpu_s for s in samples),
                                       [s.rss_bytes for s in samples], sum(s.runq_wait_s for s in samples),
                                       self._services_cpu(), time.process_time()))
            await asyncio.sleep(0.25)

    def _check_alive(self) -> None:
        for p in self.processors:
            if p.proc.poll() is not None:
                raise SmsGuardError(f"{self.kind} process {p.pid} exited with {p.proc.returncode}; "
                                    f"its log ends with:\n{p.log_tail()}")

    async def _warm_up(self, producer, outputs: Outputs, live: Iterator[dict], timeout: float = 180.0) -> None:
        """Rounds of 400 live events until every process handled some of them (all own partitions)."""
        deadline = time.monotonic() + timeout
        round_no = 0
        while time.monotonic() < deadline:
            self._check_alive()
            before = [p.events_in() for p in self.processors]
            prefix = f"{self.tag}-warm{round_no}-"
            for i in range(400):
                event = next(live)
                event["msg_id"] = f"{prefix}{i}"
                key, value = encode_live(event, now_ms())
                await producer.send(self.in_topic, value, key=key)
            await producer.flush()
            done = await outputs.wait_for(prefix, 400, timeout=max(1.0, min(30.0, deadline - time.monotonic())))
            after = [p.events_in() for p in self.processors]
            everyone = all(b is None or (a or 0) > (b or 0) for a, b in zip(after, before))
            round_no += 1
            if done and everyone and round_no >= 2:
                return
        self._check_alive()
        raise SmsGuardError(f"{self.label()} did not warm up within {timeout:.0f}s")

    def label(self) -> str:
        return self.result.label

    async def _drain(self, producer, outputs: Outputs) -> bool:
        n = self.cfg.baseline_backlog if self.kind == "passthrough" else self.cfg.backlog
        records = self.traffic.backlog(n, f"{self.tag}-backlog")
        n = len(records)
        prefix = f"{self.tag}-backlog-"
        for p in self.processors:
            p.signal(signal.SIGSTOP)
        try:
            for key, value in records:
                await producer.send(self.in_topic, value, key=key)
            await producer.flush()
        finally:
            for p in self.processors:
                p.signal(signal.SIGCONT)
        load = load_average()
        resumed = time.monotonic()
        cap = self.cfg.naive_seconds if self.kind == "naive" else self.cfg.drain_timeout
        profiler = self._start_profiler("drain")
        base = outputs.unique
        while time.monotonic() - resumed < cap and outputs.count(prefix) < n:
            self._check_alive()
            await asyncio.sleep(0.25)
        self._stop_profiler(profiler)
        await asyncio.sleep(0.3)                  # one more sample after the end
        phase = self._window_phase("drain", resumed, base, n)
        phase.decided = outputs.count(prefix)
        phase.load = load
        if phase.decided < n:
            phase.note = (f"measured for {cap:.0f}s, {phase.decided} of {n} decided"
                          if self.kind == "naive" else f"only {phase.decided} of {n} decided in {cap:.0f}s")
        self.result.phases.append(phase)
        return phase.decided >= n

    def _window_phase(self, name: str, since: float, base: int, n: int) -> Phase:
        """Throughput and CPU between the first progress and 95% of ``n`` (or the last sample)."""
        samples = [s for s in self.samples if s.t >= since]
        moving = [s for s in samples if s.decided > base]
        phase = Phase(name, messages=n)
        if len(moving) < 2:
            phase.note = "too few samples"
            return phase
        first = moving[0]
        last = next((s for s in moving if s.decided - base >= 0.95 * n), moving[-1])
        done, seconds = last.decided - first.decided, last.t - first.t
        if done <= 0 or seconds <= 0:
            phase.note = "no progress between samples"
            return phase
        phase.seconds = seconds
        phase.throughput = done / seconds
        phase.cpu_ms_per_msg = (last.cpu_s - first.cpu_s) * 1000 / done
        phase.cpu_cores = (last.cpu_s - first.cpu_s) / seconds
        phase.runq_wait = (last.runq_wait_s - first.runq_wait_s) / seconds
        phase.harness_cores = (last.harness_cpu_s - first.harness_cpu_s) / seconds
        phase.redis_ms_per_msg, phase.broker_ms_per_msg = (
            (b - a) * 1000 / done for a, b in zip(first.services_cpu_s, last.services_cpu_s))
        phase.rss_mb = [round(r / 2**20, 1) for r in last.rss_bytes]
        return phase

    async def _fixed_rate(self, producer, outputs: Outputs, live: Iterator[dict], rate: float) -> None:
        seconds = self.cfg.rate_seconds
        prefix = f"{self.tag}-rate{rate:.0f}-"
        load = load_average()
        started = time.monotonic()
        first = [p.sample() for p in self.processors]
        first_cpu, first_wait = sum(x.cpu_s for x in first), sum(x.runq_wait_s for x in first)
        first_services = self._services_cpu()
        first_harness = time.process_time()
        profiler = self._start_profiler(f"rate{rate:.0f}")
        sent = await offer(producer, self.in_topic, live, prefix, rate, seconds,
                           on_tick=lambda _sent, _elapsed: self._check_alive(), every_s=self.cfg.send_every_ms / 1000)
        offered_for = time.monotonic() - started
        harness_cores = (time.process_time() - first_harness) / offered_for
        decided_in_time = outputs.count(prefix)
        self._stop_profiler(profiler)
        await outputs.wait_for(prefix, sent, timeout=self.cfg.settle_s)
        last = [p.sample() for p in self.processors]
        last_cpu, last_wait = sum(x.cpu_s for x in last), sum(x.runq_wait_s for x in last)
        last_services = self._services_cpu()
        lat = [v for k, v in outputs.latency_ms.items() if k.startswith(prefix)]
        decided = len(lat)
        redis_ms, broker_ms = ((b - a) * 1000 / decided if decided else None
                               for a, b in zip(first_services, last_services))
        phase = Phase(f"rate {rate:.0f}/s", messages=sent, decided=decided, seconds=offered_for,
                      throughput=decided_in_time / offered_for, load=load,
                      cpu_ms_per_msg=(last_cpu - first_cpu) * 1000 / decided if decided else None,
                      cpu_cores=(last_cpu - first_cpu) / (time.monotonic() - started),
                      runq_wait=(last_wait - first_wait) / (time.monotonic() - started),
                      p50_ms=percentile(lat, 50), p95_ms=percentile(lat, 95), p99_ms=percentile(lat, 99),
                      max_ms=max(lat) if lat else None, redis_ms_per_msg=redis_ms, broker_ms_per_msg=broker_ms,
                      harness_cores=harness_cores,
                      rss_mb=[round(p.sample().rss_bytes / 2**20, 1) for p in self.processors])
        if decided < sent:
            phase.note = f"{sent - decided} of {sent} not decided within {self.cfg.settle_s:.0f} s after the run"
        self.result.phases.append(phase)

    def _start_profiler(self, phase: str) -> subprocess.Popen | None:
        if self.cfg.profile_dir is None or self.kind != "worker" or self.n != 1:
            return None
        self.cfg.profile_dir.mkdir(parents=True, exist_ok=True)
        out = self.cfg.profile_dir / f"worker-{phase}.collapsed.txt"
        return subprocess.Popen([py_spy(), "record", "--pid", str(self.processors[0].pid), "--rate", "200",
                                 "--nonblocking", "--format", "raw", "-o", str(out)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _stop_profiler(self, profiler: subprocess.Popen | None) -> None:
        if profiler is None:
            return
        profiler.send_signal(signal.SIGINT)          # py-spy writes its output on SIGINT
        try:
            profiler.wait(30)
        except subprocess.TimeoutExpired:
            profiler.kill()


# --- profile summaries ----------------------------------------------------------------------------

def py_spy() -> str:
    """py-spy next to this interpreter (the venv's bin) or on PATH."""
    import shutil

    local = Path(sys.executable).with_name("py-spy")
    found = str(local) if local.exists() else shutil.which("py-spy")
    if not found:
        raise SmsGuardError("py-spy is not installed: pip install -e '.[dev]'")
    return found


# Frames worth naming in the inclusive table: our code and the libraries it spends time in, minus the entry chain.
_INTERESTING = ("detector/", "sklearn/", "redis/", "aiokafka/", "faust/", "json/", "jieba/")
_ENTRY = ("detector/cli.py", "detector/stream_cli.py", "run_worker (detector/", "bench_stream.py")


def summarize_collapsed(lines: Iterable[str], top: int = 15) -> dict[str, list[tuple[str, int]]]:
    """Top frames of py-spy's collapsed stacks: by own samples ("self") and by samples spent under them
    ("inclusive", only our code and the libraries it calls, not the entry chain).

    >>> sorted(summarize_collapsed(["main (detector/cli.py:1);f (detector/x.py:2);g (json/e.py:3) 2"])["inclusive"])
    [('f (detector/x.py:2)', 2), ('g (json/e.py:3)', 2)]
    """
    own: Counter[str] = Counter()
    under: Counter[str] = Counter()
    total = 0
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        n = int(count)
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            if any(k in frame for k in _INTERESTING) and not any(k in frame for k in _ENTRY):
                under[frame] += n
    return {"self": own.most_common(top), "inclusive": under.most_common(top), "total": [("samples", total)]}


def profile_markdown(path: Path, top: int = 20) -> str:
    if not path.exists():
        return f"(no profile at {path})\n"
    summary = summarize_collapsed(path.read_text(errors="replace").splitlines(), top)
    total = summary["total"][0][1] or 1
    lines = [f"py-spy, {total} samples of the worker process ({path.name}); `EpollSelector.select` is the "
             "event loop waiting.", "", "| own samples | % | frame |", "|---:|---:|---|"]
    lines += [f"| {n} | {100 * n / total:.1f} | `{frame}` |" for frame, n in summary["self"]]
    lines += ["", "| samples under the frame | % | frame |", "|---:|---:|---|"]
    lines += [f"| {n} | {100 * n / total:.1f} | `{frame}` |" for frame, n in summary["inclusive"]]
    return "\n".join(lines) + "\n"


# --- the whole run --------------------------------------------------------------------------------

async def run_stream_bench(stack: LocalStack, cfg: StreamBenchConfig) -> list[ScenarioResult]:
    traffic = Traffic(cfg.data_dir, ports=cfg.ports, rate=cfg.rate, seed=cfg.seed)
    plan = [(kind, 1) for kind in cfg.kinds if kind != "worker"]
    plan += [("worker", n) for n in cfg.workers] if "worker" in cfg.kinds else []
    results = []
    for kind, n in plan:
        log.warning("scenario starting", extra={"kind": kind, "processes": n})
        results.append(await Scenario(stack, cfg, traffic, kind, n).run())
    return results


def _fmt(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def results_markdown(results: Sequence[ScenarioResult], cfg: StreamBenchConfig) -> str:
    rows = ["| processor | phase | msgs | decided | msgs/s | per process msgs/s | CPU ms/msg | CPU cores | "
            "run-queue wait s/s | Redis CPU ms/msg | broker CPU ms/msg | bench's own CPU cores | p50 ms | p95 ms | p99 ms | max ms | RSS MB | "
            "load avg (1 5 15) | note |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|"]
    for r in results:
        if r.error:
            rows.append(f"| {r.label} | – | | | | | | | | | | | | | | | | | error: {r.error.splitlines()[0][:200]} |")
        for p in r.phases:
            rows.append(
                f"| {r.label} | {p.name} | {p.messages:,} | {p.decided:,} | {_fmt(p.throughput)} | "
                f"{_fmt(p.throughput / r.processes)} | {_fmt(p.cpu_ms_per_msg, 3)} | {_fmt(p.cpu_cores, 2)} | "
                f"{_fmt(p.runq_wait, 2)} | {_fmt(p.redis_ms_per_msg, 3)} | {_fmt(p.broker_ms_per_msg, 3)} | "
                f"{_fmt(p.harness_cores, 2)} | {_fmt(p.p50_ms)} | {_fmt(p.p95_ms)} | {_fmt(p.p99_ms)} | {_fmt(p.max_ms)} | "
                f"{', '.join(f'{m:.0f}' for m in p.rss_mb)} | {p.load} | {p.note} |")
    out = (f"Model {cfg.model_version or '?'}, {cfg.ports} ports, {cfg.partitions} partitions, batch size "
           f"{cfg.batch_size}, fetch wait {cfg.fetch_max_wait_ms} ms, load generator sending every "
           f"{cfg.send_every_ms:g} ms.\n\n" + "\n".join(rows) + "\n")
    dup = [f"{r.label}: {r.duplicates} duplicate outputs ({r.conflicting} with another action)"
           for r in results if r.duplicates]
    if dup:
        out += "\nDuplicates seen on the output topics: " + "; ".join(dup) + ".\n"
    out += "\n" + ratios_markdown(results) + "\n"
    return out


def ratios_markdown(results: Sequence[ScenarioResult]) -> str:
    def drain(kind: str, n: int = 1) -> Phase | None:
        r = next((r for r in results if r.kind == kind and r.processes == n), None)
        return r.phase("drain") if r else None

    lines = ["Ratios (drain rate, same run, same broker):", ""]
    worker, naive, raw, shell = drain("worker"), drain("naive"), drain("passthrough"), drain("shell")
    if worker and naive and naive.throughput:
        lines.append(f"- worker x1 / naive faust agent: **{worker.throughput / naive.throughput:.1f}×** "
                     f"({worker.throughput:,.0f} vs {naive.throughput:,.0f} msgs/s)")
    if worker and raw and raw.throughput:
        lines.append(f"- worker x1 / raw aiokafka pass-through: **{worker.throughput / raw.throughput:.2f}** "
                     f"({worker.throughput:,.0f} vs {raw.throughput:,.0f} msgs/s)")
    two = drain("worker", 2)
    if worker and two and worker.throughput:
        lines.append(f"- worker x2 / worker x1: **{two.throughput / worker.throughput:.2f}×** (2 cores, shared with "
                     "the broker, Redis and this benchmark's own producer and consumer)")
    if worker and worker.cpu_ms_per_msg:
        lines.append(f"- worker x1 CPU cost {worker.cpu_ms_per_msg:.3f} ms/msg: at most "
                     f"**{1000 / worker.cpu_ms_per_msg:,.0f} msgs/s per fully available core**")
    if worker and naive and worker.cpu_ms_per_msg and naive.cpu_ms_per_msg:
        lines.append(f"- CPU per message, naive / worker x1: **{naive.cpu_ms_per_msg / worker.cpu_ms_per_msg:.1f}×**")
    if worker and worker.cpu_ms_per_msg and worker.redis_ms_per_msg is not None and worker.broker_ms_per_msg:
        total = worker.cpu_ms_per_msg + worker.redis_ms_per_msg + worker.broker_ms_per_msg
        cores = os.cpu_count() or 1
        lines.append(f"- whole-system CPU per message, worker x1 draining: worker {worker.cpu_ms_per_msg:.3f} + Redis "
                     f"{worker.redis_ms_per_msg:.3f} + broker {worker.broker_ms_per_msg:.3f} = **{total:.3f} ms**: "
                     f"this machine's {cores} cores decide at most **{cores * 1000 / total:,.0f} msgs/s** "
                     "however many workers run (before this benchmark's own producer and consumer)")
    if shell and shell.cpu_ms_per_msg:
        line = (f"- the worker's shell alone (null engine: faust's consumer path, parsing, encoding, delivery): "
                f"**{shell.throughput:,.0f} msgs/s** at {shell.cpu_ms_per_msg:.3f} ms/msg")
        if worker and worker.cpu_ms_per_msg:
            line += (f"; the engine (model, signals, policy, Redis client) adds "
                     f"{worker.cpu_ms_per_msg - shell.cpu_ms_per_msg:.3f} ms/msg to the worker's "
                     f"{worker.cpu_ms_per_msg:.3f}")
        lines.append(line)
    return "\n".join(lines) + "\n"


def record_section(path: Path, title: str, command: str, body: str) -> None:
    """Append one run's section to ``path`` (docs/benchmarks.md)."""
    facts = machine_facts()
    header = (f"\n## {title}\n\nCommand: `{command}`\n\n"
              f"Machine: {facts['cpus']} cores ({facts['cpu_model']}), Python {facts['python']}, "
              f"Linux {facts['kernel']}; load average at the end (1 5 15 min): {load_average()}. "
              f"The machine is shared with other engineers' test runs: compare figures within a run.\n\n")
    with open(path, "a", encoding="utf-8") as f:
        f.write(header + body)


# --- baselines (run as `smsguard bench stream-baseline KIND` by the scenario) ----------------------

async def passthrough_main(bootstrap: str, source: str, target: str, group: str, batch: int = 500,
                           fetch_max_wait_ms: int = 500) -> None:
    """Raw aiokafka: consume a batch, produce every record unchanged, await delivery, commit.

    ``fetch_max_wait_ms``: the worker's (SMSGUARD_FETCH_MAX_WAIT_MS), so both wait as long for an idle broker.
    """
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    consumer = AIOKafkaConsumer(source, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                                auto_offset_reset="earliest", fetch_max_wait_ms=fetch_max_wait_ms)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all", max_batch_size=256 * 1024)
    await consumer.start()
    await producer.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100, max_records=batch)
            futures = [await producer.send(target, r.value, key=r.key) for rs in batches.values() for r in rs]
            if futures:
                await asyncio.gather(*futures)
                await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


def naive_app(settings):
    """A faust agent that decides one message at a time (same parser and engine, no micro-batches)."""
    import faust

    from detector.engine import Engine
    from detector.state.redis import RedisStore
    from detector.worker import BatchProcessor, RawEvent, faust_datadir

    app = faust.App(settings.app_id, broker=f"kafka://{settings.kafka_bootstrap}", value_serializer="raw",
                    key_serializer="raw", store="memory://", datadir=faust_datadir(settings.app_id),
                    web_enabled=False, topic_disable_leader=True,
                    consumer_auto_offset_reset="earliest", topic_partitions=settings.partitions,
                    broker_session_timeout=settings.broker_session_timeout_s,
                    broker_rebalance_timeout=settings.broker_rebalance_timeout_s)
    source = app.topic(settings.topic(TOPIC_OUTBOUND), value_serializer="raw", key_serializer="raw")
    sinks: dict[str, Any] = {}
    state: dict[str, BatchProcessor] = {}

    @app.agent(source, name="bench.naive")
    async def naive(stream):
        if "processor" not in state:
            engine = Engine.from_settings(settings, RedisStore.from_settings(settings))
            state["processor"] = BatchProcessor(settings, engine)
        processor = state["processor"]
        async for event in stream.events():
            raw = RawEvent(event.value, event.message.topic, event.message.partition, event.message.offset)
            out = await processor.process(TOPIC_OUTBOUND, [raw])
            for name, key, value in out.records:
                if name not in sinks:
                    sinks[name] = app.topic(settings.topic(name), value_serializer="raw", key_serializer="raw")
                await sinks[name].send(key=key, value=value)

    return app


def run_baseline(kind: str) -> None:
    from detector.settings import Settings

    settings = Settings.from_env()
    if kind == "passthrough":
        asyncio.run(passthrough_main(settings.kafka_bootstrap, settings.topic(TOPIC_OUTBOUND),
                                     os.environ["BENCH_OUT_TOPIC"], settings.app_id,
                                     fetch_max_wait_ms=int(settings.fetch_max_wait_ms)))
        return
    import faust

    if kind == "shell":
        from detector.worker import create_app
        app = create_app(settings, engine_type=NullEngine)
    else:
        app = naive_app(settings)
    worker = faust.Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()


class NullEngine(Engine):
    """The ``shell`` baseline's engine: allows every message, reads and writes no state, scores nothing."""

    async def process(self, events: Sequence[Any], *, clock_ms: int | None = None) -> EngineResult:
        result = EngineResult()
        version = self.scorer.version
        result.decisions = [Decision(e.msg_id, e.port, e.ts_ms, "allow", 0.0, 0.0, [], "normal", version,
                                     e.recipient, e.content, e.signature, e.sp_id, e.category)
                            for e in events if type(e) is SmsEvent]
        return result


def ensure_model(models_dir: str) -> str:
    """The promoted model's version, once it has scored a message with this code (fail before starting anything)."""
    from detector.registry import Registry

    registry = Registry(models_dir)
    if registry.promoted_name() is None:
        raise ServiceError(f"no promoted model in {registry.root}: the benchmark scores with the real "
                           "classifier; train one first (smsguard train --data dev.tsv --data raw_dev.tsv "
                           f"--out {models_dir}/NAME --promote) or pass --models-dir")
    model = registry.load_promoted()
    try:
        model.score(["【京东】您的订单已发货，请注意查收。"])
    except Exception as exc:  # e.g. an artifact trained by an older feature extractor
        raise ServiceError(f"the promoted model {model.version} cannot score with this code: {exc}") from None
    return model.version


# --- soak -----------------------------------------------------------------------------------------

@dataclass
class SoakPoint:
    minute: float
    sent: int
    decided: int
    rss_mb: float
    redis_used_mb: float
    redis_keys: int
    load: str
    # CPU cores used since the previous point (CPU seconds / wall seconds): the worker, redis-server, the broker
    worker_cores: float = 0.0
    redis_cores: float = 0.0
    broker_cores: float = 0.0


async def run_soak(stack: LocalStack, cfg: StreamBenchConfig, minutes: float, every_s: float = 30.0,
                   dedup_ttl_s: int = 300) -> dict[str, Any]:
    """One worker at ``cfg.rate`` for ``minutes``: throughput, RSS and Redis memory over time, lost decisions."""
    import redis.asyncio as aioredis
    from aiokafka import AIOKafkaProducer

    traffic = Traffic(cfg.data_dir, ports=cfg.ports, rate=cfg.rate, seed=cfg.seed)
    scenario = Scenario(stack, cfg, traffic, "worker", 1)
    env = {**scenario.env(), "SMSGUARD_DEDUP_TTL_S": str(dedup_ttl_s)}
    await acreate_topics(stack.broker.bootstrap, [scenario.prefix + t for t in ALL_TOPICS], cfg.partitions,
                         compacted={scenario.prefix + t for t in COMPACTED_TOPICS})
    outputs = Outputs(stack.broker.bootstrap, scenario.out_topic, cfg.partitions)
    producer = AIOKafkaProducer(bootstrap_servers=stack.broker.bootstrap, linger_ms=5, max_batch_size=256 * 1024)
    client = aioredis.Redis.from_url(stack.redis.url)
    await producer.start()
    await outputs.start()
    worker = start_processor("worker", env, cfg.run_dir / "logs" / f"soak-{scenario.tag}.log")
    scenario.processors = [worker]
    points: list[SoakPoint] = []
    prefix = f"{scenario.tag}-soak-"
    try:
        live = traffic.live(f"{scenario.tag}-live")
        await scenario._warm_up(producer, outputs, live)

        previous: tuple[float, ...] | None = None     # (time, worker, redis, broker CPU seconds) at the last point

        async def point(sent: int, minute: float) -> None:
            nonlocal previous
            info = await client.info("memory")
            sample = worker.sample()
            now = (time.monotonic(), sample.cpu_s, *scenario._services_cpu())
            cores = (0.0, 0.0, 0.0) if previous is None or now[0] <= previous[0] else \
                tuple(round((b - a) / (now[0] - previous[0]), 2) for a, b in zip(previous[1:], now[1:]))
            previous = now
            points.append(SoakPoint(round(minute, 2), sent, outputs.count(prefix), round(sample.rss_bytes / 2**20, 1),
                                    round(info["used_memory"] / 2**20, 1), await client.dbsize(), load_average(),
                                    *cores))
            log.warning("soak", extra=points[-1].__dict__)

        started = time.monotonic()
        first_cpu = worker.sample().cpu_s
        points_due = [0.0]

        async def tick(sent: int, elapsed: float) -> None:
            scenario._check_alive()
            if elapsed >= points_due[0]:
                await point(sent, elapsed / 60)
                points_due[0] += every_s

        sent = await offer(producer, scenario.in_topic, live, prefix, cfg.rate, minutes * 60, on_tick=tick,
                           every_s=cfg.send_every_ms / 1000)
        offered_s = time.monotonic() - started
        decided_in_time = outputs.count(prefix)
        await outputs.wait_for(prefix, sent, timeout=120.0)
        await point(sent, (time.monotonic() - started) / 60)
        lat = [v for k, v in outputs.latency_ms.items() if k.startswith(prefix)]
        cpu = worker.sample().cpu_s - first_cpu
        return {"rate": cfg.rate, "minutes": minutes, "sent": sent, "decided": len(lat), "lost": sent - len(lat),
                "duplicates": outputs.duplicates, "conflicting": outputs.conflicting,
                "throughput": decided_in_time / offered_s, "cpu_ms_per_msg": cpu * 1000 / max(1, len(lat)),
                "p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99), "max_ms": max(lat) if lat else None,
                "dedup_ttl_s": dedup_ttl_s, "send_every_ms": cfg.send_every_ms, "points": points}
    finally:
        worker.stop()
        await producer.stop()
        await outputs.stop()
        await client.aclose()


def soak_markdown(report: dict[str, Any]) -> str:
    r = report
    lines = [f"Offered {r['rate']:,.0f} msgs/s for {r['minutes']:g} min to one worker (SMSGUARD_DEDUP_TTL_S="
             f"{r['dedup_ttl_s']}, so claims expire within the run and Redis memory can level off), the load "
             f"generator sending every {r.get('send_every_ms', 5.0):g} ms.", "",
             f"- sent {r['sent']:,}, decided {r['decided']:,}, **lost {r['lost']:,}**, duplicate decisions "
             f"{r['duplicates']:,} ({r['conflicting']} with another action)",
             f"- sustained throughput {r['throughput']:,.0f} msgs/s, CPU {r['cpu_ms_per_msg']:.3f} ms/msg, latency "
             f"p50 {_fmt(r['p50_ms'])} ms, p99 {_fmt(r['p99_ms'])} ms, max {_fmt(r['max_ms'])} ms", "",
             "CPU columns: cores used since the previous row by the worker, redis-server and the broker.", "",
             "| minute | sent | decided | worker RSS MB | Redis used_memory MB | Redis keys | worker CPU | "
             "Redis CPU | broker CPU | load avg |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    lines += [f"| {p.minute:.1f} | {p.sent:,} | {p.decided:,} | {p.rss_mb:.0f} | {p.redis_used_mb:.1f} | "
              f"{p.redis_keys:,} | {p.worker_cores:.2f} | {p.redis_cores:.2f} | {p.broker_cores:.2f} | {p.load} |"
              for p in r["points"]]
    return "\n".join(lines) + "\n"
