"""The client SMS gateways embed: should this message go out through this port now?

>>> import asyncio
>>> async def demo():
...     gw = Gateway("redis://127.0.0.1:1/0")          # no Redis needed for normal and blocked ports
...     gw.apply(PortAction("10690002", 1, "block", [], 1, None, "ops:alice"))
...     verdicts = await gw.allow("10690001"), await gw.allow("10690002")
...     await gw.close()
...     return verdicts
>>> asyncio.run(demo())
(Verdict(action='ok', retry_after_ms=0, state='normal'), Verdict(action='reject', retry_after_ms=0, state='block'))

A :class:`Gateway` keeps a local copy of every port's state: warm start from Redis
(``sg:portstate:{PORT}`` via ``sg:ports``), then it follows the ``sms.port-actions`` topic (or,
without Kafka, polls Redis). ``allow(port)`` answers from that copy:

======== ===================================================================================
state    verdict
======== ===================================================================================
normal   ``ok`` (no Redis round trip)
watch    ``ok`` (no Redis round trip)
block    ``reject``
throttle the port's leaky bucket in Redis (``detector/state/lua/leaky_bucket.lua``, shared by
         every gateway process): ``ok``, or ``delay`` with ``retry_after_ms``
======== ===================================================================================

A state lapses locally at its ``expires_at_ms`` (the port is then normal). When Redis cannot
be reached, a throttled port falls back to a bucket in this process at the same rate (so N
gateways let through up to N times the rate until Redis is back). ``docs/gateway.md``
describes the keys and the topic for gateways written in other languages.
"""
from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

from redis.exceptions import RedisClusterException, RedisError

from detector.errors import StateUnavailable
from detector.events import TOPIC_PORT_ACTIONS, PortAction
from detector.state.base import tag
from detector.state.redis import RedisStore, lua_source

log = logging.getLogger(__name__)

