"""Redis backend of the state store: a whole micro-batch in one Lua call, or one Lua call per op.

Each op kind is one Lua function (``detector/state/lua/ops/<kind>.lua``, with a header naming its
KEYS, ARGV, fields and return). Both modes are assembled from those same functions when the
store is created, so they cannot drift apart:

* **batch mode** (the default, for a standalone Redis): ``run(ops)`` sends the batch as ONE
  EVALSHA of ``batch.lua`` (``detector/state/lua/batch.lua``): KEYS are the distinct keys the
  batch touches, ARGV[1] is one JSON array of ``[op code, key index, args...]``, and the script
  applies every op in order, returning one reply per op. Very large batches are cut into
  chunks of ``batch_ops`` ops (1,000), one EVALSHA each, all in one pipeline, so no single call
  blocks Redis for long. A chunk is atomic on the server.
* **per-op mode** (``RedisStore(url, batch_script=False)``): one EVALSHA per op (HashGet: a plain
  HMGET) in one non-transactional pipeline, each op atomic on its own.
* **Redis Cluster** (``RedisStore(url, cluster=True)``, SMSGUARD_REDIS_CLUSTER; ``url`` names any node):
  redis-py's cluster client in per-op mode, always: a script may only touch keys of one slot, and a
  batch's keys span many, while every single op's keys share its ``{hash tag}``. The pipeline is split
  per node by the client and the nodes' parts are sent concurrently; the scripts are loaded on every
  primary. ``smsguard bench store --cluster`` measured 30-43 µs of client CPU per op on a local
  3-primary cluster (the standalone per-op mode 22-31, batch mode 4.5-4.8) and 8.5-11 µs of Redis
  CPU per op over the primaries; docs/configuration.md ("Redis Cluster") has the figures.

The engine also reads, for every micro-batch, the state record and the signature registry entry of each of
its ports. Batch mode reads them with one call of ``port_states.lua`` / ``port_registries.lua`` per
``batch_ops`` ports (the ports' keys as KEYS); per-op mode (and a cluster) with one pipelined HGET / SMEMBERS per
port. For 180 ports that is ~1.2 ms of client CPU against ~6.4 ms.

Both modes answer identically (``tests/test_state_contract.py`` runs every sequence through both).
``smsguard bench store`` measures the two against the same server: on the engine's batches the
per-op mode spends ~33-41 µs of client CPU per op (packing and parsing one command per op), batch
mode ~4; what remains is the scripts' own work in Redis (~7.5-9 µs of Redis CPU per op, ~90-125 µs per
message, load ~2 on 2 cores), about the same in both modes. Each ``redis.call`` from Lua costs a
microsecond or two beyond the command itself (a command-table and a key lookup, timing, argument
conversion), so the op scripts keep their calls few (33 per message on the engine's ops, counted with INFO commandstats): Distinct
derives its span's bucket names instead of keeping an index, TTLs are set with a plain EXPIRE (an op
kind passes one key the same TTL, so the expiry only moves later), Window caches its span sums for the
newest bucket instead of reading the whole hash, Counter and Baseline write only what changed. The
argument builders below send strings for whatever a script passes on to Redis (see there).

Scripts are loaded once (SCRIPT LOAD) and called by SHA (EVALSHA); after a SCRIPT FLUSH or a
server restart the calls (ops or chunks) that got NOSCRIPT are re-sent, in order, once the
scripts are loaded again (and by source, EVAL, if the scripts keep vanishing). A NOSCRIPT call
ran none of its ops, so nothing is applied twice.

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
of the late span's bucket HyperLogLogs that have not expired (server clock), while MemoryStore
counts members whose newest bucket lies in it and forgets old buckets sooner, so the two may
differ there. Bucket HyperLogLogs are removed by their TTL only: while a worker catches up on a
backlog (event time faster than the server clock) a key holds every bucket written within its
TTL of server time, more than the n + 1 of live traffic, but never longer than that TTL.

Unreachable Redis raises :class:`~detector.errors.StateUnavailable` within the socket timeout
and sets ``healthy = False``; the next call simply tries again (redis-py reconnects), and a
success sets ``healthy = True``. Failed pipelines are never retried here: ops are not
idempotent, so the caller decides. An op Redis rejects (its key holds another type) raises
StateUnavailable too; in batch mode the ops after it in its chunk did not run, in per-op mode
they did. Either way nothing is known about which ops were applied.

Port states live in ``sg:portstate:{PORT}`` hashes readable by gateways in any language;
``docs/gateway.md`` documents every key.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import itertools
import json
import uuid
from importlib import resources
from typing import Any, AsyncIterator, Callable, Iterable, Sequence
from urllib.parse import urlsplit

import orjson
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from detector.errors import ConfigError, StateUnavailable
from detector.events import PortAction, canonical_signature
from detector.state.base import (ANY_RECORD, AnyRecord, Baseline, Claim, Counter, Distinct, FieldCounters, HashGet, HashSet, Op,
                                 StateStore, Window, tag)

#: Hash field in which HashSet keeps the event time its hash expires at.
HASH_EXPIRES_FIELD = "__expires_at_ms"
#: A FieldCounters hash with more fields than this drops its ended windows when a window starts; the
#: field below then holds the next sweep size (twice the live fields), so sweeps stay O(1) amortised.
FIELD_COUNTERS_SWEEP_AT = 32
FIELD_COUNTERS_SWEEP_FIELD = "#"
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
#: What a cluster client raises besides: no node reachable, slots not covered (redis-py's cluster errors are not
#: RedisErrors). It also raises this for a command whose keys span slots, which tests/test_redis_cluster.py rules out.
_CLUSTER_UNREACHABLE = _UNREACHABLE + (RedisClusterException,)
_MAX_SCRIPT_RELOADS = 3


def lua_source(name: str) -> str:
    """The text of ``detector/state/lua/<name>.lua`` (``ops/<kind>`` for an op function).

    >>> lua_source("leaky_bucket").startswith("-- leaky_bucket.lua")
    True
    >>> lua_source("ops/claim").startswith("-- claim: set-if-absent")
    True
    """
    return resources.files("detector.state").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


#: The op kinds, in batch.lua's op-code order (code = position + 1); each is ``ops/<kind>.lua``.
OP_KINDS = ("window", "baseline", "distinct", "counter", "claim", "hash_get", "hash_set", "field_counters")
#: Scripts that read one key per port of a micro-batch in one call (batch mode; Redis Cluster: one command per port).
PORT_READ_SCRIPTS = ("port_states", "port_registries")
#: Scripts of one port's keys: a port state record stored only if the record it replaces is still there.
PORT_WRITE_SCRIPTS = ("put_port_state", "respell_signatures")
#: Op kinds the per-op mode runs as their own script (HashGet is a plain HMGET there).
SCRIPTED_KINDS = ("window", "baseline", "distinct", "counter", "claim", "hash_set", "field_counters")


def op_script_source(kind: str) -> str:
    """The per-op script of ``kind``: its op function called on KEYS[1] and ARGV.

    >>> print(op_script_source("claim").splitlines()[-1])
    return claim(KEYS[1], ARGV, 0)
    """
    return f"{lua_source('ops/' + kind).rstrip()}\nreturn {kind}(KEYS[1], ARGV, 0)\n"


def batch_script_source() -> str:
    """batch.lua with every op function placed between its header comment and its dispatcher.

    >>> source = batch_script_source()
    >>> source.startswith("-- batch.lua") and source.index("local function window(") < source.index("local run =")
    True
    """
    lines = lua_source("batch").splitlines(keepends=True)
    header = 0
    while header < len(lines) and lines[header].startswith("--"):
        header += 1
    functions = "\n".join(lua_source("ops/" + kind).rstrip() + "\n" for kind in OP_KINDS)
    return "".join(lines[:header]) + "\n" + functions + "\n" + "".join(lines[header:])


class LuaScript:
    """An assembled script and its SHA1 (what EVALSHA names it by)."""

    __slots__ = ("name", "source", "sha")

    def __init__(self, name: str, source: str):
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


# -- each op's script arguments: the same list for its per-op script (ARGV) and for batch.lua ---------------
# Strings for whatever a script passes on to Redis or names keys by (buckets, members, fields, values,
# amounts, TTLs, expiry times): Redis 7.0 formats a Lua number argument of redis.call with "%.17g", which
# costs more than many commands. Numbers for what the scripts only compute with (tonumber() reads both).
def _window_args(op: Window, clock: int) -> tuple:
    width = op.bucket_s
    longest = max(op.spans_s)
    return (str(op.ts_ms // (width * 1000)), str(op.amount), str(longest + width), longest // width,
            *[str(max(1, span // width)) for span in op.spans_s])


def _baseline_args(op: Baseline, clock: int) -> tuple:
    return op.ts_ms // 60_000, str(op.amount), float(op.alpha), str(BASELINE_TTL_S)


def _distinct_args(op: Distinct, clock: int) -> tuple:
    width = op.bucket_s
    return (str(op.ts_ms // (width * 1000)), op.member, max(1, op.span_s // width), str(op.span_s + width),
            1 if op.count else 0)


def _counter_args(op: Counter, clock: int) -> tuple:
    return op.ts_ms, str(op.amount), str(op.ts_ms + op.ttl_s * 1000), str(max(op.ttl_s, 1))


def _field_counters_args(op: FieldCounters, clock: int) -> tuple:
    if FIELD_COUNTERS_SWEEP_FIELD in op.fields:
        raise ValueError(f"hash field {FIELD_COUNTERS_SWEEP_FIELD!r} is reserved")
    return (op.ts_ms, str(op.amount), str(op.ts_ms + op.ttl_s * 1000), str(max(op.ttl_s, 1)),
            FIELD_COUNTERS_SWEEP_AT, *op.fields)


def _claim_args(op: Claim, clock: int) -> tuple:
    return op.ts_ms, str(op.ts_ms + op.ttl_s * 1000), str(max(op.ttl_s, 1))


def _hash_get_args(op: HashGet, clock: int) -> tuple:
    return op.fields


def _hash_set_args(op: HashSet, clock: int) -> tuple:
    if op.field == HASH_EXPIRES_FIELD:
        raise ValueError(f"hash field {HASH_EXPIRES_FIELD!r} is reserved")
    return op.field, op.value, str(op.ts_ms + op.ttl_s * 1000), clock, str(max(op.ttl_s, 1))


# -- each op's reply as the Python value MemoryStore gives (None: the reply already is) ----------------------
def _window_answer(op: Window, reply: list, clock: int) -> tuple[int, ...]:
    return tuple(reply)


def _baseline_answer(op: Baseline, reply: list, clock: int) -> tuple[float, float, int, int]:
    return float(reply[0]), float(reply[1]), reply[2], reply[3]


def _field_counters_answer(op: FieldCounters, reply: list, clock: int) -> tuple[int, ...]:
    return tuple(reply)


def _claim_answer(op: Claim, reply: int, clock: int) -> bool:
    return reply == 1


def _hash_get_answer(op: HashGet, reply: list, clock: int) -> list:
    expires = reply[0]
    if expires is None or int(expires) <= clock:
        return [None] * len(op.fields)
    return reply[1:]


def _hash_set_answer(op: HashSet, reply: None, clock: int) -> None:
    return None


#: op type -> (kind, batch.lua op code, argument builder, answer converter or None)
_OP_KINDS: dict[type, tuple[str, int, Callable[[Any, int], tuple], Callable[[Any, Any, int], Any] | None]] = {
    kind: (name, OP_KINDS.index(name) + 1, builder, answer) for kind, name, builder, answer in (
        (Window, "window", _window_args, _window_answer), (Baseline, "baseline", _baseline_args, _baseline_answer),
        (Distinct, "distinct", _distinct_args, None), (Counter, "counter", _counter_args, None),
        (FieldCounters, "field_counters", _field_counters_args, _field_counters_answer),
        (Claim, "claim", _claim_args, _claim_answer), (HashGet, "hash_get", _hash_get_args, _hash_get_answer),
        (HashSet, "hash_set", _hash_set_args, _hash_set_answer))}

_json_ops = orjson.dumps      # UTF-8 JSON bytes, which batch.lua's cjson reads as they are


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

    #: Ops per batch.lua call. A call is atomic and holds Redis (and the gateways' leaky-bucket calls) while
    #: it runs: ~8 µs of Redis CPU per op measured here, so ~8 ms for 1,000 ops.
    BATCH_OPS = 1_000

    def __init__(self, url: str, *, socket_timeout: float = 2.0, connect_timeout: float | None = None,
                 max_connections: int | None = 50, batch_script: bool = True, batch_ops: int = BATCH_OPS,
                 cluster: bool = False):
        """``batch_script=False`` selects the per-op pipeline. ``cluster=True`` talks to a Redis Cluster (``url`` names
        any one node) and always uses the per-op pipeline: a script may only touch keys of one slot."""
        if batch_ops < 1:
            raise ValueError("batch_ops must be at least 1")
        self.url = url
        self.healthy = True
        self.cluster = cluster
        self.batch_script = batch_script and not cluster
        self.batch_ops = batch_ops
        connect_timeout = connect_timeout if connect_timeout is not None else socket_timeout
        self._redis: Redis | RedisCluster
        if cluster:
            self._redis = _cluster_client(url, socket_timeout, connect_timeout, max_connections)
            self._unreachable = _CLUSTER_UNREACHABLE
        else:
            self._redis = Redis.from_url(
                url, decode_responses=True, socket_timeout=socket_timeout, socket_connect_timeout=connect_timeout,
                retry=Retry(NoBackoff(), 0), max_connections=max_connections)
            pool = self._redis.connection_pool
            pool.connection_class = _with_linear_packing(pool.connection_class)
            self._unreachable = _UNREACHABLE
        self._scripts = {kind: LuaScript(kind, op_script_source(kind)) for kind in SCRIPTED_KINDS}
        self._scripts["batch"] = LuaScript("batch", batch_script_source())
        for name in PORT_READ_SCRIPTS + PORT_WRITE_SCRIPTS:
            self._scripts[name] = LuaScript(name, lua_source(name))
        self._scripts_loaded = False
        self.script_loads = 0       # how often the scripts were (re)loaded: 1 unless Redis lost them
        self._clock_ms = 0          # newest event time seen, like MemoryStore's (HashGet expiry reads it)

    @classmethod
    def from_settings(cls, settings: Any, **options: Any) -> "RedisStore":
        """The store on SMSGUARD_REDIS_URL, as a Redis Cluster client when SMSGUARD_REDIS_CLUSTER is on."""
        return cls(settings.redis_url, cluster=settings.redis_cluster, **options)

    @property
    def redis(self) -> Redis | RedisCluster:
        """The underlying client (decode_responses=True), for tests and tools."""
        return self._redis

    def __repr__(self) -> str:
        mode = "cluster, per-op" if self.cluster else "batch" if self.batch_script else "per-op"
        return f"RedisStore({redacted(self.url)!r}, {mode}, healthy={self.healthy})"

    @contextlib.asynccontextmanager
    async def _reachable(self) -> AsyncIterator[None]:
        try:
            yield
        except self._unreachable as exc:
            self.healthy = False
            self._scripts_loaded = False      # a restarted server has none
            if self.cluster:
                # redis-py's cluster pipeline keeps its slot map after a node failed; closing the client makes the
                # next call ask the cluster again, so a replica promoted meanwhile is found
                with contextlib.suppress(*self._unreachable, RedisError):     # the error to report is exc
                    await self._redis.aclose()
            raise StateUnavailable(f"redis at {redacted(self.url)} unreachable: {exc or type(exc).__name__}") from exc
        except RedisError as exc:             # it answered, with an error (read-only replica, OOM, ...)
            raise StateUnavailable(f"redis at {redacted(self.url)} refused: {exc}") from exc
        self.healthy = True

    async def ping(self) -> None:
        """Raise StateUnavailable unless Redis answers."""
        async with self._reachable():
            await self._redis.ping()

    async def load_scripts(self) -> None:
        if self.cluster:
            # every primary: a script call runs on the node serving its key's slot (a cluster pipeline refuses
            # SCRIPT LOAD, a command for several nodes)
            shas = [await self._redis.execute_command("SCRIPT LOAD", script.source, target_nodes=RedisCluster.PRIMARIES)
                    for script in self._scripts.values()]
        else:
            pipe = self._redis.pipeline(transaction=False)
            for script in self._scripts.values():
                pipe.script_load(script.source)
            shas = await pipe.execute()
        for script, sha in zip(self._scripts.values(), shas):
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
        commands = self._batch_commands(ops, clocks) if self.batch_script else self._op_commands(ops, clocks)
        self._clock_ms = clock
        results: list[Any] = [None] * len(ops)
        pending = commands
        async with self._reachable():
            for attempt in range(_MAX_SCRIPT_RELOADS + 1):
                pipe = await self._script_pipeline(attempt)
                for command in pending:
                    self._send(pipe, command)
                replies = await pipe.execute()
                lost = []
                for command, reply in zip(pending, replies):
                    script, _, _, first, count = command
                    if isinstance(reply, NoScriptError) or (lost and script is None):
                        lost.append(command)
                    elif isinstance(reply, Exception):
                        what = repr(ops[first]) if count is None else f"the batch of {count} ops from {ops[first]!r}"
                        raise StateUnavailable(f"redis rejected {what}: {reply}") from reply
                    elif count is None:
                        results[first] = _convert(ops[first], reply, clocks[first])
                    else:
                        if len(reply) != count:
                            raise StateUnavailable(f"batch.lua answered {len(reply)} replies for {count} ops")
                        for i, answer in enumerate(reply, first):
                            convert = _OP_KINDS[type(ops[i])][3]
                            results[i] = answer if convert is None else convert(ops[i], answer, clocks[i])
                if not lost:
                    return results
                # A SCRIPT FLUSH (or a restart) before or during the pipeline: every script call from the
                # first NOSCRIPT on never ran. Re-send them, in order, once the scripts are back; the
                # reads among them (HMGET) are re-sent too so they still see the writes before them.
                self._scripts_loaded = False
                pending = lost
        raise AssertionError("unreachable: the last attempt runs the scripts by source")

    async def _script_pipeline(self, attempt: int) -> "_Pipeline":
        """A pipeline for script calls, with the scripts loaded. After repeated NOSCRIPTs (the last attempt) it
        sends the script text itself (EVAL): slower, but cannot be lost."""
        if not self._scripts_loaded:
            await self.load_scripts()
        pipeline = _ClusterPipeline if self.cluster else _Pipeline
        return pipeline(self._redis.pipeline(transaction=False), self._scripts,
                        by_source=attempt == _MAX_SCRIPT_RELOADS)

    def _op_commands(self, ops: Sequence[Op], clocks: list[int]) -> list[tuple]:
        """Per-op mode: ``(script or None for HMGET, keys, args, op index, None)`` per op."""
        commands = []
        for i, op in enumerate(ops):
            spec = _OP_KINDS.get(type(op))
            if spec is None:
                raise TypeError(f"unknown op {op!r}")
            kind, _, arguments, _ = spec
            args = arguments(op, clocks[i])
            if kind == "hash_get":
                commands.append((None, (_require_tag(op.key),), [HASH_EXPIRES_FIELD, *args], i, None))
            else:
                commands.append((kind, (_require_tag(op.key),), args, i, None))
        return commands

    def _batch_commands(self, ops: Sequence[Op], clocks: list[int]) -> list[tuple]:
        """Batch mode: ``("batch", keys, [ops as JSON], first op index, op count)`` per chunk."""
        commands = []
        kinds = _OP_KINDS
        for first in range(0, len(ops), self.batch_ops):
            last = min(first + self.batch_ops, len(ops))
            keys: dict[str, int] = {}
            encoded = []
            append = encoded.append
            for op, clock in zip(ops[first:last], clocks[first:last]):
                spec = kinds.get(type(op))
                if spec is None:
                    raise TypeError(f"unknown op {op!r}")
                key = op.key
                index = keys.get(key)
                if index is None:
                    index = keys[_require_tag(key)] = len(keys) + 1
                append((spec[1], index, *spec[2](op, clock)))
            commands.append(("batch", list(keys), [_json_ops(encoded)], first, last - first))
        return commands

    def _send(self, pipe: "_Pipeline", command: tuple) -> None:
        """Queue one command of :meth:`run` (a seam for tests that interleave other commands)."""
        script, keys, args = command[0], command[1], command[2]
        if script is None:
            pipe.hmget(keys[0], *args)
        else:
            pipe.script(script, keys, args)

    # -- port states ---------------------------------------------------------------------------------
    async def _per_port(self, ports: Iterable[str], queue: Callable[[Any, str], Any],
                        script: str, key: Callable[[str], str]) -> list[tuple[str, Any]]:
        """One reply per distinct port, ``[(port, reply), ...]``: in batch mode from ``script`` (the ports' keys
        as its KEYS, ``batch_ops`` ports a call, all in one pipeline), else one pipelined ``queue`` command per
        port (Redis Cluster: a script may not span slots)."""
        ports = list(dict.fromkeys(ports))
        if not ports:
            return []
        if not self.batch_script:
            async with self._reachable():
                pipe = self._redis.pipeline(transaction=False)
                for port in ports:
                    queue(pipe, port)
                return list(zip(ports, await pipe.execute()))
        chunks = [ports[i:i + self.batch_ops] for i in range(0, len(ports), self.batch_ops)]
        async with self._reachable():
            for attempt in range(_MAX_SCRIPT_RELOADS + 1):
                pipe = await self._script_pipeline(attempt)
                for chunk in chunks:
                    pipe.script(script, [key(port) for port in chunk], ())
                replies = await pipe.execute()
                if any(isinstance(reply, NoScriptError) for reply in replies):
                    self._scripts_loaded = False        # read-only: simply asked again once they are back
                    continue
                for reply in replies:
                    if isinstance(reply, Exception):
                        raise reply
                return list(zip(ports, itertools.chain.from_iterable(replies)))
        raise AssertionError("unreachable: the last attempt runs the script by source")

    async def get_port_states(self, ports: Iterable[str]) -> dict[str, PortAction]:
        replies = await self._per_port(ports, lambda pipe, port: pipe.hget(port_state_key(port), "json"),
                                       "port_states", port_state_key)
        return {port: PortAction.from_dict(json.loads(raw)) for port, raw in replies if raw}

    async def put_port_state(self, action: PortAction, history_limit: int = 200, *,
                             replaces: int | None | AnyRecord = ANY_RECORD) -> bool:
        fields = port_state_fields(action)
        condition = "*" if replaces is ANY_RECORD else "" if replaces is None else str(int(replaces))
        keys = (port_state_key(action.port), port_history_key(action.port))
        args = [condition, max(history_limit, 1), fields["json"], *itertools.chain.from_iterable(fields.items())]
        async with self._reachable():
            if not await self._call_script("put_port_state", keys, args):
                return False
            # sg:ports spans all ports (no hash tag), so it cannot be in the script's keys
            await self._redis.zadd(PORTS_INDEX, {action.port: action.ts_ms})
            return True

    async def _call_script(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """One call of script ``name`` on keys of one slot, its reply; after a NOSCRIPT (it never ran) it is sent
        again once the scripts are loaded again. Call inside :meth:`_reachable`."""
        for attempt in range(_MAX_SCRIPT_RELOADS + 1):
            pipe = await self._script_pipeline(attempt)
            pipe.script(name, keys, args)
            [reply] = await pipe.execute()
            if isinstance(reply, NoScriptError):
                self._scripts_loaded = False
                continue
            if isinstance(reply, Exception):
                raise reply
            return reply
        raise AssertionError("unreachable: the last attempt runs the script by source")

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
        replies = await self._per_port(ports, lambda pipe, port: pipe.smembers(signature_registry_key(port)),
                                       "port_registries", signature_registry_key)
        return {port: frozenset(m for m in members if m != _SIGREG_PRESENT) for port, members in replies if members}

    async def register_signatures(self, port: str, signatures: Iterable[str], *, replace: bool = False) -> None:
        clean = [canonical_signature(s) for s in signatures]     # as events' signatures are spelled
        key = signature_registry_key(port)
        members = (_SIGREG_PRESENT, *(s for s in clean if s))
        async with self._reachable():
            if self.cluster and replace:
                # redis-py's cluster MULTI/EXEC runs its commands on an event loop of its own (in a thread), which
                # breaks the client's connections; a set built beside the entry (same slot, same node) and renamed
                # over it replaces it just as atomically: readers see the old set or the new one. The building set's
                # name is this call's own, so two replaces at once cannot mix their members.
                building = f"{key}:replacing:{uuid.uuid4().hex}"
                pipe = self._redis.pipeline(transaction=False)
                pipe.sadd(building, *members)
                pipe.execute_command("RENAME", building, key)    # rename() is refused in a cluster pipeline, as
                                                                 # keys may span slots; these two share the tag
                await pipe.execute()
                return
            pipe = self._redis.pipeline(transaction=not self.cluster)      # one key: SADD alone is atomic
            if replace:
                pipe.delete(key)
            pipe.sadd(key, *members)
            await pipe.execute()

    async def respell_signatures(self, *, dry_run: bool = False) -> dict[str, int]:
        """Move stored opt-outs and registry entries to today's spelling of their signatures
        (:func:`~detector.events.canonical_signature`), after it changed: an opt-out kept as ``s:优 品 汇`` would
        no longer stop a message signed 【优 品 汇】, now read as 优品汇. Returns counts: keys scanned, spellings moved
        (or, with ``dry_run``, that would be). Scans every ``sg:optout:*`` and ``sg:sigreg:*`` key (on every
        primary of a cluster); safe to run while workers run, and again."""
        counts = {"keys": 0, "optouts": 0, "registry": 0}
        async with self._reachable():
            for kind, pattern, counter in (("hash", "sg:optout:*", "optouts"), ("set", "sg:sigreg:*", "registry")):
                async for key in self._redis.scan_iter(match=pattern, count=1000):
                    counts["keys"] += 1
                    if kind == "hash":
                        pairs = [(f"s:{old}", f"s:{new}") for old, new in _respellings(
                            f[2:] for f in await self._redis.hkeys(key) if f.startswith("s:"))]
                    else:
                        pairs = _respellings(m for m in await self._redis.smembers(key) if m != _SIGREG_PRESENT)
                    if not pairs:
                        continue
                    if dry_run:
                        counts[counter] += len(pairs)
                        continue
                    counts[counter] += int(await self._call_script(
                        "respell_signatures", (key,), [kind, *itertools.chain.from_iterable(pairs)]))
        return counts

    async def close(self) -> None:
        await self._redis.aclose()


class _LinearPacking:
    """``pack_command`` that joins a command's pieces once.

    redis-py's re-joins its growing buffer for every argument (quadratic up to its 6 KB cut-off):
    about 3 µs per key of a batch.lua call with a thousand keys, more than the rest of the batch's
    client work. The bytes on the wire are the same.
    """

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str):           # "SCRIPT LOAD" and friends: the server wants two arguments
            args = tuple(args[0].encode().split()) + args[1:]
        elif b" " in args[0]:
            args = tuple(args[0].split()) + args[1:]
        parts = [b"*%d\r\n" % len(args)]
        for arg in map(self.encoder.encode, args):
            parts += (b"$%d\r\n" % len(arg), arg, b"\r\n")
        return [b"".join(parts)]


@functools.lru_cache(maxsize=None)
def _with_linear_packing(connection_class: type) -> type:
    """``connection_class`` (TCP, TLS or unix socket) with :class:`_LinearPacking`'s pack_command."""
    return type(f"LinearPacking{connection_class.__name__}", (_LinearPacking, connection_class), {})


