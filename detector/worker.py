"""The faust app: a thin shell that feeds micro-batches of raw events to :class:`~detector.engine.Engine`.

``sms.outbound`` is consumed with ``stream.take_events(batch_size, within=batch_window_s)``:
each batch is parsed (recipients hashed at ingress), invalid events go to
``sms.dead-letter`` with their partition/offset and the reason, the valid ones go through
``Engine.process`` and the results are produced: one decision per new ``msg_id`` to
``sms.decisions`` and each port state change to ``sms.port-actions`` (both keyed by port).

Delivery: ``take_events`` acks a batch's events only when the agent asks for the next batch,
and this agent asks only after every record of the batch has been *delivered* to the broker.
Offsets are committed from acked events only, so a crash before delivery replays the batch,
and the engine's ``msg_id`` claim (in Redis) turns the replay into duplicates rather than
second decisions: decisions are produced at least once and decided exactly once.
A batch's records go to the broker as one record batch per partition, straight through the
aiokafka producer under faust's (faust's per-record ``Topic.send`` cost more than the rest of
producing), and the consumer's fetch wait is ``SMSGUARD_FETCH_MAX_WAIT_MS`` (see :class:`KafkaTransport`).
faust's drain loop hands each fetched message to its streams without the four asyncio tasks per message
it would create (:mod:`detector.inline_drain`): that halved the cost of the worker's shell.

``sms.optouts`` and ``sms.complaints`` get agents of their own. A timer polls the model
registry every ``SMSGUARD_MODEL_RELOAD_S`` and hot-swaps a newly promoted model.
No raw MSISDN is ever logged: events are logged by topic/partition/offset, never by content.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import faust
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka import __version__ as aiokafka_version
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder
from faust.transport.drivers import aiokafka as faust_aiokafka

from detector import metrics
from detector.engine import Engine, EngineResult, NullScorer
from detector.errors import ConfigError, InvalidEvent, SmsGuardError
from detector.events import (
    TOPIC_COMPLAINTS, TOPIC_DEAD_LETTER, TOPIC_DECISIONS, TOPIC_OPTOUTS, TOPIC_OUTBOUND, TOPIC_PORT_ACTIONS,
    EventParser, dead_letter, to_json,
)
from detector.inline_drain import InlineDrainConsumer
from detector.privacy import RecipientHasher, scrub_msisdns
from detector.runtime import tune_for_streaming
from detector.settings import Settings

log = logging.getLogger(__name__)

MAX_OUTPUT_BYTES = 4 * 1024 * 1024   # dead letters carry the rejected bytes (up to the broker's limit)
SHUTDOWN_GRACE_S = 10.0              # how long a stopping worker may take to deliver its batch in flight
# One record batch per partition per micro-batch (500 decisions of ~0.5 kB over 4 partitions fit):
# aiokafka keeps one batch per partition in flight, so 16 kB batches (its default) meant several
# sequential round trips per micro-batch. Well under the 1 MB a Kafka broker accepts by default.
OUTPUT_BATCH_BYTES = 256 * 1024


def now_ms() -> int:
    return int(time.time() * 1000)


def make_parser(settings: Settings) -> EventParser:
    """The ingress parser with the worker's limits; its clock bounds are refreshed per batch."""
    return EventParser(RecipientHasher(settings.recipient_secret), max_event_bytes=settings.max_event_bytes,
                       max_content_chars=settings.max_content_chars, now_ms=now_ms(),
                       max_future_ms=int(settings.max_clock_skew_s * 1000),
                       max_age_ms=int(settings.max_event_age_s * 1000))


@dataclass
class Outputs:
    """What one batch produces: (topic base name, key, value bytes) records, in order."""
    records: list[tuple[str, bytes | None, bytes]] = field(default_factory=list)
    decisions: int = 0
    dead_letters: int = 0
    port_actions: int = 0

    def add(self, topic: str, key: str | None, value: dict[str, Any] | bytes) -> None:
        """``value``: a record, or its JSON bytes when already encoded (decisions: see Decision.encode)."""
        encoded = value if type(value) is bytes else to_json(value)
        self.records.append((topic, key.encode() if key is not None else None, encoded))


@dataclass(frozen=True)
class RawEvent:
    """One input record as the broker gave it."""
    value: bytes | None
    topic: str
    partition: int
    offset: int


