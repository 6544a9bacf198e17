"""``smsguard replay``: the live engine over recorded events, offline, in event time, deterministically.

Each input line is an ``sms.outbound`` payload (``"type": "sms"`` or no type), an opt-out
(``"type": "optout"``) or a complaint (``"type": "complaint"``). Events are sorted by event
time (stably), cut into fixed-size micro-batches and fed to :class:`~detector.engine.Engine`
with the in-process store, so two runs over one file give byte-identical output. Lines that
break the contract are written out as ``dead_letter`` records: nothing is lost.
"""
from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import IO, Any, Iterable

from detector.engine import Engine, Scorer
from detector.errors import InvalidEvent
from detector.events import EventParser, dead_letter, to_json
from detector.policy import Policy
from detector.privacy import RecipientHasher
from detector.runtime import tune_for_streaming
from detector.settings import Settings
from detector.state.base import StateStore
from detector.state.memory import MemoryStore

LEVEL = {"normal": 0, "watch": 1, "throttle": 2, "block": 3}
OUTPUT_BUFFER_BYTES = 1 << 20      # ~2,000 decisions a write(2) instead of ~16 (the default 8 KiB)


@dataclass
class PortSummary:
    messages: int = 0
    actions: Counter = field(default_factory=Counter)
    spam_scored: int = 0
    states: list[tuple[str, str, str]] = field(default_factory=list)   # (ts, state, decided_by)
    peak_state: str = "normal"
    first_throttle_after: int | None = None    # messages the port had sent when it first reached throttle or worse

    def as_dict(self) -> dict[str, Any]:
        return {"messages": self.messages, "actions": dict(self.actions), "spam_scored": self.spam_scored,
                "peak_state": self.peak_state, "first_throttle_after": self.first_throttle_after,
                "states": [list(s) for s in self.states]}


@dataclass
class ReplayStats:
    events: int = 0
    decisions: int = 0
    port_actions: int = 0
    dead_letters: int = 0
    duplicates: int = 0
    seconds: float = 0.0
    actions: Counter = field(default_factory=Counter)
    ports: dict[str, PortSummary] = field(default_factory=lambda: defaultdict(PortSummary))

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    def summary(self) -> dict[str, Any]:
        return {"events": self.events, "decisions": self.decisions, "port_actions": self.port_actions,
                "dead_letters": self.dead_letters, "duplicates": self.duplicates, "actions": dict(self.actions),
                "ports": {p: s.as_dict() for p, s in sorted(self.ports.items())}}


def read_events(lines: Iterable[str | bytes], parser: EventParser, stats: ReplayStats,
                rejects: list[dict[str, Any]]) -> list:
    events = []
    parse = parser.parse_any
    for number, line in enumerate(lines, 1):
        raw = (line.encode("utf-8", "surrogateescape") if isinstance(line, str) else line).rstrip(b"\r\n")
        if not raw or raw.isspace():
            continue
        try:
            events.append(parse(raw))
        except InvalidEvent as exc:
            stats.dead_letters += 1
            rejects.append(dead_letter(raw, str(exc), parser.hasher, topic="replay", offset=number))
    events.sort(key=attrgetter("ts_ms"))     # stable: equal timestamps keep file order
    return events


async def replay_events(events: list, engine: Engine, out: IO[bytes] | None, stats: ReplayStats,
                        batch_size: int) -> None:
    start = time.perf_counter()
    for i in range(0, len(events), batch_size):
        batch = events[i:i + batch_size]
        result = await engine.process(batch)
        stats.events += len(batch)
        stats.duplicates += len(result.duplicates)
        _account(result, stats)
        if out is not None:
            # one record at a time: orjson's buffers are cheap when dropped at once, page faults when kept
            for d in result.decisions:
                out.write(d.encode())
                out.write(b"\n")
            for a in result.port_actions:
                out.write(to_json(a.as_dict()) + b"\n")
    stats.seconds = time.perf_counter() - start


