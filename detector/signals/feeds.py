"""State feeds: the named state operations signals read, one op per feed per message.

A feed turns a message's context into one :mod:`detector.state.base` op (or ``None`` when it
does not apply, e.g. no signature). Several signals may read one feed; the engine builds
each feed once. Keys carry the port / signature / recipient / template as the hash tag.

>>> from detector.events import SmsEvent
>>> from detector.signals.base import MessageContext
>>> ev = SmsEvent("m1", 120_000, "10690001", "r_abc", "hello", sp_id="sp1", signature="京东")
>>> ctx = MessageContext(ev, 0.1, False, False, False, 12, "hello", "t1", "c1")
>>> FEEDS["port_rate"](ctx)
Window(key='sg:port:{10690001}:vol', ts_ms=120000, amount=1, bucket_s=60, spans_s=(60, 600, 3600))
>>> FEEDS["sp_baseline"](ctx).key, FEEDS["rcpt_content_24h"](ctx).key
('sg:sp:{sp1}:base', 'sg:rcpt:{r_abc}:c:c1')
"""
from __future__ import annotations

from typing import Callable

from detector.signals.base import MessageContext
from detector.state.base import Baseline, Counter, Distinct, HashGet, Op, Window, tag

DAY_S = 86_400
MINUTE_SPANS = (60, 600, 3600)


def _rate(kind: str, attr: str) -> Callable[[MessageContext], Op | None]:
    def build(ctx: MessageContext) -> Op | None:
        key = getattr(ctx.event, attr)
        return Window(tag(kind, key, "vol"), ctx.event.ts_ms, 1, 60, MINUTE_SPANS) if key else None
    return build


def _baseline(kind: str, attr: str) -> Callable[[MessageContext], Op | None]:
    def build(ctx: MessageContext) -> Op | None:
        key = getattr(ctx.event, attr)
        return Baseline(tag(kind, key, "base"), ctx.event.ts_ms, 1) if key else None
    return build


def _sender(ctx: MessageContext) -> str:
    """Per-recipient caps count per signature when there is one, else per port."""
    return f"s:{ctx.event.signature}" if ctx.event.signature else f"p:{ctx.event.port}"


FEEDS: dict[str, Callable[[MessageContext], Op | None]] = {
    # volume of the port / provider / signature, and their per-minute EWMA baselines
    "port_rate": _rate("port", "port"),
    "port_baseline": _baseline("port", "port"),
    "sp_rate": _rate("sp", "sp_id"),
    "sp_baseline": _baseline("sp", "sp_id"),
    "sig_rate": _rate("sig", "signature"),
    "sig_baseline": _baseline("sig", "signature"),
    # port volume over a day, for complaints per 10k messages
    "port_day": lambda c: Window(tag("port", c.event.port, "day"), c.event.ts_ms, 1, 3600, (DAY_S,)),
    "port_complaints": lambda c: Window(tag("port", c.event.port, "cmp"), c.event.ts_ms, 0, 3600, (DAY_S,)),
    # spam-scored messages of the port (abusive ones count fully, compliant marketing partly: see spam_share)
    "port_spam": lambda c: Window(tag("port", c.event.port, "spam"), c.event.ts_ms,
                                  (4 if not c.compliant_marketing else 1) if c.is_spam else 0, 60, (600,)),
    "port_optout_hits": lambda c: Window(tag("port", c.event.port, "optv"), c.event.ts_ms, 0, 60, (3600,)),
    # fan-out
    "port_recipients": lambda c: Distinct(tag("port", c.event.port, "rcpt"), c.event.ts_ms, c.event.recipient, 600, 3600),
    "port_signatures": lambda c: Distinct(tag("port", c.event.port, "sigs"), c.event.ts_ms,
                                          c.event.signature or "-", 600, 3600),
    "template_recipients": lambda c: Distinct(tag("tpl", c.template_id, "rcpt"), c.event.ts_ms, c.event.recipient,
                                              600, 3600),
    # per recipient
    "rcpt_sender_24h": lambda c: Counter(tag("rcpt", c.event.recipient, _sender(c)), c.event.ts_ms, 1, DAY_S),
    "rcpt_content_24h": lambda c: Counter(tag("rcpt", c.event.recipient, "c", c.content_id), c.event.ts_ms, 1, DAY_S),
    "rcpt_optouts": lambda c: HashGet(tag("optout", c.event.recipient),
                                      (f"s:{c.event.signature}" if c.event.signature else "s:-", f"p:{c.event.port}")),
}
# Per-sender counters that every message of a batch adds to: the engine merges them per batch.
MERGEABLE_FEEDS = frozenset({"port_rate", "port_baseline", "sp_rate", "sp_baseline", "sig_rate", "sig_baseline",
                             "port_day", "port_complaints", "port_spam", "port_optout_hits"})

# Near-duplicate templates through many ports: one Distinct per MinHash band.
for _band in range(4):
    FEEDS[f"template_ports_{_band}"] = (
        lambda c, b=_band: Distinct(tag("lsh", c.lsh_bands[b], "ports"), c.event.ts_ms, c.event.port, 600, 3600)
        if len(c.lsh_bands) > b else None)