class BatchProcessor:
    """The worker's logic without faust: raw records in, records to produce out (testable on its own)."""

    def __init__(self, settings: Settings, engine: Engine, parser: EventParser | None = None,
                 clock: Callable[[], int] = now_ms):
        self.settings = settings
        self.engine = engine
        self.parser = parser or make_parser(settings)
        self.clock = clock
        self._degraded_batches, self._next_degraded_log = 0, 0.0
        self._lock = asyncio.Lock()       # one batch at a time through the engine (port state transitions)
        self._parse = {TOPIC_OUTBOUND: self.parser.parse_sms, TOPIC_OPTOUTS: self.parser.parse_optout,
                       TOPIC_COMPLAINTS: self.parser.parse_complaint}

    async def process(self, kind: str, batch: Sequence[RawEvent]) -> Outputs:
        """``kind`` is the base topic name the batch came from (sms.outbound, sms.optouts, sms.complaints)."""
        out = Outputs()
        received = self.clock()
        self.parser.now_ms = received
        parse = self._parse[kind]
        valid, raws = [], []
        for raw in batch:
            try:
                if raw.value is None:
                    raise InvalidEvent("empty record (no value)")
                valid.append(parse(raw.value))
                raws.append(raw)
            except InvalidEvent as exc:
                self._dead_letter(out, raw, str(exc), received)
        metrics.event_in(kind, len(batch))
        if not valid:
            return out
        try:
            async with self._lock:
                result: EngineResult = await self.engine.process(valid, clock_ms=received)
        except Exception as exc:  # the worker loop is an edge: keep the events, say why, go on
            log.exception("engine failed on a batch; its events go to the dead-letter topic",
                          extra={"topic": kind, "events": len(valid), "error": type(exc).__name__})
            for raw in raws:
                self._dead_letter(out, raw, f"engine error: {type(exc).__name__}", received)
            return out
        decided_at = self.clock()
        for decision in result.decisions:
            out.add(TOPIC_DECISIONS, decision.port, decision.encode(decided_at_ms=decided_at))
        for kept in result.redelivered:      # decided before a crash, maybe never delivered: send it again
            out.add(TOPIC_DECISIONS, kept["port"], {**kept, "decided_at_ms": decided_at, "redelivered": True})
        for action in result.port_actions:
            out.add(TOPIC_PORT_ACTIONS, action.port, action.as_dict())
            log.info("port state changed", extra={"port": action.port, "state": action.state,
                                                  "previous_state": action.previous_state})
        out.decisions, out.port_actions = len(result.decisions), len(result.port_actions)
        if result.decisions:
            metrics.observe_batch(result.decisions, len(result.decisions), decided_at)
        if result.degraded:
            metrics.redis_error()
            self._degraded_batches += 1
            now = time.monotonic()
            if now >= self._next_degraded_log:     # once a minute, not once a batch (hundreds of lines a minute)
                log.warning("state store unreachable: batches decided degraded",
                            extra={"events": len(valid), "degraded_batches": self._degraded_batches})
                self._next_degraded_log, self._degraded_batches = now + 60.0, 0
        if result.duplicates:
            log.info("duplicates skipped", extra={"count": len(result.duplicates)})
        return out

    def _dead_letter(self, out: Outputs, raw: RawEvent, reason: str, received: int) -> None:
        # Parser reasons may quote a field's value: never let an MSISDN through to the record or the log.
        reason = scrub_msisdns(reason.encode("utf-8", "replace"), self.parser.hasher).decode("utf-8", "replace")
        record = dead_letter(raw.value or b"", reason, self.parser.hasher, topic=raw.topic, partition=raw.partition,
                             offset=raw.offset, now_ms=received)
        out.add(TOPIC_DEAD_LETTER, None, record)
        out.dead_letters += 1
        metrics.dead_letter()
        log.info("event dead-lettered", extra={"topic": raw.topic, "partition": raw.partition,
                                               "offset": raw.offset, "reason": reason[:120]})


def set_fetch_max_wait(consumer: AIOKafkaConsumer, wait_ms: int) -> None:
    """Give a not yet started aiokafka consumer another fetch wait (faust passes a fixed 1500 ms).

    aiokafka reads the value when ``start()`` builds its fetcher; after that a change would be ignored,
    and an aiokafka without the attribute would ignore it silently: both are refused.
    """
    if wait_ms < 1:
        raise ConfigError(f"SMSGUARD_FETCH_MAX_WAIT_MS must be at least 1 ms, got {wait_ms}")
    if not hasattr(consumer, "_fetch_max_wait_ms") or getattr(consumer, "_fetcher", None) is not None:
        raise ConfigError(f"cannot set the fetch wait of this aiokafka {aiokafka_version} consumer "
                          "(started already, or aiokafka no longer has _fetch_max_wait_ms)")
    consumer._fetch_max_wait_ms = int(wait_ms)


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: "KafkaTransport") -> AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        set_fetch_max_wait(consumer, transport.fetch_max_wait_ms)
        return consumer


