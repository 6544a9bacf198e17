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

from typing import Callable, NamedTuple

from detector.signals.base import MessageContext
from detector.state.base import Baseline, Counter, Distinct, HashGet, Op, Window, tag

DAY_S = 86_400
MINUTE_SPANS = (60, 600, 3600)


class SenderFeed(NamedTuple):
    """A counter of one sender (port, provider or signature) that every message of a batch adds to.

    The engine groups a batch by (feed, sender, time bucket) and sends one op per group with the
    summed amount, instead of one op per message: a batch costs the store one op per sender.
    """
    attr: str                                # SmsEvent attribute naming the sender
    kind: str                                # key namespace
    suffix: str
    op: type                                 # Window or Baseline
    bucket_s: int = 60
    spans_s: tuple[int, ...] = ()
    amount: Callable[[MessageContext], int] | None = None    # None: 1 per message

    def build(self, sender: str, ts_ms: int, amount: int) -> Op:
        key = tag(self.kind, sender, self.suffix)
        if self.op is Window:
            return Window(key, ts_ms, amount, self.bucket_s, self.spans_s)
        return Baseline(key, ts_ms, amount)

    def __call__(self, ctx: MessageContext) -> Op | None:
        sender = getattr(ctx.event, self.attr)
        if not sender:
            return None
        return self.build(sender, ctx.event.ts_ms, 1 if self.amount is None else self.amount(ctx))


def _spam_units(ctx: MessageContext) -> int:
    """Abusive spam counts 4, compliant-looking marketing 1 (see spam_share)."""
    return (4 if not ctx.compliant_marketing else 1) if ctx.is_spam else 0


SENDER_FEEDS: dict[str, SenderFeed] = {
    # volume of the port / provider / signature, and their per-minute EWMA baselines
    "port_rate": SenderFeed("port", "port", "vol", Window, 60, MINUTE_SPANS),
    "port_baseline": SenderFeed("port", "port", "base", Baseline),
    "sp_rate": SenderFeed("sp_id", "sp", "vol", Window, 60, MINUTE_SPANS),
    "sp_baseline": SenderFeed("sp_id", "sp", "base", Baseline),
    "sig_rate": SenderFeed("signature", "sig", "vol", Window, 60, MINUTE_SPANS),
    "sig_baseline": SenderFeed("signature", "sig", "base", Baseline),
    # port volume over a day, for complaints per 10k messages (complaint events add to "cmp")
    "port_day": SenderFeed("port", "port", "day", Window, 3600, (DAY_S,)),
    "port_complaints": SenderFeed("port", "port", "cmp", Window, 3600, (DAY_S,), lambda c: 0),
    # spam-scored messages of the port
    "port_spam": SenderFeed("port", "port", "spam", Window, 60, (600,), _spam_units),
    "port_optout_hits": SenderFeed("port", "port", "optv", Window, 60, (3600,), lambda c: 0),
}


def _sender(ctx: MessageContext) -> str:
    """Per-recipient caps count per signature when there is one, else per port."""
    return f"s:{ctx.event.signature}" if ctx.event.signature else f"p:{ctx.event.port}"


FEEDS: dict[str, Callable[[MessageContext], Op | None]] = {
    **SENDER_FEEDS,
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
# Near-duplicate templates through many ports: one Distinct per MinHash band.
for _band in range(4):
    FEEDS[f"template_ports_{_band}"] = (
        lambda c, b=_band: Distinct(tag("lsh", c.lsh_bands[b], "ports"), c.event.ts_ms, c.event.port, 600, 3600)
        if len(c.lsh_bands) > b else None)
