"""Redis backend of the state store: one Lua script per op kind, one pipeline per batch.

``run(ops)`` sends every op of a batch in ONE non-transactional pipeline, in order. Window,
Baseline, Distinct, Counter, Claim and HashSet are Lua scripts (``detector/state/lua/*.lua``,
each with a header naming its KEYS, ARGV, fields and return), so each op is atomic on the
server; HashGet is a plain HMGET. Scripts are loaded once (SCRIPT LOAD) and called by SHA
(EVALSHA); after a SCRIPT FLUSH or a server restart the ops that got NOSCRIPT are re-sent, in
order, once the scripts are loaded again (and by source, EVAL, if the scripts keep vanishing).

The answers are the same Python values :class:`~detector.state.memory.MemoryStore` gives,
including its event-time expiry: Counter, Claim and HashSet keep the event time at which they
lapse inside the key, so a replay against Redis decides like a replay in memory. Every key
also carries a server-clock TTL of the op's length, which bounds Redis memory; only when event
time runs *slower* than the server clock (a replay slower than real time, a consumer stalled for
longer than a TTL) does that TTL forget state before event time would.

Every key an op touches carries the op key's ``{hash tag}`` (Distinct's per-bucket
HyperLogLogs are ``<key>:<bucket>``), so one op maps to one Redis Cluster slot. A key names
one op kind: the backends keep kinds apart differently (MemoryStore in separate dicts).

Distinct is approximate (HyperLogLog, ~1%). For an event in order (its bucket is the key's newest)
both backends count the distinct members of the span; for a late event Redis counts the members
of the bucket HyperLogLogs still kept in the late span, while MemoryStore counts members whose
newest bucket lies in it, so the two may differ there.

Unreachable Redis raises :class:`~detector.errors.StateUnavailable` within the socket timeout
and sets ``healthy = False``; the next call simply tries again (redis-py reconnects), and a
success sets ``healthy = True``. Failed pipelines are never retried here: ops are not
idempotent, so the caller decides.

Port states live in ``sg:portstate:{PORT}`` hashes readable by gateways in any language;
``docs/gateway.md`` documents every key.
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from importlib import resources
from typing import Any, AsyncIterator, Callable, Iterable, Sequence
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from detector.errors import StateUnavailable
from detector.events import PortAction
from detector.state.base import (Baseline, Claim, Counter, Distinct, HashGet, HashSet, Op, StateStore, Window,
                                 tag)

#: Hash field in which HashSet keeps the event time its hash expires at.
HASH_EXPIRES_FIELD = "__expires_at_ms"
#: A baseline untouched this long has decayed to nothing (MemoryStore prunes it after a week of event time).
BASELINE_TTL_S = 7 * 86_400
#: Sorted set of every port with a state record (member: port, score: the action's ts_ms). Not hash-tagged:
#: it spans all ports, so in Redis Cluster it lives on one node of its own.
PORTS_INDEX = "sg:ports"
#: Registered-signature sets always hold this member, so a port registered with no signatures still has an entry.
_SIGREG_PRESENT = ""
#: Portable fields of ``sg:portstate:{PORT}`` besides the full ``json``; "" means null.
PORT_STATE_FIELDS = ("state", "rate_limit_per_min", "expires_at_ms", "since_ms", "ts_ms", "decided_by")

_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError, asyncio.TimeoutError)
_MAX_SCRIPT_RELOADS = 3


def lua_source(name: str) -> str:
    """The text of ``detector/state/lua/<name>.lua``.

    >>> lua_source("claim").startswith("-- claim.lua")
    True
    """
    return resources.files("detector.state").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


class LuaScript:
    """A packaged script and its SHA1 (what EVALSHA names it by)."""

    __slots__ = ("name", "source", "sha")

    def __init__(self, name: str):
        self.name = name
        self.source = lua_source(name)
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()


def port_state_key(port: str) -> str:
    """
    >>> port_state_key("10690001")
    'sg:portstate:{10690001}'
    """
    return tag("portstate", port)


def port_history_key(port: str) -> str:
    return tag("porthist", port)


def signature_registry_key(port: str) -> str:
    return tag("sigreg", port)


def port_state_fields(action: PortAction) -> dict[str, str]:
    """The hash written to ``sg:portstate:{PORT}``: the full JSON plus flat fields any gateway can read.

    >>> f = port_state_fields(PortAction("1069", 5, "throttle", [], 1, None, "engine", rate_limit_per_min=60))
    >>> f["state"], f["rate_limit_per_min"], f["expires_at_ms"]
    ('throttle', '60', '')
    """
    d = action.as_dict()
    flat = {name: "" if d[name] is None else str(d[name]) for name in PORT_STATE_FIELDS}
    return {"json": json.dumps(d, ensure_ascii=False, separators=(",", ":")), **flat}


def _require_tag(key: str) -> str:
    if "{" not in key or "}" not in key:
        raise ValueError(f"state key {key!r} has no {{hash tag}}; build keys with detector.state.base.tag()")
    return key


def redacted(url: str) -> str:
    """The URL without credentials, for messages.

    >>> redacted("redis://user:secret@10.0.0.5:6380/0")
    'redis://10.0.0.5:6380/0'
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