class _Consumer(InlineDrainConsumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class KafkaTransport(faust_aiokafka.Transport):
    """faust's aiokafka transport whose group consumer waits at most ``fetch_max_wait_ms`` per fetch.

    faust creates the consumer with ``fetch_max_wait_ms=1500`` and offers no setting for it. A broker
    with no new data may hold a fetch that long (tansu holds an idle one ~0.7 s of it, and answers
    only then even if data arrives), so it is a floor under latency at low rates; a short wait costs
    more, smaller fetches.
    """

    Consumer = _Consumer

    def __init__(self, url, app, loop=None, *, fetch_max_wait_ms: int = 1500) -> None:
        super().__init__(url, app, loop)
        self.fetch_max_wait_ms = fetch_max_wait_ms


class KeyPartitions:
    """aiokafka's default partitioner (murmur2 of the key), remembered per key.

    murmur2 is pure Python in aiokafka (a few µs a key) and every output record is keyed by its port, of
    which a batch has few distinct ones. Unkeyed records still get a random partition each time.

    >>> from aiokafka.partitioner import murmur2
    >>> KeyPartitions()(b"10690001", [0, 1, 2, 3], [0, 1, 2, 3]) == (murmur2(b"10690001") & 0x7FFFFFFF) % 4
    True
    """

    def __init__(self, size: int = 65_536):
        self._partition = DefaultPartitioner()
        self._known: dict[tuple[bytes, int], int] = {}
        self._size = size

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return self._partition(key, all_partitions, available)
        known = self._known.get((key, len(all_partitions)))
        if known is None:
            if len(self._known) >= self._size:       # hostile traffic with endless distinct ports: stay bounded
                self._known.clear()
            known = self._known[(key, len(all_partitions))] = self._partition(key, all_partitions, available)
        return known


async def deliver(producer: AIOKafkaProducer, records: Sequence[tuple[str, bytes | None, bytes]],
                  partitioner: Callable = KeyPartitions()) -> int:
    """Send ``(topic, key, value)`` records as one record batch per partition; return once the broker has them all.

    Keyed records go where aiokafka's default partitioner (murmur2 of the key) puts them, unkeyed ones to
    a random partition. Returns the number of record batches sent. When one fails, it raises once every
    batch has an outcome (so a retry never overlaps batches still in flight).
    """
    sent: list[asyncio.Future] = []
    try:
        await send_record_batches(producer, records, partitioner, sent)
    finally:        # also when queueing failed half-way: wait for what is in flight before a retry
        outcomes = await asyncio.gather(*sent, return_exceptions=True)
    failed = [r for r in outcomes if isinstance(r, BaseException)]
    if failed:
        raise failed[0]
    return len(sent)


async def send_record_batches(producer: AIOKafkaProducer, records: Sequence[tuple[str, bytes | None, bytes]],
                              partitioner: Callable, sent: list[asyncio.Future]) -> None:
    """Queue ``records`` as record batches (one per partition, more when one fills); append each send's future."""
    partitions: dict[str, list[int]] = {}
    open_batches: dict[tuple[str, int], BatchBuilder] = {}
    for topic, key, value in records:
        if topic not in partitions:
            partitions[topic] = sorted(await producer.partitions_for(topic))
        partition = partitioner(key, partitions[topic], partitions[topic])
        batch = open_batches.get((topic, partition))
        if batch is None:
            batch = open_batches[(topic, partition)] = producer.create_batch()
        if batch.append(key=key, value=value, timestamp=None) is None:     # full: send it, start another
            sent.append(await producer.send_batch(batch, topic, partition=partition))
            batch = open_batches[(topic, partition)] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:
                raise SmsGuardError(f"a record of {len(value)} bytes does not fit in an empty record batch")
    for (topic, partition), batch in open_batches.items():
        sent.append(await producer.send_batch(batch, topic, partition=partition))


def _load_scorer(watcher, settings: Settings):
    """The promoted model behind a template cache, or None (score 0) when the registry has none yet."""
    from detector.model import CachedScorer

    model = watcher.poll()
    if model is None:
        if watcher.last_error is not None:
            log.error("no usable promoted model; scoring 0 until one is promoted",
                      extra={"error": str(watcher.last_error)[:200]})
        return None
    return CachedScorer(model, settings.score_cache_size)


def faust_datadir(app_id: str) -> str:
    """Where faust keeps its data directory: under the temp dir, because faust wants one (it would make it in
    the current directory) and we keep no tables in it."""
    datadir = Path(tempfile.gettempdir()) / "smsguard-faust" / app_id
    datadir.parent.mkdir(parents=True, exist_ok=True)
    return str(datadir)


def create_app(settings: Settings, *, store=None, engine_type: type[Engine] = Engine) -> faust.App:
    """The detector's faust app for ``settings`` (``store``: a StateStore, default RedisStore; ``engine_type``:
    the Engine class, which ``bench stream``'s shell baseline replaces by a null engine)."""
    from detector.model import CachedScorer
    from detector.registry import ModelWatcher

    web_port = int(settings.worker_web_port or 0)
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{b.strip()}" for b in settings.kafka_bootstrap.split(",") if b.strip()],
        value_serializer="raw",
        key_serializer="raw",
        store="memory://",
        datadir=faust_datadir(settings.app_id),
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        broker_session_timeout=settings.broker_session_timeout_s,
        broker_rebalance_timeout=settings.broker_rebalance_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.broker_session_timeout_s / 3),
        broker_commit_every=max(1, settings.batch_size),
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        producer_max_request_size=MAX_OUTPUT_BYTES,
        producer_max_batch_size=OUTPUT_BATCH_BYTES,
        producer_acks=-1,
        web_enabled=web_port > 0,
        web_port=web_port or 6066,
        web_bind="127.0.0.1",
        web_in_thread=False,
        stream_wait_empty=False,
        topic_disable_leader=True,
    )
    # Before anything asks the app for its transport (topics, agents): faust would build its own.
    app.transport = KafkaTransport(app.conf.broker_consumer, app, fetch_max_wait_ms=int(settings.fetch_max_wait_ms))

    def topic(name: str) -> faust.TopicT:
        return app.topic(settings.topic(name), value_type=bytes, key_type=bytes, value_serializer="raw",
                         key_serializer="raw")

    output_topics = {name: settings.topic(name) for name in (TOPIC_DECISIONS, TOPIC_PORT_ACTIONS, TOPIC_DEAD_LETTER)}
    watcher = ModelWatcher(settings.models_dir)
    state: dict[str, Any] = {}

    ready = asyncio.Lock()

    async def engine() -> BatchProcessor:
        async with ready:      # three agents start at once; build one engine
            if "processor" not in state:
                state["processor"] = await build_processor()
        return state["processor"]

    async def build_processor() -> BatchProcessor:
        from detector.state.redis import RedisStore

        scorer = await asyncio.get_running_loop().run_in_executor(None, _load_scorer, watcher, settings)
        the_engine = engine_type(settings, store if store is not None else RedisStore.from_settings(settings), scorer)
        metrics.set_model(the_engine.model_version)
        tune_for_streaming()          # after the model is loaded: it is frozen out of the collector's walks
        log.info("engine ready", extra={"model_version": the_engine.model_version})
        return BatchProcessor(settings, the_engine)

    async def produce(out: Outputs) -> None:
        """Deliver every record (not just buffer it); retry until the broker takes them all.

        A batch is acked when this returns, so giving up would lose decisions; a retry may
        produce a record twice, which consumers absorb by ``msg_id``.
        """
        if not out.records:
            return
        records = [(output_topics[name], key, value) for name, key, value in out.records]
        for attempt in itertools.count(1):
            try:
                # faust's producer underneath (its acks=all and limits); NotReady until the app started it
                await deliver(app.producer._ensure_producer(), records)
                return
            except Exception as exc:  # broker errors of every kind: keep the batch, try again
                log.warning("producing a batch failed; retrying", extra={"attempt": attempt, "error": repr(exc)[:200],
                                                                          "records": len(out.records)})
                await asyncio.sleep(min(5.0, 0.2 * attempt))

    async def handle(processor: BatchProcessor, kind: str, events) -> None:
        batch = [RawEvent(e.value, e.message.topic, e.message.partition, e.message.offset) for e in events]
        out = await processor.process(kind, batch)
        await produce(out)
        report_lag(kind, events[-1].message)

    def report_lag(kind: str, message) -> None:
        """smsguard_consumer_lag of the partition a batch ended on: records behind its end, after this batch."""
        try:
            highwater = app.consumer.highwater(message.tp)
        except (AssertionError, KeyError):       # aiokafka asserts the partition is still assigned (rebalance)
            return
        if highwater is not None:
            metrics.set_lag(message.partition, max(0, highwater - message.offset - 1), consumer=f"worker:{kind}")

    def agent_for(kind: str):
        async def consume(stream) -> None:
            processor = await engine()
            async for events in stream.take_events(settings.batch_size, within=settings.batch_window_s):
                # take_events acks the batch when we come back for the next one, *or* when this loop is
                # cancelled (shutdown): so a batch in flight is finished and delivered before we let go.
                task = asyncio.ensure_future(handle(processor, kind, events))
                try:
                    await asyncio.shield(task)
                except asyncio.CancelledError:
                    with contextlib.suppress(Exception, asyncio.CancelledError):
                        await asyncio.wait_for(task, SHUTDOWN_GRACE_S)
                    raise
        consume.__name__ = consume.__qualname__ = f"consume_{kind.replace('.', '_').replace('-', '_')}"
        return app.agent(topic(kind), name=f"smsguard.{kind}")(consume)

    for kind in (TOPIC_OUTBOUND, TOPIC_OPTOUTS, TOPIC_COMPLAINTS):
        agent_for(kind)

    @app.timer(interval=float(settings.model_reload_s), on_leader=False)
    async def reload_model() -> None:
        if "processor" not in state:
            return
        model = await asyncio.get_running_loop().run_in_executor(None, watcher.poll)
        if model is not None:
            processor: BatchProcessor = state["processor"]
            processor.engine.swap_scorer(CachedScorer(model, settings.score_cache_size))
            metrics.set_model(processor.engine.model_version)
            log.info("model hot-swapped", extra={"model_version": processor.engine.model_version})

    if web_port:
        @app.page("/metrics")
        async def metrics_page(web, request):
            return web.bytes(metrics.render(), content_type="text/plain; version=0.0.4")

        @app.page("/health")
        async def health_page(web, request):
            processor = state.get("processor")
            version = processor.engine.model_version if processor else None
            # ready: deciding messages. model_ok: false when no promoted model could be loaded; the worker then
            # scores 0 (content signals off, heuristics on) until one is promoted, so it is ready but degraded.
            return web.json({"ready": processor is not None, "model_version": version,
                             "model_ok": processor is not None and version != NullScorer.version})

    app.smsguard_state = state      # for tests: the BatchProcessor once the agents started
    return app


