"""The state store interface: a small vocabulary of operations that both backends implement.

Signals never talk to Redis. The engine turns a micro-batch of events into a list of
operations, a store applies them **in order** and returns one result per operation, as
if each were applied alone (Redis runs each op atomically in one Lua script or
command, pipelined per batch). ``tests/test_state_contract.py`` runs the same
sequences against :class:`~detector.state.memory.MemoryStore` and
:class:`~detector.state.redis.RedisStore` and requires the same answers.

Ops are NamedTuples: immutable, and cheap to build on the per-message path.

Keys carry their partition key in a ``{hash tag}`` (``port:{10690001}``) so every key an
op touches hashes to one Redis Cluster slot.

Time is the event's: every op carries ``ts_ms`` and windows are computed from it, so a
replay is deterministic. TTLs bound memory; in Redis they run on the server clock.
"""
from __future__ import annotations

import abc
from typing import Any, Iterable, NamedTuple, Sequence, Union

from detector.events import PortAction


class AnyRecord:
    """The type of :data:`ANY_RECORD`."""
    __slots__ = ()

    def __repr__(self) -> str:
        return "ANY_RECORD"


#: ``put_port_state(replaces=ANY_RECORD)``, the default: write whatever the port's current record is.
ANY_RECORD = AnyRecord()


class Window(NamedTuple):
    """Add ``amount`` to the bucket holding ``ts_ms``; return the sums over each span.

    Buckets are ``bucket_s`` wide; a span of S seconds sums the buckets in
    ``(ts - S, ts]``. Result: ``tuple[int, ...]``, one sum per span.
    """
    key: str
    ts_ms: int
    amount: int
    bucket_s: int
    spans_s: tuple[int, ...]


class Baseline(NamedTuple):
    """Per-minute rate baseline: an EWMA of the key's per-minute counts and their variance.

    When the event minute moves past the stored minute, the stored minute's count is
    folded into the EWMA, and so is every empty minute in between. Result:
    ``(mean_per_min, var_per_min, minutes_seen, current_minute_count)``.
    """
    key: str
    ts_ms: int
    amount: int
    alpha: float = 0.05


class Distinct(NamedTuple):
    """Add ``member`` to the bucket holding ``ts_ms``; return the distinct members over the span.

    Redis uses one HyperLogLog per bucket (approximate, ~1% error); the memory store is
    exact. Result: ``int``. With ``count=False`` the member is added and the result is 0: counting
    is most of the op's cost in Redis (a merge of the span's HyperLogLogs), and a count that only the
    port's last message of a batch reads need not be made for every message.
    """
    key: str
    ts_ms: int
    member: str
    bucket_s: int
    span_s: int
    count: bool = True


class Counter(NamedTuple):
    """Fixed-window counter: add ``amount``; the window starts at the first add and lasts ``ttl_s``.

    Result: ``int``, the count after the add. ``amount=0`` reads without writing.
    """
    key: str
    ts_ms: int
    amount: int
    ttl_s: int


class FieldCounters(NamedTuple):
    """Fixed-window counters kept as fields of one hash: add ``amount`` to each of ``fields``.

    Each field counts like :class:`Counter` (its window starts at its first add and lasts ``ttl_s``), but
    one partition's counters share one key: a Redis key costs about 100 bytes before its value, and the
    per-recipient counters are the store's biggest population. Result: ``tuple[int, ...]``, each field's
    count after the add, in order; ``amount=0`` reads without writing.
    """
    key: str
    ts_ms: int
    fields: tuple[str, ...]
    amount: int
    ttl_s: int


class Claim(NamedTuple):
    """Set ``key`` if absent (SET NX) with a TTL. Result: ``True`` the first time, ``False`` after."""
    key: str
    ts_ms: int
    ttl_s: int


class HashGet(NamedTuple):
    """Read fields of a hash. Result: ``list[str | None]``."""
    key: str
    fields: tuple[str, ...]


class HashSet(NamedTuple):
    """Write one field of a hash and (re)set the hash's TTL. Result: ``None``."""
    key: str
    ts_ms: int
    field: str
    value: str
    ttl_s: int


Op = Union[Window, Baseline, Distinct, Counter, FieldCounters, Claim, HashGet, HashSet]


def tag(kind: str, partition_key: str, *rest: str) -> str:
    """A Redis key with its hash tag.

    >>> tag("port", "10690001", "vol")
    'sg:port:{10690001}:vol'
    """
    if rest:
        return f"sg:{kind}:{{{partition_key}}}:{':'.join(rest)}"
    return f"sg:{kind}:{{{partition_key}}}"


class StateStore(abc.ABC):
    """Where signals keep their state and ports keep their states. One interface, two backends."""

    #: False while the backend cannot be reached (the engine then marks signals degraded).
    healthy: bool = True
    #: Whether the state outlives the process using it (Redis does; an in-process store dies with its worker or
    #: replay). Only then can a worker die between counting a message and keeping its decision while the
    #: count survives, so only then does the engine mark the two steps apart (see Engine._claim).
    outlives_process: bool = True

    @abc.abstractmethod
    async def run(self, ops: Sequence[Op]) -> list[Any]:
        """Apply ``ops`` in order and return one result per op.

        Raises :class:`~detector.errors.StateUnavailable` when the backend is unreachable;
        nothing is then known about which ops were applied.
        """

    # -- port states (the policy's memory, mirrored from sms.port-actions) ----------------------------
    @abc.abstractmethod
    async def get_port_states(self, ports: Iterable[str]) -> dict[str, PortAction]:
        """The current state record of each port that has one."""

    @abc.abstractmethod
    async def put_port_state(self, action: PortAction, history_limit: int = 200, *,
                             replaces: "int | None | AnyRecord" = ANY_RECORD) -> bool:
        """Store ``action`` as the port's current state and append it to the port's history; True if stored.

        ``replaces`` makes the write conditional, atomically: the ``ts_ms`` of the record ``action`` was decided
        from (None: the port had no record), and nothing is written unless that is still the port's record.
        The engine writes this way, so that an operator's action (or another worker's) stored between its read
        and its write is not overwritten by a decision made without it. The default writes unconditionally,
        as operators do: their decisions win.
        """

    @abc.abstractmethod
    async def port_history(self, port: str, limit: int = 100) -> list[PortAction]:
        """Newest first."""

    @abc.abstractmethod
    async def all_port_states(self) -> dict[str, PortAction]:
        """Every port with a state record (for the dashboard and the gateways' warm start)."""

    # -- signature registry (签名报备) ----------------------------------------------------------------
    @abc.abstractmethod
    async def registered_signatures(self, ports: Iterable[str]) -> dict[str, frozenset[str]]:
        """Signatures registered per port; ports without an entry are absent."""

    @abc.abstractmethod
    async def register_signatures(self, port: str, signatures: Iterable[str], *, replace: bool = False) -> None:
        ...

    async def close(self) -> None:
        return None
