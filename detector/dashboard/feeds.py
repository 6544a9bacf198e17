"""Kafka for the dashboard and the ops CLI: a topic follower that survives broker restarts, and a producer.

:class:`TopicFollower` assigns itself every partition of its topics by hand (no consumer
group, so it never steals partitions from the workers and never waits for a rebalance),
starts ``lookback`` records before the end of each partition so a restarted dashboard
recovers the recent past, and reconnects from where it stopped when the broker goes away.
:func:`read_to_end` reads a topic from the beginning to its current end (``export-labels``).
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Awaitable, Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from detector import metrics
from detector.errors import SmsGuardError

log = logging.getLogger(__name__)

Handler = Callable[[str, dict[str, Any]], Awaitable[None] | None]


class KafkaUnavailable(SmsGuardError):
    """The broker could not be reached (the dashboard shows a banner and retries)."""


def decode_record(raw: bytes | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


class ConsumerLoop:
    """A consumer that runs in a task and starts over after any broker trouble, recording why."""

    name = "consumer"
    retry_s = 1.0

    def __init__(self) -> None:
        self.connected = False
        self.error: str | None = None
        self._task: asyncio.Task | None = None

    def _consumer(self) -> AIOKafkaConsumer:
        raise NotImplementedError

    async def _serve(self, consumer: AIOKafkaConsumer) -> None:
        """Consume until something fails (the consumer is started)."""
        raise NotImplementedError

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                if asyncio.current_task().cancelling():     # stop() itself was cancelled: do not swallow that
                    raise

    async def _run(self) -> None:
        while True:
            consumer = self._consumer()
            try:
                await consumer.start()
                await self._serve(consumer)
            except asyncio.CancelledError:
                raise
            except (KafkaError, OSError, SmsGuardError) as exc:
                self.connected, self.error = False, f"{type(exc).__name__}: {exc}"[:200]
                log.warning("%s: %s; retrying", self.name, self.error)
            finally:
                try:
                    await asyncio.wait_for(consumer.stop(), 5)
                except (Exception, asyncio.TimeoutError):   # a dead broker may make stop() fail too
                    pass
            await asyncio.sleep(self.retry_s)


class TopicFollower(ConsumerLoop):
    """Follows ``topics`` on every partition and hands each JSON record to ``handler(topic, value)``."""

    def __init__(self, bootstrap: str, topics: list[str], handler: Handler, *, lookback: int = 20_000,
                 from_beginning: bool = False, name: str = "dashboard", retry_s: float = 1.0):
        super().__init__()
        self.bootstrap = bootstrap
        self.topics = topics
        self.handler = handler
        self.lookback = lookback
        self.from_beginning = from_beginning
        self.name = name
        self.retry_s = retry_s
        self.records = 0
        self.lag: dict[str, int] = {}
        self._positions: dict[TopicPartition, int] = {}
        self._verified: dict[TopicPartition, tuple[int, int]] = {}
        #: Set once every partition has been read up to the end it had when first assigned (a gateway must not
        #: answer before it has seen the states published before it started).
        self.caught_up = asyncio.Event()
        self._catch_up_to: dict[TopicPartition, int] = {}

    def _consumer(self) -> AIOKafkaConsumer:
        # earliest: when the log went back (a broker that lost its data, retention) read all there is
        return AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False, group_id=None,
                                request_timeout_ms=10_000, retry_backoff_ms=300, metadata_max_age_ms=5_000,
                                auto_offset_reset="earliest")

    async def _serve(self, consumer: AIOKafkaConsumer) -> None:
        await self._assign(consumer)
        self.connected, self.error = True, None
        await self._consume(consumer)

    async def _assign(self, consumer: AIOKafkaConsumer) -> None:
        await consumer.topics()                     # refresh metadata
        partitions = []
        for topic in self.topics:
            for p in sorted(consumer.partitions_for_topic(topic) or ()):
                partitions.append(TopicPartition(topic, p))
        if not partitions:
            raise KafkaUnavailable(f"topics {', '.join(self.topics)} do not exist yet")
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)
        for tp in partitions:
            self._catch_up_to.setdefault(tp, ends[tp])
            if tp in self._positions:               # reconnect: resume where we stopped
                position = self._positions[tp]
                if position > ends[tp] and not await self._log_kept(tp, position):
                    position = self._positions[tp] = starts[tp]      # a new log: all of it is new to us
                consumer.seek(tp, max(position, starts[tp]))
            elif self.from_beginning:
                consumer.seek(tp, starts[tp])
            else:
                consumer.seek(tp, max(starts[tp], ends[tp] - self.lookback))

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        last_lag = 0.0
        while True:
            batches = await consumer.getmany(timeout_ms=500, max_records=2_000)
            for tp, records in batches.items():
                for record in records:
                    value = decode_record(record.value)
                    if value is not None:
                        result = self.handler(tp.topic, value)
                        if asyncio.iscoroutine(result):
                            await result
                    self._positions[tp] = record.offset + 1
                    self.records += 1
            if not self.caught_up.is_set():
                await self._check_caught_up(consumer)
            if time.monotonic() - last_lag > 5:
                last_lag = time.monotonic()
                await self._update_lag(consumer)
            if not batches:
                await asyncio.sleep(0)

    async def _check_caught_up(self, consumer: AIOKafkaConsumer) -> None:
        # position, not the last record's offset: past the end of tansu's "last batch's first offset + 1" once
        # the batch is read, and at the end of an empty partition already
        for tp, end in self._catch_up_to.items():
            if await consumer.position(tp) < end:
                return
        self.caught_up.set()

    async def _log_kept(self, tp: TopicPartition, position: int) -> bool:
        """Is the record before our position still there? A broker that lost its log (a restarted
        in-memory tansu) answers fetches past its new end with nothing, forever: then we start over.

        ``position > end`` alone proves nothing: tansu reports the last batch's first offset + 1 as the end.
        """
        probe = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                                 request_timeout_ms=5_000)
        try:
            await probe.start()
            probe.assign([tp])
            probe.seek(tp, position - 1)
            found = await probe.getmany(tp, timeout_ms=2_000, max_records=1)
        finally:
            await probe.stop()
        return bool(found.get(tp))

    async def _update_lag(self, consumer: AIOKafkaConsumer) -> None:
        assigned = list(consumer.assignment())
        if not assigned:
            return
        ends = await consumer.end_offsets(assigned)
        for tp in assigned:
            position = self._positions.get(tp, 0)
            if position > ends[tp] and self._verified.get(tp) != (position, ends[tp]):
                if not await self._log_kept(tp, position):
                    raise KafkaUnavailable(f"{tp.topic}[{tp.partition}] lost the records before offset {position}")
                self._verified[tp] = (position, ends[tp])
            lag = max(0, ends[tp] - self._positions.get(tp, ends[tp]))
            self.lag[f"{tp.topic}:{tp.partition}"] = lag
            metrics.set_lag(tp.partition, lag, consumer=f"{self.name}:{tp.topic}")


class Publisher:
    """A lazily started producer; a failed send raises :class:`KafkaUnavailable` and the next call reconnects."""

    def __init__(self, bootstrap: str):
        self.bootstrap = bootstrap
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def _ensure(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", request_timeout_ms=5_000,
                                            enable_idempotence=False)
                try:
                    await asyncio.wait_for(producer.start(), 10)
                except (KafkaError, OSError, asyncio.TimeoutError) as exc:
                    await self._quietly_stop(producer)
                    raise KafkaUnavailable(f"cannot reach Kafka at {self.bootstrap}: {type(exc).__name__}") from exc
                self._producer = producer
            return self._producer

    async def send(self, topic: str, key: str, value: dict[str, Any]) -> None:
        producer = await self._ensure()
        try:
            await asyncio.wait_for(producer.send_and_wait(
                topic, key=key.encode(), value=json.dumps(value, ensure_ascii=False).encode()), 10)
        except (KafkaError, OSError, asyncio.TimeoutError) as exc:
            self._producer = None
            await self._quietly_stop(producer)
            raise KafkaUnavailable(f"could not write to {topic}: {type(exc).__name__}") from exc

    @staticmethod
    async def _quietly_stop(producer: AIOKafkaProducer) -> None:
        try:
            await asyncio.wait_for(producer.stop(), 5)
        except (Exception, asyncio.TimeoutError):
            pass

    async def close(self) -> None:
        if self._producer is not None:
            await self._quietly_stop(self._producer)
            self._producer = None


async def read_to_end(bootstrap: str, topic: str, timeout_s: float = 60.0, quiet_s: float = 1.0) -> list[dict[str, Any]]:
    """Every JSON record of ``topic`` from the beginning to its end.

    The end offsets only say where to look at least: tansu answers ListOffsets(latest) with
    the last *batch's* first offset + 1, so reading continues until the positions have passed
    them and the topic has been quiet for ``quiet_s``.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                request_timeout_ms=10_000)
    try:
        await asyncio.wait_for(consumer.start(), timeout_s)
    except (KafkaError, OSError, asyncio.TimeoutError) as exc:
        await consumer.stop()           # else aiokafka warns "Unclosed AIOKafkaConsumer" under the one-line error
        raise KafkaUnavailable(f"cannot reach Kafka at {bootstrap}: {type(exc).__name__}") from exc
    try:
        await consumer.topics()
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            return []
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)
        for tp in partitions:
            consumer.seek(tp, starts[tp])
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        last_data = time.monotonic()
        while True:
            batches = await consumer.getmany(timeout_ms=250)
            for records in batches.values():
                for record in records:
                    value = decode_record(record.value)
                    if value is not None:
                        out.append(value)
            if any(batches.values()):
                last_data = time.monotonic()
            positions = {tp: await consumer.position(tp) for tp in partitions}
            if all(positions[tp] >= ends[tp] for tp in partitions) and time.monotonic() - last_data >= quiet_s:
                return out
            if time.monotonic() > deadline:
                raise KafkaUnavailable(f"timed out reading {topic} to its end")
    finally:
        await consumer.stop()
