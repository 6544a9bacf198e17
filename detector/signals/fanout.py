"""Fan-out: how many recipients, ports and signatures a port or a template spreads over.

>>> from detector.events import SmsEvent
>>> from detector.signals.base import MessageContext
>>> ctx = MessageContext(SmsEvent("m", 0, "1069", "r", "x"), 0.0, False, False, False, 12, "k", "t", "c")
>>> ctx.state = {"port_signatures": 31}
>>> PortSignatures().evaluate(ctx)
Fired(value=1.0, detail='31 signatures on this port in the last hour')
>>> ctx.registered_signatures = frozenset(f"商户{i}" for i in range(25))    # a platform port, 25 registered
>>> PortSignatures().evaluate(ctx) is None
True
>>> ctx.registered_signatures = None
>>> ctx.state = {f"template_ports_{b}": n for b, n in enumerate((1, 12, 2, 1))}
>>> TemplatePorts().evaluate(ctx) is None          # not marketing: a stock code or notice wording
True
>>> ctx.marketing = True
>>> TemplatePorts().evaluate(ctx).value
1.0
"""
from __future__ import annotations

from detector.signals.base import Fired, MessageContext, Signal, ramp


class SpamFanout(Signal):
    """Spam-scored traffic spread over many distinct recipients in the last hour (HyperLogLog)."""
    name = "spam_fanout"
    level = "port"
    feeds = ("port_recipients", "port_spam", "port_rate")
    defaults = {"low": 100, "high": 2000}

    def evaluate(self, ctx: MessageContext) -> Fired | None:
        recipients = ctx.state.get("port_recipients")
        share, _ = spam_share(ctx)
        if not recipients or not share:
            return None
        value = ramp(recipients, self.params["low"], self.params["high"]) * share
        return Fired(value, f"{recipients} recipients/h, spam share {share:.0%}") if value > 0 else None


def recent_share(rate: tuple | None, units: tuple | None, min_volume: int, per_message: float = 1.0) \
        -> tuple[float, str | None]:
    """``(share, window)``: the share of the port's recent messages that ``units`` counts (``per_message`` units a
    message at most), over its last 10 minutes, or over its last hour when it sent fewer than ``min_volume`` in 10
    minutes but at least that many in the hour; ``(0.0, None)`` below that. ``rate`` is the port_rate feed (10 min,
    hour at [1], [2]) and ``units`` a feed of spans (600, 3600), or (600,) for a share judged on 10 minutes only.

    Without the hour a port that drips spam under ``min_volume`` a 10 minutes (19 messages: 2,700 a day) was never
    judged at all (red team, tests/test_evasions.py).

    >>> recent_share((1, 100, 600), (200, 900), 20, 4.0), recent_share((1, 10, 60), (40, 240), 20, 4.0)
    ((0.5, '10 min'), (1.0, 'hour'))
    >>> recent_share((1, 10, 19), (40, 76), 20, 4.0)
    (0.0, None)
    """
    if rate is None or units is None:
        return 0.0, None
    if rate[1] >= min_volume:
        return min(1.0, units[0] / (per_message * rate[1])), "10 min"
    if len(rate) > 2 and len(units) > 1 and rate[2] >= min_volume:
        return min(1.0, units[1] / (per_message * rate[2])), "hour"
    return 0.0, None


def spam_share(ctx: MessageContext, min_volume: int = 20) -> tuple[float, str | None]:
    """``(share, window)``: share of the port's recent messages that were spam (scored, or scam_lure), compliant
    marketing counting a quarter, over the window :func:`recent_share` picks."""
    return recent_share(ctx.state.get("port_rate"), ctx.state.get("port_spam"), min_volume, 4.0)


