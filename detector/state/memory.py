"""In-process state store: for replay, unit tests and backtests. Exact, deterministic, event-time TTLs.

>>> import asyncio
>>> from detector.state.base import Window, Claim
>>> s = MemoryStore()
>>> asyncio.run(s.run([Window("k", 60_000, 1, 60, (60, 600)), Window("k", 130_000, 2, 60, (60, 600)),
...                    Claim("m1", 0, 10), Claim("m1", 0, 10)]))
[(1, 1), (2, 3), True, False]
"""
from __future__ import annotations

import math

from typing import Any, Iterable, Sequence

from detector.events import PortAction, canonical_signature
from detector.state.base import (ANY_RECORD, AnyRecord, Baseline, Claim, Counter, Distinct, FieldCounters, HashGet,
                                 HashSet, Op, StateStore, Window)


#: Minutes a baseline folds in whole before bursts are clipped (the signals' default warm-up).
BASELINE_WARM_MINUTES = 30
#: After the warm-up a minute counts at most this many standard deviations above the mean.
BASELINE_CLIP_SD = 3.0


def fold_baseline(mean: float, var: float, seen: int, count: float, gap: int, alpha: float) -> tuple[float, float, int]:
    """Fold a finished minute's ``count`` into the EWMA, then ``gap - 1`` empty minutes.

    Once warm, a minute above ``mean + BASELINE_CLIP_SD`` standard deviations (Poisson's included) is folded as
    if it were at that bound: folded whole, a burst raised the variance so fast that it hid itself within two
    minutes (QA: a port at 15/min going to 150/min was a burst for one minute, then z < 3). Clipped, a burst
    that lasts still becomes the new baseline, over some ten minutes instead of two.

    The Redis Lua script does exactly this arithmetic; keep them in step.

    >>> fold_baseline(0.0, 0.0, 0, 10, 1, 0.5)
    (5.0, 25.0, 1)
    >>> fold_baseline(15.0, 32.0, 100, 150, 1, 0.05)[:2]        # clipped at 15 + 3 * sqrt(32 + 15 + 1)
    (16.039230484541328, 50.92)
    """
    diff = count - mean
    if seen >= BASELINE_WARM_MINUTES:
        limit = BASELINE_CLIP_SD * math.sqrt(var + mean + 1.0)
        if diff > limit:
            diff = limit
    incr = alpha * diff
    mean = mean + incr
    var = (1 - alpha) * (var + diff * incr)
    seen += 1
    empty = min(gap - 1, 10_000)
    for _ in range(min(empty, 120)):      # exact for short gaps
        diff = -mean
        incr = alpha * diff
        mean += incr
        var = (1 - alpha) * (var + diff * incr)
    if empty > 120:                       # long silences: the baseline has decayed to nothing
        mean *= (1 - alpha) ** (empty - 120)
        var *= (1 - alpha) ** (empty - 120)
    return mean, var, seen + empty


#: A counter is one int: its window's end (event-time ms) above the low _COUNT_BITS bits, its count in them.
#: One object instead of a list and an int: counters are the store's most numerous entries (two or three per
#: message, kept a day), and their memory is what a long replay's page faults are made of. Counts add messages
#: (amounts of 0 or more), so a count stays far below 2**40.
_COUNT_BITS = 40
_COUNT_MASK = (1 << _COUNT_BITS) - 1


def _count_in_window(windows: dict[str, int], name: str, ts_ms: int, amount: int, ttl_s: int) -> int:
    """Counter semantics on ``windows[name]``: a window starts at the first add and ends ``ttl_s`` later in
    event time; ``amount=0`` reads and never starts one. Returns the count.

    >>> windows = {}
    >>> [_count_in_window(windows, "k", ts, 1, 60) for ts in (0, 59_999, 60_000)]
    [1, 2, 1]
    >>> _count_in_window(windows, "k", 60_001, 0, 60), _count_in_window(windows, "other", 0, 0, 60), len(windows)
    (1, 0, 1)
    """
    entry = windows.get(name)
    if entry is None or entry >> _COUNT_BITS <= ts_ms:
        if not amount:
            return 0
        entry = (ts_ms + ttl_s * 1000) << _COUNT_BITS
    elif not amount:
        return entry & _COUNT_MASK
    entry += amount
    windows[name] = entry
    return entry & _COUNT_MASK


def _expired(entry: int, now_ms: int) -> bool:
    return entry >> _COUNT_BITS <= now_ms