class _BoundedShutdownWorker(faust.Worker):
    """faust's worker, but a stop that outlasts ``shutdown_timeout_s`` ends the process anyway.

    With the broker gone, faust's consumer thread waits for it while stopping, and the process never exits
    (found by QA; an orchestrator would have to SIGKILL it). Exiting then is a crash like any other: batches
    are acknowledged only once their outputs are delivered, so whatever was in flight is read again.
    """

    shutdown_timeout_s = 30.0

    def _schedule_shutdown(self, signal) -> None:
        if not self._signal_stop_time:
            timer = threading.Timer(self.shutdown_timeout_s, _exit_now, (self.shutdown_timeout_s,))
            timer.daemon = True
            timer.start()
        super()._schedule_shutdown(signal)


def _exit_now(timeout_s: float) -> None:
    log.error("worker did not stop within SMSGUARD_SHUTDOWN_TIMEOUT_S; exiting", extra={"timeout_s": timeout_s})
    logging.shutdown()
    os._exit(1)


def run_worker(settings: Settings) -> None:
    """``smsguard worker``: run the app until SIGTERM/SIGINT (faust's worker handles the signals)."""
    from detector.logs import configure_logging

    settings.check_production()
    configure_logging(settings)
    app = create_app(settings)
    worker = _BoundedShutdownWorker(app, loglevel=str(settings.log_level).upper(), override_logging=False,
                                    quiet=True, redirect_stdouts=False)
    worker.shutdown_timeout_s = float(settings.shutdown_timeout_s)
    worker.spinner = None       # its terminal escapes would land in the (JSON) log stream
    log.info("worker starting", extra={"app_id": settings.app_id, "outbound": settings.topic(TOPIC_OUTBOUND)})
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise SmsGuardError(f"worker stopped with exit code {exc.code}") from None