def noncode_spam_share(ctx: MessageContext, min_volume: int = 20) -> tuple[float, str | None]:
    """``(share, window)`` as :func:`spam_share`, over the port's messages other than one-time codes (worded as one
    and not selling, declared or not: MessageContext.is_code): codes leave the count and their spam units
    (port_code_spam) leave the spam. A port that sends 1 spam in 5 and fills the rest with codes is 20% spam
    (spam_share's low: nothing) but 100% spam beside its codes (red team #6), also when the spam is declared a code.
    ``(0.0, None)`` for a port without codes, or with fewer than ``min_volume`` other messages in the hour: a code
    port is not judged on a handful of notices.

    >>> from detector.events import SmsEvent
    >>> ctx = MessageContext(SmsEvent("m", 0, "1069", "r", "x"), 0.9, True, True, False, 12, "k", "t", "c")
    >>> ctx.state = {"port_rate": (50, 500, 1500), "port_spam": (400, 1200), "port_codes": (400, 1200),
    ...              "port_code_spam": (0, 0)}
    >>> spam_share(ctx), noncode_spam_share(ctx)
    ((0.2, '10 min'), (1.0, '10 min'))
    >>> ctx.state["port_code_spam"] = (400, 1200)      # codes the model scores spam leave with the codes
    >>> noncode_spam_share(ctx)
    (0.0, '10 min')
    """
    state = ctx.state
    codes, rate = state.get("port_codes"), state.get("port_rate")
    if not codes or not rate or not (codes[0] or codes[-1]):
        return 0.0, None
    spam, code_spam = state.get("port_spam"), state.get("port_code_spam")
    if not spam or not code_spam:
        return 0.0, None
    others = (0, max(0, rate[1] - codes[0]), max(0, rate[2] - codes[1]))
    return recent_share(others, (max(0, spam[0] - code_spam[0]), max(0, spam[1] - code_spam[1])), min_volume, 4.0)


class TemplateRecipients(Signal):
    """A spam-scored near-duplicate template reaching many recipients within the hour (bulk spam)."""
    name = "template_recipients"
    only_for = "spam"
    feeds = ("template_recipients",)
    defaults = {"low": 100, "high": 1000}

    def evaluate(self, ctx: MessageContext) -> Fired | None:
        n = ctx.state.get("template_recipients")
        if not n or not ctx.is_spam:
            return None
        value = ramp(n, self.params["low"], self.params["high"])
        return Fired(value, f"template sent to {n} recipients/h") if value > 0 else None


class TemplatePorts(Signal):
    """The same (near-duplicate, MinHash-banded) marketing template arrives through many ports: resold or rented
    ports. Codes and notices are not judged: thousands of merchants send the same stock wordings."""
    # Verification codes and notices come in a few phrasings that merchants send through their own ports, so
    # those templates are on many ports without any resale; only marketing (declared, scored spam, or looking
    # like it) is judged. tests/test_scenarios.py has both cases.
    name = "template_ports"
    level = "both"
    only_for = "marketing"
    feeds = tuple(f"template_ports_{b}" for b in range(4))
    defaults = {"low": 4, "high": 10}

    def available(self, ctx: MessageContext) -> bool:
        return any(f in ctx.state for f in self.feeds)

    def evaluate(self, ctx: MessageContext) -> Fired | None:
        if not ctx.marketing:
            return None
        state, n = ctx.state, 0
        for feed in self.feeds:         # a loop, not max() over a generator: this runs for every message
            ports = state.get(feed)
            if ports and ports > n:
                n = ports
        value = ramp(n, self.params["low"], self.params["high"])
        return Fired(value, f"template seen on {n} ports in the last hour") if value > 0 else None


class PortSignatures(Signal):
    """Many merchants' signatures through one port within the hour: a resold port (转租端口). A port with a registry
    entry counts only the signatures beyond those registered to it."""
    # Shared platform ports legitimately carry hundreds of merchants, each signature registered (签名报备) to
    # the port: those are expected, and a signature outside the registry fires unregistered_signature anyway.
    name = "port_signatures"
    level = "both"
    reads_registry = True
    feeds = ("port_signatures",)
    defaults = {"low": 10, "high": 30}

    def evaluate(self, ctx: MessageContext) -> Fired | None:
        n = ctx.state.get("port_signatures")
        if not n:
            return None
        registered = ctx.registered_signatures
        beyond = n if registered is None else n - len(registered)
        value = ramp(beyond, self.params["low"], self.params["high"])
        if value <= 0:
            return None
        detail = f"{n} signatures on this port in the last hour"
        return Fired(value, detail if registered is None else f"{detail}, {len(registered)} registered")
