"""Per-recipient signals: frequency caps, identical repeats, and opt-outs.

>>> from detector.events import SmsEvent
>>> from detector.signals.base import MessageContext
>>> ctx = MessageContext(SmsEvent("m", 0, "1069", "r", "x", signature="店"), 0.9, True, True, True, 12, "k", "t", "c")
>>> ctx.state = {"rcpt_optouts": ["1700000000000", None], "rcpt_24h": (1, 3)}
>>> OptedOut().evaluate(ctx), IdenticalContent().evaluate(ctx).value
(Fired(value=1.0, detail='recipient opted out of 店'), 1.0)
"""
from __future__ import annotations

from detector.signals.base import Fired, MessageContext, Signal, ramp


class RecipientFrequency(Signal):
    """One sender (signature, else port) messages one recipient more than a daily cap (Huawei: 50/24 h)."""
    name = "recipient_frequency"
    feeds = ("rcpt_24h",)
    defaults = {"cap_per_day": 50}

    def evaluate(self, ctx: MessageContext) -> Fired | None:
        counts = ctx.state.get("rcpt_24h")
        n = counts[0] if counts else 0
        cap = self.params["cap_per_day"]
        if n <= cap:
            return None
        return Fired(ramp(n, cap, 2 * cap) or 0.5, f"{n} messages to this recipient in 24 h (cap {cap})")


class IdenticalContent(Signal):
    """The same content to one recipient 3+ times in 24 h (Twilio China rejects the third)."""
    name = "identical_content"
    feeds = ("rcpt_24h",)
    defaults = {"max_repeats": 2}

    def evaluate(self, ctx: MessageContext) -> Fired | None:
        counts = ctx.state.get("rcpt_24h")
        n = counts[1] if counts else 0
        if n <= self.params["max_repeats"]:
            return None
        return Fired(1.0, f"identical content {n}x to this recipient in 24 h")


class OptedOut(Signal):
    """Marketing to a recipient who opted out of this signature (or of this port). The policy blocks it."""
    name = "opted_out"
    only_for = "marketing"
    feeds = ("rcpt_optouts",)

    def evaluate(self, ctx: MessageContext) -> Fired | None:
        hits = ctx.state.get("rcpt_optouts")
        if not ctx.marketing or not hits or not any(hits):
            return None
        by_signature = bool(hits[0]) and bool(ctx.event.signature)
        what = ctx.event.signature if by_signature else f"port {ctx.event.port}"
        return Fired(1.0, f"recipient opted out of {what}")
