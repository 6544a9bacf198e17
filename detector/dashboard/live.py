"""Live per-port statistics folded from ``sms.decisions`` (and ``sms.complaints``), in event time.

The dashboard never asks a worker: it reads every partition of the decision topic
itself, so it sees every port whichever worker decided it. "Now" is the newest event
time seen, which keeps a replayed recording's numbers the same as they were live; a
decision dated more than ``MAX_AHEAD_MS`` after the wall clock is counted but does not
move "now" (the worker accepts event times up to 24 h ahead, and one such message made
every other port's current numbers zero).

Everything is bounded: per-minute buckets for the last ``HISTORY_MIN`` minutes, a ring of
recent flagged decisions, a bounded map of recent contents by ``msg_id`` (the label action
needs the text).

>>> live = LiveStats()
>>> t = 1_731_326_400_000
>>> for i in range(30):
...     _ = live.add_decision({"msg_id": f"m{i}", "port": "10690001", "ts_ms": t + i * 1000, "action": "flag",
...         "score": 0.9, "risk": 2.5, "reasons": [{"signal": "classifier", "value": 0.9, "weight": 2}],
...         "recipient": f"r_{i:020d}", "content": "加微信 13812345678 领红包", "signature": "京东", "sp_id": "sp1"})
>>> row = live.port_summary("10690001")
>>> row["volume"], row["flagged"], row["fan_out"], row["spam_share"], row["top_reasons"]
(30, 30, 30, 1.0, [['classifier', 30]])
>>> live.recent_flagged(1)[0]["content"]
'加微信 138****5678 领红包'
>>> live.content_of("m3")["port"]
'10690001'
"""
from __future__ import annotations

import itertools
import re
import time
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Iterable

from detector.privacy import mask_numbers

MINUTE_MS = 60_000
HISTORY_MIN = 60          # minutes of per-minute buckets kept per port (sparklines)
WINDOW_MIN = 15           # the "recent" window for shares, fan-out, complaints and reasons
RATE_MIN = 5              # "rate now" = mean per-minute volume over the last RATE_MIN minutes
RECENT_FLAGGED = 500
RECENT_PER_PORT = 50
CONTENT_KEEP = 20_000
RECIPIENTS_PER_MINUTE = 5_000
FLAGGED_ACTIONS = ("flag", "block")
MAX_AHEAD_MS = 60_000     # event times this far past the wall clock still move "now" (sender clocks run a bit fast)
_DIGITS = re.compile(r"[0-9０-９]+(?:\*{2,}[0-9]+)?|\*{2,}")


def recipient_prefix(recipient: str | None) -> str:
    """A short prefix of the recipient hash: enough to see repeats, not to single anyone out.

    >>> recipient_prefix("r_0123456789abcdef0123"), recipient_prefix("13812345678")
    ('r_0123…', '138****5678')
    """
    if not recipient:
        return ""
    if recipient.startswith("r_"):
        return recipient[:6] + "…"
    return mask_numbers(recipient)[:12]


def template_text(content: str) -> str:
    """The message with its digits folded, so messages that differ only in codes and amounts group.

    >>> template_text("验证码 482913，5分钟内有效，勿告诉他人 138****5678")
    '验证码 #，#分钟内有效，勿告诉他人 #'
    """
    return _DIGITS.sub("#", content)[:80]


def public_decision(d: dict[str, Any]) -> dict[str, Any]:
    """What the page may show of a decision: numbers masked again (defence in depth), recipient shortened."""
    return {
        "msg_id": d.get("msg_id"), "port": d.get("port"), "ts_ms": d.get("ts_ms"), "action": d.get("action"),
        "score": d.get("score"), "risk": d.get("risk"), "port_state": d.get("port_state"),
        "reasons": [{"signal": r.get("signal"), "value": r.get("value"), "weight": r.get("weight"),
                     "detail": mask_numbers(str(r["detail"])) if r.get("detail") else None}
                    for r in d.get("reasons") or []],
        "content": mask_numbers(str(d.get("content") or ""))[:500],
        "signature": d.get("signature"), "sp_id": d.get("sp_id"), "category": d.get("category"),
        "recipient": recipient_prefix(d.get("recipient")), "model_version": d.get("model_version"),
        "decided_at_ms": d.get("decided_at_ms"),
    }


@dataclass
class _Minute:
    volume: int = 0
    flagged: int = 0
    blocked: int = 0
    spam: int = 0
    risk_sum: float = 0.0
    complaints: int = 0
    recipients: set[str] = field(default_factory=set)
    reasons: Counter = field(default_factory=Counter)
    signatures: Counter = field(default_factory=Counter)
    templates: Counter = field(default_factory=Counter)
    sp_ids: Counter = field(default_factory=Counter)


@dataclass
class _Port:
    minutes: dict[int, _Minute] = field(default_factory=dict)
    first_minute: int = 0
    first_ts_ms: int = 0
    last_ts_ms: int = 0
    last_state: str | None = None
    recent: deque = field(default_factory=lambda: deque(maxlen=RECENT_PER_PORT))

    def minute(self, m: int) -> _Minute:
        bucket = self.minutes.get(m)
        if bucket is None:
            bucket = self.minutes[m] = _Minute()
            if not self.first_minute or m < self.first_minute:
                self.first_minute = m
        return bucket