class _Pipeline:
    """A redis-py pipeline plus :meth:`script` (a packaged script, by SHA or by source).

    :meth:`execute` answers only the commands queued through :meth:`script` and :meth:`hmget`, so a
    test may slip other commands in between with :meth:`other`.
    """

    __slots__ = ("pipe", "scripts", "by_source", "_ours")

    def __init__(self, pipe: Any, scripts: dict[str, LuaScript], *, by_source: bool):
        self.pipe, self.scripts, self.by_source = pipe, scripts, by_source
        self._ours: list[bool] = []

    def script(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> None:
        script = self.scripts[name]
        if self.by_source:
            self.pipe.eval(script.source, len(keys), *keys, *args)
        else:
            self.pipe.evalsha(script.sha, len(keys), *keys, *args)
        self._ours.append(True)

    def hmget(self, key: str, *fields: str) -> None:
        self.pipe.hmget(key, *fields)
        self._ours.append(True)

    def other(self, *command: Any) -> None:
        self.pipe.execute_command(*command)
        self._ours.append(False)

    async def execute(self) -> list[Any]:
        replies = await self.pipe.execute(raise_on_error=False)
        return [reply for reply, ours in zip(replies, self._ours) if ours]


class _ClusterPipeline(_Pipeline):
    """:class:`_Pipeline` on a Redis Cluster client. redis-py's cluster pipeline refuses ``evalsha()`` (a script
    with no keys has no slot to go to), so script calls are sent as plain commands, routed by their one key; and
    it hands a node's timeout back as a reply instead of raising it, so that is raised here, as the standalone
    pipeline does, and the store marks itself unhealthy."""

    __slots__ = ()

    def script(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> None:
        script = self.scripts[name]
        if self.by_source:
            self.pipe.execute_command("EVAL", script.source, len(keys), *keys, *args)
        else:
            self.pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        self._ours.append(True)

    async def execute(self) -> list[Any]:
        replies = await self.pipe.execute(raise_on_error=False)
        for reply in replies:
            if isinstance(reply, _UNREACHABLE):
                raise reply
        return [reply for reply, ours in zip(replies, self._ours) if ours]


def _cluster_client(url: str, socket_timeout: float, connect_timeout: float,
                    max_connections: int | None) -> RedisCluster:
    """A cluster client that, like the standalone one, never retries by itself (ops are not idempotent); it still
    follows MOVED and ASK redirections."""
    options: dict[str, Any] = {"max_connections": max_connections} if max_connections else {}   # per node
    try:
        return RedisCluster.from_url(url, decode_responses=True, socket_timeout=socket_timeout,
                                     socket_connect_timeout=connect_timeout, retry=Retry(NoBackoff(), 0), **options)
    except RedisClusterException as exc:       # e.g. a database number: a cluster has only database 0
        raise ConfigError(f"Redis Cluster at {redacted(url)}: {exc}") from exc


def _respellings(signatures: Iterable[str]) -> list[tuple[str, str]]:
    """``(stored, canonical)`` for each stored signature that is no longer spelled canonically.

    >>> _respellings(["优 品 汇", "京东", "-"])
    [('优 品 汇', '优品汇')]
    """
    pairs = []
    for stored in signatures:
        canonical = canonical_signature(stored)
        if canonical and canonical != stored:
            pairs.append((stored, canonical))
    return pairs


def _convert(op: Op, reply: Any, clock: int) -> Any:
    """A Redis reply as the Python value MemoryStore returns for ``op``."""
    answer = _OP_KINDS[type(op)][3]
    return reply if answer is None else answer(op, reply, clock)