class MemoryStore(StateStore):
    """Dicts keyed like the Redis keys. Expiry runs on event time, pruned every ``prune_every`` ops."""

    def __init__(self, prune_every: int = 200_000, *, outlives_process: bool = False):
        # True only for tests that hand one store to several engines to play a worker that died and restarted
        self.outlives_process = outlives_process
        self._windows: dict[str, list] = {}
        self._window_ttl: dict[str, int] = {}
        self._baselines: dict[str, list[float]] = {}
        self._distinct: dict[str, list] = {}
        self._distinct_ttl: dict[str, int] = {}
        self._counters: dict[str, int] = {}            # key -> expires_ms and count (_count_in_window)
        self._field_counters: dict[str, dict[str, int]] = {}   # key -> field -> expires_ms and count
        self._claims: dict[str, int] = {}              # key -> expires_ms
        self._hashes: dict[str, tuple[dict[str, str], int]] = {}
        self._port_states: dict[str, PortAction] = {}
        self._history: dict[str, list[PortAction]] = {}
        self._registry: dict[str, frozenset[str]] = {}
        self._clock_ms = 0
        self._ops = 0
        self._prune_every = prune_every
        self._next_prune = prune_every
        self._handlers = {Window: self._window, Distinct: self._distinct_op, Counter: self._counter,
                          FieldCounters: self._field_counters_op, Baseline: self._baseline, Claim: self._claim,
                          HashGet: self._hash_get, HashSet: self._hash_set}

    # -- ops -----------------------------------------------------------------------------------------
    async def run(self, ops: Sequence[Op]) -> list[Any]:
        return self._apply_all(ops)

    def apply(self, op: Op) -> Any:
        """One op, synchronously (for tests and tools)."""
        return self._apply_all((op,))[0]

    def _apply_all(self, ops: Sequence[Op]) -> list[Any]:
        # one loop, no call per op and no attribute written per op: this runs several times per replayed message
        handlers, results = self._handlers, []
        append = results.append
        clock, done, next_prune = self._clock_ms, self._ops, self._next_prune
        try:
            for op in ops:
                kind = type(op)
                handler = handlers.get(kind)
                if handler is None:
                    raise TypeError(f"unknown op {op!r}")
                if kind is not HashGet:             # HashGet has no event time: it reads at the store's clock
                    ts = op.ts_ms
                    if ts > clock:
                        clock = self._clock_ms = ts     # handlers read it
                done += 1
                if done == next_prune:
                    next_prune += self._prune_every
                    self.prune(clock)
                append(handler(op))
        finally:
            self._ops, self._next_prune = done, next_prune
        return results

    def _claim(self, op: Claim) -> bool:
        expires = self._claims.get(op.key)
        if expires is not None and expires > op.ts_ms:
            return False
        self._claims[op.key] = op.ts_ms + op.ttl_s * 1000
        return True

    def _hash_get(self, op: HashGet) -> list:
        entry = self._hashes.get(op.key)
        if entry is None or entry[1] <= self._clock_ms:
            return [None] * len(op.fields)
        return [entry[0].get(f) for f in op.fields]

    def _hash_set(self, op: HashSet) -> None:
        entry = self._hashes.get(op.key)
        fields = entry[0] if entry is not None and entry[1] > self._clock_ms else {}   # expired: start empty
        fields[op.field] = op.value
        self._hashes[op.key] = (fields, op.ts_ms + op.ttl_s * 1000)

    def _window(self, op: Window) -> tuple[int, ...]:
        # entry: [buckets {index: count}, last bucket index, cached sums for that index and spans]
        entry = self._windows.get(op.key)
        b = op.ts_ms // (op.bucket_s * 1000)
        if entry is None:
            entry = self._windows[op.key] = [{}, None, None]
        buckets = entry[0]
        if op.amount:
            buckets[b] = buckets.get(b, 0) + op.amount
        longest = max(op.spans_s)
        self._window_ttl[op.key] = op.ts_ms + (longest + op.bucket_s) * 1000
        if entry[1] == b and entry[2] is not None and len(entry[2]) == len(op.spans_s):
            sums = entry[2] = tuple(x + op.amount for x in entry[2])    # same bucket: every span grows by amount
            return sums
        sums = []
        for span in op.spans_s:
            n = max(1, span // op.bucket_s)
            sums.append(sum(c for i, c in buckets.items() if b - n < i <= b))
        if len(buckets) > 2 * (longest // op.bucket_s) + 4:
            oldest = b - longest // op.bucket_s
            for old in [k for k in buckets if k < oldest]:
                del buckets[old]
        # cache only at the newest bucket: an out-of-order op must not poison it
        newest = max(buckets) if buckets else b
        entry[1], entry[2] = (b, tuple(sums)) if b >= newest else (None, None)
        return tuple(sums)

    def _distinct_op(self, op: Distinct) -> int:
        # entry: [member -> newest bucket it was seen in, bucket -> members whose newest bucket it is,
        #         (bucket, count) cached for the newest bucket asked about, newest bucket in per_bucket]
        entry = self._distinct.get(op.key)
        if entry is None:
            entry = self._distinct[op.key] = [{}, {}, None, None]
        latest, per_bucket, cached, newest = entry
        b = op.ts_ms // (op.bucket_s * 1000)
        n = max(1, op.span_s // op.bucket_s)
        self._distinct_ttl[op.key] = op.ts_ms + (op.span_s + op.bucket_s) * 1000
        seen = latest.get(op.member)
        if seen is None or seen < b:
            if seen is not None:
                per_bucket[seen] -= 1
            latest[op.member] = b
            per_bucket[b] = per_bucket.get(b, 0) + 1
            if newest is None or b > newest:
                entry[3] = newest = b       # pruning only drops buckets older than b - span: never this one
            if cached is not None and cached[0] == b:
                # counted already when it was seen within the span; new to the span otherwise
                counted = seen is not None and seen > b - n
                entry[2] = cached = (b, cached[1] + (0 if counted else 1))
                return cached[1] if op.count else 0
        elif cached is not None and cached[0] == b:
            return cached[1] if op.count else 0
        if len(per_bucket) > 2 * n + 4:
            cutoff = b - n
            for member in [m for m, mb in latest.items() if mb <= cutoff]:
                del latest[member]
            for old in [k for k in per_bucket if k <= cutoff]:
                del per_bucket[old]
        if not op.count:            # add only (Distinct.count): the next count recomputes
            entry[2] = None
            return 0
        total = 0
        for i in range(n):
            total += per_bucket.get(b - i, 0)
        entry[2] = (b, total) if newest is None or b >= newest else None   # an out-of-order op must not poison the cache
        return total

    def _counter(self, op: Counter) -> int:
        return _count_in_window(self._counters, op.key, op.ts_ms, op.amount, op.ttl_s)

    def _field_counters_op(self, op: FieldCounters) -> tuple[int, ...]:
        fields = self._field_counters.get(op.key)
        if fields is None:
            if not op.amount:
                return (0,) * len(op.fields)
            fields = self._field_counters[op.key] = {}
        return tuple([_count_in_window(fields, name, op.ts_ms, op.amount, op.ttl_s) for name in op.fields])

    def _baseline(self, op: Baseline) -> tuple[float, float, int, int]:
        minute = op.ts_ms // 60_000
        state = self._baselines.get(op.key)
        if state is None:
            state = [0.0, 0.0, 0, minute, 0]   # mean, var, seen, minute, count
            self._baselines[op.key] = state
        mean, var, seen, cur_minute, count = state
        if minute > cur_minute:
            mean, var, seen = fold_baseline(mean, var, int(seen), count, int(minute - cur_minute), op.alpha)
            cur_minute, count = minute, 0
        count += op.amount
        state[:] = [mean, var, seen, cur_minute, count]
        return (mean, var, int(seen), int(count))

    def prune(self, now_ms: int) -> None:
        """Drop everything whose TTL has passed in event time (keeps a long replay's memory bounded)."""
        for store, ttl in ((self._windows, self._window_ttl), (self._distinct, self._distinct_ttl)):
            for key in [k for k, t in ttl.items() if t <= now_ms]:
                store.pop(key, None)
                del ttl[key]
        for key in [k for k, v in self._counters.items() if _expired(v, now_ms)]:
            del self._counters[key]
        for key, fields in list(self._field_counters.items()):
            for name in [f for f, v in fields.items() if _expired(v, now_ms)]:
                del fields[name]
            if not fields:
                del self._field_counters[key]
        for key in [k for k, t in self._claims.items() if t <= now_ms]:
            del self._claims[key]
        for key in [k for k, v in self._hashes.items() if v[1] <= now_ms]:
            del self._hashes[key]
        stale = now_ms - 7 * 86_400_000      # a baseline untouched for a week has decayed to nothing
        for key in [k for k, v in self._baselines.items() if v[3] * 60_000 < stale]:
            del self._baselines[key]

    def size(self) -> int:
        """Number of live keys (for memory-bound tests)."""
        return sum(len(d) for d in (self._windows, self._distinct, self._counters, self._field_counters,
                                    self._claims, self._hashes, self._baselines))

    # -- port states --------------------------------------------------------------------------------
    async def get_port_states(self, ports: Iterable[str]) -> dict[str, PortAction]:
        return {p: self._port_states[p] for p in ports if p in self._port_states}

    async def put_port_state(self, action: PortAction, history_limit: int = 200, *,
                             replaces: int | None | AnyRecord = ANY_RECORD) -> bool:
        if replaces is not ANY_RECORD:
            current = self._port_states.get(action.port)
            if (current.ts_ms if current is not None else None) != replaces:
                return False
        self._port_states[action.port] = action
        hist = self._history.setdefault(action.port, [])
        hist.insert(0, action)
        del hist[history_limit:]
        return True

    async def port_history(self, port: str, limit: int = 100) -> list[PortAction]:
        return self._history.get(port, [])[:limit]

    async def all_port_states(self) -> dict[str, PortAction]:
        return dict(self._port_states)

    async def registered_signatures(self, ports: Iterable[str]) -> dict[str, frozenset[str]]:
        return {p: self._registry[p] for p in ports if p in self._registry}

    async def register_signatures(self, port: str, signatures: Iterable[str], *, replace: bool = False) -> None:
        current = set() if replace else set(self._registry.get(port, ()))
        current.update(c for c in map(canonical_signature, signatures) if c)     # as events' signatures are spelled
        self._registry[port] = frozenset(current)