class RedisStore(StateStore):
    """The state store on Redis (see the module docstring)."""

    SCRIPT_NAMES = ("window", "baseline", "distinct", "counter", "claim", "hash_set")

    def __init__(self, url: str, *, socket_timeout: float = 2.0, connect_timeout: float | None = None,
                 max_connections: int | None = 50):
        self.url = url
        self.healthy = True
        self._redis = Redis.from_url(
            url, decode_responses=True, socket_timeout=socket_timeout,
            socket_connect_timeout=connect_timeout if connect_timeout is not None else socket_timeout,
            retry=Retry(NoBackoff(), 0), max_connections=max_connections)
        self._scripts = {name: LuaScript(name) for name in self.SCRIPT_NAMES}
        self._scripts_loaded = False
        self.script_loads = 0       # how often the scripts were (re)loaded: 1 unless Redis lost them
        self._clock_ms = 0          # newest event time seen, like MemoryStore's (HashGet expiry reads it)
        self._queue: dict[type, Callable[[Any, Any, int], None]] = {
            Window: self._queue_window, Baseline: self._queue_baseline, Distinct: self._queue_distinct,
            Counter: self._queue_counter, Claim: self._queue_claim, HashGet: self._queue_hash_get,
            HashSet: self._queue_hash_set,
        }

    @property
    def redis(self) -> Redis:
        """The underlying client (decode_responses=True), for tests and tools."""
        return self._redis

    def __repr__(self) -> str:
        return f"RedisStore({redacted(self.url)!r}, healthy={self.healthy})"

    @contextlib.asynccontextmanager
    async def _reachable(self) -> AsyncIterator[None]:
        try:
            yield
        except _UNREACHABLE as exc:
            self.healthy = False
            self._scripts_loaded = False      # a restarted server has none
            raise StateUnavailable(f"redis at {redacted(self.url)} unreachable: {exc or type(exc).__name__}") from exc
        except RedisError as exc:             # it answered, with an error (read-only replica, OOM, ...)
            raise StateUnavailable(f"redis at {redacted(self.url)} refused: {exc}") from exc
        self.healthy = True

    async def ping(self) -> None:
        """Raise StateUnavailable unless Redis answers."""
        async with self._reachable():
            await self._redis.ping()

    async def load_scripts(self) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for script in self._scripts.values():
            pipe.script_load(script.source)
        for script, sha in zip(self._scripts.values(), await pipe.execute()):
            if sha != script.sha:      # would mean our SHA1 differs from Redis's: EVALSHA could never work
                raise StateUnavailable(f"redis returned SHA {sha} for {script.name}.lua, expected {script.sha}")
        self._scripts_loaded = True
        self.script_loads += 1

    # -- ops -----------------------------------------------------------------------------------------
    async def run(self, ops: Sequence[Op]) -> list[Any]:
        if not ops:
            return []
        clocks = []
        clock = self._clock_ms
        for op in ops:
            ts = getattr(op, "ts_ms", None)
            if ts is not None and ts > clock:
                clock = ts
            clocks.append(clock)
        self._clock_ms = clock
        results: list[Any] = [None] * len(ops)
        pending = list(range(len(ops)))
        async with self._reachable():
            for attempt in range(_MAX_SCRIPT_RELOADS + 1):
                if not self._scripts_loaded:
                    await self.load_scripts()
                # After repeated NOSCRIPTs send the script text itself (EVAL): slower, but cannot be lost.
                pipe = _Pipeline(self._redis.pipeline(transaction=False), self._scripts,
                                 by_source=attempt == _MAX_SCRIPT_RELOADS)
                for i in pending:
                    op = ops[i]
                    queue = self._queue.get(type(op))
                    if queue is None:
                        raise TypeError(f"unknown op {op!r}")
                    queue(pipe, op, clocks[i])
                replies = await pipe.execute()
                lost = []
                for i, reply in zip(pending, replies):
                    if isinstance(reply, NoScriptError) or (lost and type(ops[i]) is HashGet):
                        lost.append(i)
                    elif isinstance(reply, Exception):
                        raise StateUnavailable(f"redis rejected {ops[i]!r}: {reply}") from reply
                    else:
                        results[i] = _convert(ops[i], reply, clocks[i])
                if not lost:
                    return results
                # A SCRIPT FLUSH (or a restart) before or during the pipeline: every script op from the
                # first NOSCRIPT on never ran. Re-send them, in order, once the scripts are back; the
                # reads among them (HMGET) are re-sent too so they still see the writes before them.
                self._scripts_loaded = False
                pending = lost
        raise AssertionError("unreachable: the last attempt runs the scripts by source")

    def _queue_window(self, pipe: Any, op: Window, clock: int) -> None:
        bucket = op.ts_ms // (op.bucket_s * 1000)
        longest = max(op.spans_s)
        spans = [max(1, span // op.bucket_s) for span in op.spans_s]
        pipe.script("window", op.key, bucket, op.amount, longest + op.bucket_s,
                      longest // op.bucket_s, *spans)

    def _queue_baseline(self, pipe: Any, op: Baseline, clock: int) -> None:
        pipe.script("baseline", op.key, op.ts_ms // 60_000, op.amount, repr(float(op.alpha)),
                      BASELINE_TTL_S)

    def _queue_distinct(self, pipe: Any, op: Distinct, clock: int) -> None:
        pipe.script("distinct", op.key, op.ts_ms // (op.bucket_s * 1000), op.member,
                      max(1, op.span_s // op.bucket_s), op.span_s + op.bucket_s)

    def _queue_counter(self, pipe: Any, op: Counter, clock: int) -> None:
        pipe.script("counter", op.key, op.ts_ms, op.amount, op.ts_ms + op.ttl_s * 1000, op.ttl_s)

    def _queue_claim(self, pipe: Any, op: Claim, clock: int) -> None:
        pipe.script("claim", op.key, op.ts_ms, op.ts_ms + op.ttl_s * 1000, op.ttl_s)

    def _queue_hash_get(self, pipe: Any, op: HashGet, clock: int) -> None:
        pipe.hmget(_require_tag(op.key), HASH_EXPIRES_FIELD, *op.fields)

    def _queue_hash_set(self, pipe: Any, op: HashSet, clock: int) -> None:
        if op.field == HASH_EXPIRES_FIELD:
            raise ValueError(f"hash field {HASH_EXPIRES_FIELD!r} is reserved")
        pipe.script("hash_set", op.key, op.field, op.value, op.ts_ms + op.ttl_s * 1000, clock, op.ttl_s)

    # -- port states ---------------------------------------------------------------------------------
    async def _per_port(self, ports: Iterable[str], queue: Callable[[Any, str], Any]) -> list[tuple[str, Any]]:
        """One pipelined command per distinct port: ``[(port, reply), ...]``."""
        ports = list(dict.fromkeys(ports))
        if not ports:
            return []
        async with self._reachable():
            pipe = self._redis.pipeline(transaction=False)
            for port in ports:
                queue(pipe, port)
            return list(zip(ports, await pipe.execute()))

    async def get_port_states(self, ports: Iterable[str]) -> dict[str, PortAction]:
        replies = await self._per_port(ports, lambda pipe, port: pipe.hget(port_state_key(port), "json"))
        return {port: PortAction.from_dict(json.loads(raw)) for port, raw in replies if raw}

    async def put_port_state(self, action: PortAction, history_limit: int = 200) -> None:
        fields = port_state_fields(action)
        async with self._reachable():
            pipe = self._redis.pipeline(transaction=False)
            pipe.hset(port_state_key(action.port), mapping=fields)
            pipe.lpush(port_history_key(action.port), fields["json"])
            pipe.ltrim(port_history_key(action.port), 0, max(history_limit, 1) - 1)
            pipe.zadd(PORTS_INDEX, {action.port: action.ts_ms})
            await pipe.execute()

    async def port_history(self, port: str, limit: int = 100) -> list[PortAction]:
        if limit <= 0:
            return []
        async with self._reachable():
            raw = await self._redis.lrange(port_history_key(port), 0, limit - 1)
        return [PortAction.from_dict(json.loads(item)) for item in raw]

    async def all_port_states(self) -> dict[str, PortAction]:
        async with self._reachable():
            ports = await self._redis.zrange(PORTS_INDEX, 0, -1)
        return await self.get_port_states(ports)

    # -- signature registry ---------------------------------------------------------------------------
    async def registered_signatures(self, ports: Iterable[str]) -> dict[str, frozenset[str]]:
        replies = await self._per_port(ports, lambda pipe, port: pipe.smembers(signature_registry_key(port)))
        return {port: frozenset(m for m in members if m != _SIGREG_PRESENT) for port, members in replies if members}

    async def register_signatures(self, port: str, signatures: Iterable[str], *, replace: bool = False) -> None:
        clean = [s.strip("【】[] ") for s in signatures]
        key = signature_registry_key(port)
        async with self._reachable():
            pipe = self._redis.pipeline(transaction=True)      # one key: atomic even in a cluster
            if replace:
                pipe.delete(key)
            pipe.sadd(key, _SIGREG_PRESENT, *(s for s in clean if s))
            await pipe.execute()

    async def close(self) -> None:
        await self._redis.aclose()


class _Pipeline:
    """A redis-py pipeline plus :meth:`script`: a packaged script on one key, by SHA or by source."""

    __slots__ = ("pipe", "scripts", "by_source")

    def __init__(self, pipe: Any, scripts: dict[str, LuaScript], *, by_source: bool):
        self.pipe, self.scripts, self.by_source = pipe, scripts, by_source

    def script(self, name: str, key: str, *args: Any) -> None:
        script = self.scripts[name]
        if self.by_source:
            self.pipe.eval(script.source, 1, _require_tag(key), *args)
        else:
            self.pipe.evalsha(script.sha, 1, _require_tag(key), *args)

    def hmget(self, key: str, *fields: str) -> None:
        self.pipe.hmget(key, *fields)

    async def execute(self) -> list[Any]:
        return await self.pipe.execute(raise_on_error=False)


def _convert(op: Op, reply: Any, clock: int) -> Any:
    """A Redis reply as the Python value MemoryStore returns for ``op``."""
    kind = type(op)
    if kind is Window:
        return tuple(int(x) for x in reply)
    if kind is Baseline:
        return (float(reply[0]), float(reply[1]), int(reply[2]), int(reply[3]))
    if kind is Distinct or kind is Counter:
        return int(reply)
    if kind is Claim:
        return bool(reply)
    if kind is HashGet:
        expires, values = reply[0], reply[1:]
        if expires is None or int(expires) <= clock:
            return [None] * len(op.fields)
        return list(values)
    return None
