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
>>> FEEDS["sp_baseline"](ctx).key, FEEDS["rcpt_24h"](ctx).key, FEEDS["rcpt_24h"](ctx).fields
('sg:sp:{sp1}:base', 'sg:rcpt:{r_abc}:24h', ('s:京东', 'c:c1'))
"""
from __future__ import annotations

from sys import intern
from typing import Callable, NamedTuple

from detector.signals.base import MessageContext
from detector.state.base import Baseline, Distinct, FieldCounters, HashGet, Op, Window, tag

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
    #: counts one-time codes only (MessageContext.is_code): the engine hands it a group's codes alone, picked out once
    #: for every such feed, rather than asking it about each message
    codes_only: bool = False

    def build(self, sender: str, ts_ms: int, amount: int) -> Op:
        key = tag(self.kind, sender, self.suffix)
        if self.op is Window:
            return Window(key, ts_ms, amount, self.bucket_s, self.spans_s)
        return Baseline(key, ts_ms, amount)

    def __call__(self, ctx: MessageContext) -> Op | None:
        sender = getattr(ctx.event, self.attr)
        if not sender:
            return None
        if self.codes_only and not ctx.is_code:
            return self.build(sender, ctx.event.ts_ms, 0)
        return self.build(sender, ctx.event.ts_ms, 1 if self.amount is None else self.amount(ctx))


def _spam_units(ctx: MessageContext) -> int:
    """Abusive spam counts 4, compliant-looking marketing 1 (see spam_share). Spam is what the classifier scores
    spam, or a task-scam lure (scam_lure): the model misses short ones, and a port blasting them must not look clean.
    A prohibited offer (gambling, invoices for sale) counts 4 however compliant it looks.
    """
    if ctx.offer:
        return 4
    if not (ctx.is_spam or ctx.lure):
        return 0
    return 1 if ctx.compliant_marketing else 4


def _noncompliant_marketing(ctx: MessageContext) -> int:
    """1 for marketing without a signature or an unsubscribe method (what the rules require of it), else 0. Spam
    (scored, or a scam lure) is port_spam's: counted in both, a spam port would be judged twice for one thing."""
    return 1 if ctx.marketing and not (ctx.is_spam or ctx.lure or ctx.offer or ctx.compliant_marketing) else 0


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
    # spam-scored messages of the port, over 10 minutes and the hour: a port sending under spam_share's min_volume
    # in 10 minutes is judged on its hour (fanout.recent_share)
    "port_spam": SenderFeed("port", "port", "spam", Window, 60, (600, 3600), _spam_units),
    # its one-time codes (worded as one and not selling, declared or not: MessageContext.is_code) and their spam
    # units, over the same spans: spam_share judges the port on its other traffic too, which a spammer fills with
    # codes to dilute his spam (red team #6, fanout.noncode_spam_share). A code that reads as spam leaves that share
    # with its code: kept in it, a code port whose few spam-scored code templates (the corpus labels some real codes
    # spam) were the whole of its other traffic would look all spam. Spam merely declared a code is no code (#6 (b)).
    # Codes are counted rather than the other traffic: most ports send none, and a window that is only read
    # (amount 0) creates no key
    "port_codes": SenderFeed("port", "port", "code", Window, 60, (600, 3600), codes_only=True),
    "port_code_spam": SenderFeed("port", "port", "cspam", Window, 60, (600, 3600), _spam_units, codes_only=True),
    # its marketing without signature or unsubscribe text, over 10 minutes only: judged on the hour as well, 31 of
    # 150 quiet ports (1 message a minute) sending raw_dev.tsv's normal rows reached watch (red team, measured)
    "port_noncompliant": SenderFeed("port", "port", "ncm", Window, 60, (600,), _noncompliant_marketing),
    "port_optout_hits": SenderFeed("port", "port", "optv", Window, 60, (3600,), lambda c: 0),
}


def _sender(ctx: MessageContext) -> str:
    """Per-recipient caps count per signature when there is one, else per port.

    Interned: the field lives in a hash per recipient for a day, and a few senders reach most recipients.
    """
    return intern(f"s:{ctx.event.signature}" if ctx.event.signature else f"p:{ctx.event.port}")


class DistinctFeed(NamedTuple):
    """Distinct ``member`` values of one key (a port, a template, a MinHash band) per window.

    Split into ``ident`` (the key's partition, or None when the feed does not apply) and ``member``
    so the engine can drop a repeated (key, bucket, member) of a batch before it builds the op:
    a repeat changes nothing, and a port re-sending its template would otherwise cost four ops.
    """
    kind: str
    ident: Callable[[MessageContext], str | None]
    suffix: str
    member: Callable[[MessageContext], str]
    bucket_s: int = 600
    span_s: int = 3600
    #: ident and member read only the message's sender (port, sp_id, signature), its template (template_key,
    #: lsh_bands) and whether it is marketing: every message of one sender, template and marketing flag in a
    #: batch minute shares the op, so the engine works them out once per such group
    #: (tests/test_signal_contract.py checks the claim)
    sender_and_template_only: bool = False

    def build(self, ident: str, ts_ms: int, member: str, count: bool = True) -> Distinct:
        return Distinct(tag(self.kind, ident, self.suffix), ts_ms, member, self.bucket_s, self.span_s, count)

    def __call__(self, ctx: MessageContext) -> Distinct | None:
        ident = self.ident(ctx)
        return None if ident is None else self.build(ident, ctx.event.ts_ms, self.member(ctx))