OK, DELAY, REJECT = "ok", "delay", "reject"
#: Rate used for a throttled port whose action carries no rate_limit_per_min (policy's default).
DEFAULT_THROTTLE_RATE_PER_MIN = 60


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with one message: ``ok`` (send now), ``delay`` (ask again after ``retry_after_ms``), ``reject``."""
    action: str
    retry_after_ms: int = 0
    state: str = "normal"          # the port state the verdict came from

    @property
    def ok(self) -> bool:
        return self.action == OK


_OK_NORMAL = Verdict(OK, 0, "normal")
_OK_WATCH = Verdict(OK, 0, "watch")
_REJECT = Verdict(REJECT, 0, "block")
_OK_THROTTLE = Verdict(OK, 0, "throttle")


def bucket_key(port: str) -> str:
    """
    >>> bucket_key("10690001")
    'sg:bucket:{10690001}'
    """
    return tag("bucket", port)


def burst_for(rate_per_min: int, burst_s: float) -> int:
    """Bucket capacity: ``burst_s`` seconds of the rate, at least one message.

    >>> burst_for(60, 1.0), burst_for(600, 1.0), burst_for(6000, 0.5)
    (1, 10, 50)
    """
    return max(1, math.ceil(rate_per_min / 60 * burst_s))


class LocalBucket:
    """The leaky bucket of ``leaky_bucket.lua`` in one process (the fallback while Redis is away).

    >>> b = LocalBucket()
    >>> [b.take(60, 2, now_ms=0) for _ in range(3)]
    [(True, 0), (True, 0), (False, 1000)]
    >>> b.take(60, 2, now_ms=1000)
    (True, 0)
    """

    def __init__(self) -> None:
        self.level = 0.0
        self.last_ms = 0.0

    def take(self, rate_per_min: int, burst: int, now_ms: float | None = None) -> tuple[bool, int]:
        now = time.monotonic() * 1000 if now_ms is None else now_ms
        rate_per_ms = rate_per_min / 60_000
        level = max(0.0, self.level - (now - self.last_ms) * rate_per_ms)
        if level + 1 <= burst:
            self.level, self.last_ms = level + 1, now
            return True, 0
        return False, math.ceil((level + 1 - burst) / rate_per_ms)


class Gateway:
    """Port-state follower and throttle enforcer for one SMS gateway process.

    ``redis_url``: the detector's Redis. ``kafka_bootstrap``: follow ``topic`` (the full topic
    name, prefix included); without it the gateway polls Redis every ``poll_interval_s``. While
    following Kafka it still re-reads Redis every ``resync_s`` as a backstop (newer actions win).
    ``burst_s``: a throttled port may send this many seconds of its rate at once.
    ``clock``: wall-clock milliseconds (when local states lapse); injectable for tests.
    ``cluster``: ``redis_url`` names a node of a Redis Cluster (SMSGUARD_REDIS_CLUSTER); every key a gateway touches
    is one port's, and the leaky-bucket script is loaded on each primary (again after a NOSCRIPT).

    Use ``async with Gateway(...) as gw`` (or ``await gw.start()`` / ``await gw.close()``), ``await gw.ready()``,
    then ``await gw.allow(port)`` per message. ``apply(action)`` feeds a port action by hand.
    """

    def __init__(self, redis_url: str, *, kafka_bootstrap: str | None = None, topic: str = TOPIC_PORT_ACTIONS,
                 poll_interval_s: float = 2.0, resync_s: float = 30.0, burst_s: float = 1.0,
                 socket_timeout: float = 0.2, clock: Callable[[], float] | None = None, cluster: bool = False):
        self.store = RedisStore(redis_url, socket_timeout=socket_timeout, cluster=cluster)
        self.kafka_bootstrap = kafka_bootstrap
        self.topic = topic
        self.poll_interval_s = poll_interval_s if not kafka_bootstrap else resync_s
        self.burst_s = burst_s
        self.redis_ok = True
        self.redis_retry_s = 1.0
        self.actions_applied = 0
        self._redis_retry_at = 0.0
        self._clock = clock or (lambda: time.time() * 1000)
        self._states: dict[str, PortAction] = {}
        self._bucket = self.store.redis.register_script(lua_source("leaky_bucket"))
        self._local_buckets: dict[str, LocalBucket] = {}
        self._follower: Any = None
        self._redis_read = asyncio.Event()      # the port states have been read from Redis once
        self._poller: asyncio.Task | None = None

    # -- lifecycle --------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Warm start from Redis, then follow port actions. Never fails for lack of Redis or Kafka.

        It returns before the topic has been read: ``await ready()`` before answering for real traffic.
        """
        await self.refresh()
        if self.kafka_bootstrap:
            from detector.dashboard.feeds import TopicFollower     # aiokafka, only when following the topic
            # A little lookback covers actions published between the Redis read and the assignment; without
            # the warm start (Redis down, or empty: flushed, or a new instance) read the whole compacted topic.
            self._follower = TopicFollower(self.kafka_bootstrap, [self.topic], self._on_record, lookback=1_000,
                                           from_beginning=not self.redis_ok or not self._states, name="gateway")
            self._follower.start()
        self._poller = asyncio.create_task(self._poll(), name="gateway-poll")

    async def ready(self, timeout: float | None = None) -> bool:
        """Wait until the local copy holds the port states published before :meth:`start`: the topic read
        up to the end offsets it had then (with Kafka), or one successful read of Redis (polling).

        Until then a blocked port may be answered ``ok``. Returns False if ``timeout`` (seconds) ran out first.
        """
        event = self._follower.caught_up if self._follower is not None else self._redis_read
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def close(self) -> None:
        if self._follower is not None:
            await self._follower.stop()
        if self._poller is not None:
            self._poller.cancel()
            try:
                await self._poller
            except asyncio.CancelledError:
                if asyncio.current_task().cancelling():     # close() itself was cancelled: do not swallow that
                    raise
        await self.store.close()

    async def __aenter__(self) -> "Gateway":
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    @property
    def following(self) -> bool:
        """True while the port-action feed is connected (Kafka) or the last Redis poll worked."""
        if self._follower is not None:
            return bool(self._follower.connected)
        return self.redis_ok

    # -- port states --------------------------------------------------------------------------------------
    def apply(self, action: PortAction | dict[str, Any]) -> bool:
        """Take a port action into the local copy unless an action with a later ``ts_ms`` is there already."""
        if isinstance(action, dict):
            action = PortAction.from_dict(action)
        current = self._states.get(action.port)
        if current is not None and current.ts_ms > action.ts_ms:
            return False
        self._states[action.port] = action
        self.actions_applied += 1
        return True

    def state_of(self, port: str) -> PortAction | None:
        """The port's current state record, or None when it is normal (never seen, or lapsed)."""
        action = self._states.get(port)
        if action is None:
            return None
        if action.lapsed_by(self._clock()):
            return None
        return action

    def states(self) -> dict[str, PortAction]:
        """Every port whose state is not plain normal, as the gateway sees it now."""
        return {port: a for port in list(self._states) if (a := self.state_of(port)) and a.state != "normal"}

    async def refresh(self) -> None:
        """Read every port state from Redis (warm start and polling)."""
        try:
            states = await self.store.all_port_states()
        except StateUnavailable as exc:
            self.redis_ok = False
            log.warning("gateway: port states unavailable: %s", exc)
            return
        self.redis_ok = True
        for action in states.values():
            self.apply(action)
        self._redis_read.set()

    def _on_record(self, topic: str, value: dict[str, Any]) -> None:
        if value.get("type") == "port_action" and value.get("port") and value.get("state"):
            try:
                self.apply(value)
            except (KeyError, TypeError, ValueError) as exc:      # a malformed record must not stop the feed
                log.warning("gateway: bad port action %r: %s", str(value)[:200], exc)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval_s)
            await self.refresh()

    async def _take(self, port: str, rate: int, burst: int) -> tuple[int, int]:
        """One place in the port's shared bucket; the local bucket while Redis is away."""
        if time.monotonic() >= self._redis_retry_at:
            try:
                allowed, retry_after_ms = await self._bucket(keys=[bucket_key(port)], args=[rate, burst])
                self.redis_ok = True
                return allowed, retry_after_ms
            except (RedisError, RedisClusterException, OSError, asyncio.TimeoutError) as exc:
                if self.redis_ok:
                    log.warning("gateway: redis unavailable, throttling in this process only: %s", exc)
                self.redis_ok = False
                # do not pay a timeout per message: ask Redis again in a moment
                self._redis_retry_at = time.monotonic() + self.redis_retry_s
        return self._local_buckets.setdefault(port, LocalBucket()).take(rate, burst)

    # -- the decision ----------------------------------------------------------------------------------------
    async def allow(self, port: str) -> Verdict:
        """The verdict for one message through ``port``. Only throttled ports cost a Redis round trip."""
        action = self._states.get(port)
        if action is None:
            return _OK_NORMAL
        if action.lapsed_by(self._clock()):
            return _OK_NORMAL
        state = action.state
        if state == "block":
            return _REJECT
        if state != "throttle":
            return _OK_WATCH if state == "watch" else _OK_NORMAL
        rate = action.rate_limit_per_min if action.rate_limit_per_min is not None else DEFAULT_THROTTLE_RATE_PER_MIN
        if rate <= 0:                        # throttled to nothing: a delay would never end
            return Verdict(REJECT, 0, "throttle")
        burst = burst_for(rate, self.burst_s)
        allowed, retry_after_ms = await self._take(port, rate, burst)
        if allowed:
            return _OK_THROTTLE
        return Verdict(DELAY, int(retry_after_ms), "throttle")