class LiveStats:
    """``clock``: wall-clock milliseconds (only to tell a decision dated far ahead); injectable for tests."""

    def __init__(self, clock: Any = None) -> None:
        self.now_ms = 0
        self._clock = clock or (lambda: time.time() * 1000)
        self.decisions_seen = 0
        self._ports: dict[str, _Port] = {}
        self._flagged: deque[dict[str, Any]] = deque(maxlen=RECENT_FLAGGED)
        self._contents: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._totals: dict[int, Counter] = {}       # minute -> Counter(action)

    # -- folding -----------------------------------------------------------------------------
    def add_decision(self, d: dict[str, Any]) -> dict[str, Any] | None:
        """Fold one decision in; return its public form when it is flagged or blocked (for the stream)."""
        port, ts_ms = str(d.get("port") or ""), int(d.get("ts_ms") or 0)
        if not port or not ts_ms:
            return None
        self.decisions_seen += 1
        self._advance(ts_ms)
        m = ts_ms // MINUTE_MS
        if m <= self.now_ms // MINUTE_MS - HISTORY_MIN:
            return None                                  # older than anything we keep
        action = d.get("action", "allow")
        stats = self._ports.get(port) or self._ports.setdefault(port, _Port())
        bucket = stats.minute(m)
        bucket.volume += 1
        score = float(d.get("score") or 0)
        bucket.spam += score >= 0.5
        bucket.risk_sum += float(d.get("risk") or 0)
        if d.get("recipient") and len(bucket.recipients) < RECIPIENTS_PER_MINUTE:
            bucket.recipients.add(d["recipient"])
        if d.get("signature"):
            bucket.signatures[d["signature"]] += 1
        if d.get("sp_id"):
            bucket.sp_ids[d["sp_id"]] += 1
        content = mask_numbers(str(d.get("content") or ""))
        bucket.templates[template_text(content)] += 1
        totals = self._totals.get(m)
        if totals is None:
            totals = self._totals[m] = Counter()
        totals[action] += 1
        if not stats.first_ts_ms or ts_ms < stats.first_ts_ms:
            stats.first_ts_ms = ts_ms
        if ts_ms >= stats.last_ts_ms:
            stats.last_ts_ms = ts_ms
            stats.last_state = d.get("port_state") or stats.last_state
        msg_id = d.get("msg_id")
        if msg_id:
            self._contents[msg_id] = {"content": content, "port": port, "action": action, "score": score,
                                      "ts_ms": ts_ms}
            self._contents.move_to_end(msg_id)
            while len(self._contents) > CONTENT_KEEP:
                self._contents.popitem(last=False)
        self._prune()
        if action not in FLAGGED_ACTIONS:
            return None
        bucket.flagged += 1
        bucket.blocked += action == "block"
        for reason in d.get("reasons") or []:
            bucket.reasons[reason.get("signal", "?")] += 1
        public = public_decision(d)
        self._flagged.append(public)
        stats.recent.append(public)
        return public

    def add_complaint(self, c: dict[str, Any]) -> None:
        """Count a complaint against its port (the recipient is not kept)."""
        port, ts_ms = str(c.get("port") or ""), c.get("ts_ms") or c.get("ts")
        if not port:
            return
        try:
            from detector.events import parse_ts
            ts_ms = parse_ts(ts_ms)
        except Exception:          # a malformed complaint is the worker's dead letter, not ours
            return
        self._advance(ts_ms)
        self._ports.setdefault(port, _Port()).minute(ts_ms // MINUTE_MS).complaints += 1

    def _advance(self, ts_ms: int) -> None:
        """Move "now" to ``ts_ms`` when it is later, unless it is dated far ahead of the wall clock."""
        if ts_ms > self.now_ms and ts_ms <= self._clock() + MAX_AHEAD_MS:
            self.now_ms = ts_ms

    def _prune(self) -> None:
        oldest = self.now_ms // MINUTE_MS - HISTORY_MIN
        if not self._totals or min(self._totals) > oldest:
            return
        for m in [m for m in self._totals if m <= oldest]:
            del self._totals[m]
        for port in list(self._ports):
            stats = self._ports[port]
            for m in [m for m in stats.minutes if m <= oldest]:
                del stats.minutes[m]
            stats.first_minute = min(stats.minutes, default=0)
            if not stats.minutes and not stats.recent:
                del self._ports[port]

    # -- reading -------------------------------------------------------------------------------
    def ports(self) -> list[str]:
        return list(self._ports)

    def content_of(self, msg_id: str) -> dict[str, Any] | None:
        """What the label action needs of a message: among the last CONTENT_KEEP decisions, or a flagged one the
        page still shows (the flagged list, a port's recent flagged messages), which a busy carrier's traffic
        pushes out of the first within seconds."""
        known = self._contents.get(msg_id)
        if known is not None:
            return known
        shown = itertools.chain(self._flagged, *(stats.recent for stats in self._ports.values()))
        d = next((d for d in shown if d["msg_id"] == msg_id), None)
        return None if d is None else {"content": d["content"], "port": d["port"], "action": d["action"],
                                       "score": d["score"], "ts_ms": d["ts_ms"]}

    def recent_flagged(self, limit: int = 100, port: str | None = None) -> list[dict[str, Any]]:
        """Newest first."""
        source: Iterable[dict[str, Any]] = self._ports[port].recent if port in self._ports else (
            () if port else self._flagged)
        return list(reversed(list(source)))[:limit]

    def volume_series(self, port: str | None = None, minutes: int = HISTORY_MIN, *,
                      project_current: bool = False, flagged: bool = False) -> list[float]:
        """Per-minute volume of a port (or of all ports), oldest first, ending at the current minute.

        ``flagged`` counts only flagged and blocked messages. ``project_current`` scales the current, unfinished minute to a full minute (sparklines would
        otherwise always end in a dip); only once a quarter of it has passed, to keep it from jumping.
        """
        now_m = self.now_ms // MINUTE_MS
        span = range(now_m - minutes + 1, now_m + 1)
        if port is None:
            counts = [self._totals.get(m, Counter()) for m in span]
            series: list[float] = [c["flag"] + c["block"] if flagged else sum(c.values()) for c in counts]
        else:
            stats = self._ports.get(port)
            buckets = [stats.minutes.get(m) if stats else None for m in span]
            series = [0 if b is None else b.flagged if flagged else b.volume for b in buckets]
        if project_current and series:
            elapsed = (self.now_ms % MINUTE_MS) / MINUTE_MS
            series[-1] = round(series[-1] / elapsed, 1) if elapsed >= 0.25 else series[-2] if minutes > 1 else 0
        return series

    def totals(self) -> dict[str, Any]:
        """Decisions per action over the recent window and per minute (all ports)."""
        now_m = self.now_ms // MINUTE_MS
        window = Counter()
        for m in range(now_m - WINDOW_MIN + 1, now_m + 1):
            window.update(self._totals.get(m, Counter()))
        return {"now_ms": self.now_ms, "window_min": WINDOW_MIN, "by_action": dict(window),
                "volume_per_min": self.volume_series(None, project_current=True), "ports_active": len(self._ports),
                "decisions_seen": self.decisions_seen}

    def port_summary(self, port: str) -> dict[str, Any]:
        """The ports-table row of one port (zeros for a port only Redis knows)."""
        stats = self._ports.get(port) or _Port()
        now_m = self.now_ms // MINUTE_MS
        window = [stats.minutes[m] for m in range(now_m - WINDOW_MIN + 1, now_m + 1) if m in stats.minutes]
        volume = sum(b.volume for b in window)
        flagged = sum(b.flagged for b in window)
        reasons, signatures, sp_ids, templates = Counter(), Counter(), Counter(), Counter()
        recipients: set[str] = set()
        for b in window:
            reasons.update(b.reasons)
            signatures.update(b.signatures)
            sp_ids.update(b.sp_ids)
            templates.update(b.templates)
            recipients |= b.recipients
        rate_now = self._rate_now(stats)
        base_minutes = range(stats.first_minute, now_m - RATE_MIN) if stats.first_minute else range(0)
        baseline = (sum(stats.minutes[m].volume for m in base_minutes if m in stats.minutes) / len(base_minutes)
                    if len(base_minutes) >= RATE_MIN else None)
        return {
            "port": port,
            "volume": volume,
            "flagged": flagged,
            "blocked": sum(b.blocked for b in window),
            "spam_share": round(sum(b.spam for b in window) / volume, 3) if volume else 0.0,
            "flagged_share": round(flagged / volume, 3) if volume else 0.0,
            "risk": round(sum(b.risk_sum for b in window) / volume, 3) if volume else 0.0,
            "rate_now": round(rate_now, 2),
            "baseline": round(baseline, 2) if baseline is not None else None,
            "fan_out": len(recipients),
            "complaints": sum(b.complaints for b in window),
            "top_reasons": [[k, v] for k, v in reasons.most_common(3)],
            "signatures": [[k, v] for k, v in signatures.most_common(5)],
            "sp_ids": [k for k, _ in sp_ids.most_common(3)],
            "templates": [[k, v] for k, v in templates.most_common(8)],
            "last_ts_ms": stats.last_ts_ms or None,
            "last_decision_state": stats.last_state,
            "spark": self.volume_series(port, 30, project_current=True),
        }

    def _rate_now(self, stats: _Port) -> float:
        """Messages per minute over the last RATE_MIN minutes, counting the current minute only as far as it
        has gone (event time), and a port that started sending lately only since it started."""
        now_m = self.now_ms // MINUTE_MS
        since_ms = max(stats.first_ts_ms, (now_m - RATE_MIN) * MINUTE_MS)
        count = sum(stats.minutes[m].volume for m in range(since_ms // MINUTE_MS, now_m + 1) if m in stats.minutes)
        return count * MINUTE_MS / max(self.now_ms - since_ms, 10_000)