def _port(ctx: MessageContext) -> str:
    return ctx.event.port


def _recipient(ctx: MessageContext) -> str:
    return ctx.event.recipient


def _recipient_day(ctx: MessageContext) -> FieldCounters:
    """Messages to this recipient in 24 h: from this sender (``[0]``), with this exact content (``[1]``) and a
    third count by the message's kind (``[2]``): for a one-time code, one-time codes from every sender (field
    ``v``); for other marketing, marketing through this port under any signature not registered to it (field
    ``m:<port>``: a port rotating signatures stays under each one's cap). Notices have no third count, nor has
    marketing under a signature registered to its port: a shared platform port carries many merchants' ads, and
    the platforms' daily caps are per merchant (the sender count ``[0]`` still caps each).

    One hash per recipient: these counters are two or three per message and live a day, the biggest
    population of keys in the store; as fields of one key they take about half the memory.

    >>> from detector.events import SmsEvent
    >>> ctx = MessageContext(SmsEvent("m", 0, "1069", "r", "x", signature="店"), 0.1, False, True, True, 12, "k", "t", "c")
    >>> _recipient_day(ctx).fields
    ('s:店', 'c:c', 'm:1069')
    >>> ctx.registered_signatures = frozenset({"店"})
    >>> _recipient_day(ctx).fields
    ('s:店', 'c:c')
    """
    if ctx.is_code:
        fields = (_sender(ctx), f"c:{ctx.content_id}", "v")
    elif ctx.marketing and not ctx.signature_registered_to_port:
        fields = (_sender(ctx), f"c:{ctx.content_id}", intern(f"m:{ctx.event.port}"))
    else:
        fields = (_sender(ctx), f"c:{ctx.content_id}")
    return FieldCounters(tag("rcpt", ctx.event.recipient, "24h"), ctx.event.ts_ms, fields, 1, DAY_S)


def _optout_lookup(ctx: MessageContext) -> HashGet | None:
    """Only marketing can violate an opt-out (see OptedOut), so nothing else needs the lookup."""
    if not ctx.marketing:
        return None
    # An unsigned message reads only the port's field: an opt-out naming an odd signature such as "-" must not
    # stop every unsigned message from every port.
    if ctx.event.signature:
        return HashGet(tag("optout", ctx.event.recipient), (f"s:{ctx.event.signature}", f"p:{ctx.event.port}"))
    return HashGet(tag("optout", ctx.event.recipient), (f"p:{ctx.event.port}",))


def _band(b: int) -> Callable[[MessageContext], str | None]:
    """Band ``b`` of a marketing message's template. Only marketing is judged by TemplatePorts (codes and notices
    share stock wordings across merchants' ports), so only marketing is counted: four fewer HyperLogLog updates
    for every other message."""
    return lambda c: c.lsh_bands[b] if c.marketing and len(c.lsh_bands) > b else None


FEEDS: dict[str, Callable[[MessageContext], Op | None]] = {
    **SENDER_FEEDS,
    # fan-out
    "port_recipients": DistinctFeed("port", _port, "rcpt", _recipient),
    "port_signatures": DistinctFeed("port", _port, "sigs", lambda c: c.event.signature or "-",
                                    sender_and_template_only=True),
    # Only spam-scored messages are judged by it (TemplateRecipients), and a template's messages share one
    # score (the score cache is keyed by template), so only they need counting.
    "template_recipients": DistinctFeed("tpl", lambda c: c.template_id if c.is_spam else None, "rcpt", _recipient),
    # per recipient
    "rcpt_24h": _recipient_day,
    "rcpt_optouts": _optout_lookup,
}
# Near-duplicate marketing templates through many ports: one Distinct per MinHash band.
for _b in range(4):
    FEEDS[f"template_ports_{_b}"] = DistinctFeed("lsh", _band(_b), "ports", _port, sender_and_template_only=True)
# Feeds that do not apply (build no op) unless the message is marketing / scored spam (MessageContext.marketing,
# .is_spam): the engine does not ask them about other messages. tests/test_signal_contract.py checks each claim.
ONLY_FOR: dict[str, str] = {"rcpt_optouts": "marketing", "template_recipients": "spam",
                            **{f"template_ports_{_b}": "marketing" for _b in range(4)}}