async def _registered_then_replayed(signatures: dict[str, list[str]] | None, events: list, engine: Engine,
                                   out: IO[bytes] | None, stats: ReplayStats, batch_size: int) -> None:
    for port, sigs in (signatures or {}).items():
        await engine.store.register_signatures(port, sigs, replace=True)
    await replay_events(events, engine, out, stats, batch_size)


def _account(result, stats: ReplayStats) -> None:
    stats.decisions += len(result.decisions)
    stats.port_actions += len(result.port_actions)
    for d in result.decisions:
        stats.actions[d.action] += 1
        port = stats.ports[d.port]
        port.messages += 1
        port.actions[d.action] += 1
        if d.reasons:       # most decisions have none
            port.spam_scored += any(r.signal == "content_spam" for r in d.reasons)
    for a in result.port_actions:
        port = stats.ports[a.port]
        port.states.append((a.as_dict()["ts"], a.state, a.decided_by))
        if LEVEL[a.state] > LEVEL[port.peak_state]:
            port.peak_state = a.state
        if LEVEL[a.state] >= LEVEL["throttle"] and port.first_throttle_after is None:
            port.first_throttle_after = port.messages


def _offline(settings: Settings) -> Settings:
    """Replay has no crashed worker to recover from: it keeps no decisions for redelivery."""
    return settings.replace(decision_replay_ttl_s=0)


def run_replay(path: str | Path, out_path: str | Path | None, settings: Settings, *,
               scorer: Scorer | None = None, policy: Policy | None = None, store: StateStore | None = None,
               batch_size: int | None = None, signatures: dict[str, list[str]] | None = None) -> ReplayStats:
    """Replay one file; the CLI, the scenario tests and the benchmarks all come through here.

    ``signatures`` is a signature registry (``{port: [signatures]}``, as ``smsguard signatures load`` reads it)
    written to the store before the first event, so that a backtest judges signatures as production does.
    """
    parser = EventParser(RecipientHasher(settings.recipient_secret), max_event_bytes=settings.max_event_bytes,
                         max_content_chars=settings.max_content_chars)
    stats = ReplayStats()
    rejects: list[dict[str, Any]] = []
    tune_for_streaming()
    with open(path, "rb") as fh:
        events = read_events(fh, parser, stats, rejects)
    engine = Engine(_offline(settings), store or MemoryStore(), scorer, policy)
    out = open(out_path, "wb", buffering=OUTPUT_BUFFER_BYTES) if out_path else None
    try:
        for record in rejects:
            if out is not None:
                out.write(to_json(record) + b"\n")
        asyncio.run(_registered_then_replayed(signatures, events, engine, out, stats,
                                              batch_size or settings.batch_size))
    finally:
        if out is not None:
            out.close()
    return stats


def replay_records(records: list[dict], settings: Settings, *, scorer: Scorer | None = None,
                   policy: Policy | None = None, batch_size: int = 200,
                   store: StateStore | None = None) -> tuple[ReplayStats, list[dict]]:
    """Replay in memory (for tests): returns the stats and every output record."""
    return asyncio.run(areplay_records(records, settings, scorer=scorer, policy=policy, batch_size=batch_size,
                                       store=store))


async def areplay_records(records: list[dict], settings: Settings, *, scorer: Scorer | None = None,
                          policy: Policy | None = None, batch_size: int = 200,
                          store: StateStore | None = None) -> tuple[ReplayStats, list[dict]]:
    """:func:`replay_records` on the running event loop, where ``store``'s connections live (and can be closed)."""
    import io
    parser = EventParser(RecipientHasher(settings.recipient_secret))
    stats = ReplayStats()
    rejects: list[dict[str, Any]] = []
    events = read_events((json.dumps(r, ensure_ascii=False) for r in records), parser, stats, rejects)
    engine = Engine(_offline(settings), store or MemoryStore(), scorer, policy)
    buf = io.BytesIO()
    await replay_events(events, engine, buf, stats, batch_size)
    return stats, rejects + [json.loads(line) for line in buf.getvalue().splitlines()]
