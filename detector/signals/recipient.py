"""Per-recipient signals: frequency caps, identical repeats, floods of one-time codes, and opt-outs.

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


class CodeFlood(Signal):
    """One-time codes pour into one number from any senders (SMS bombing, 短信轰炸): more than a platform's daily cap.

    Bombing tools submit a victim's number to many sites' login and sign-up forms, so each site sends a
    legitimate-looking code. No one port or sender stands out (each stays under its own caps), but the
    victim's number receives far more codes in a day than a person asks for: Alibaba Cloud caps codes at 10
    per number per day. The value ramps from ``low`` codes in 24 h to ``high``; only the codes are judged,
    and never the ports that carry them (their owners are abused too).

    >>> from detector.events import SmsEvent
    >>> ctx = MessageContext(SmsEvent("m", 0, "1069", "r", "x"), 0.0, False, False, False, 12, "k", "t", "c",
    ...                      is_code=True)
    >>> ctx.state = {"rcpt_24h": (3, 1, 30)}
    >>> CodeFlood().evaluate(ctx)
    Fired(value=1.0, detail='30 one-time codes to this recipient in 24 h, from all senders')
    >>> ctx.state = {"rcpt_24h": (3, 1, 10)}
    >>> CodeFlood().evaluate(ctx) is None
    True
    """
    name = "code_flood"
    only_for = "code"
    feeds = ("rcpt_24h",)
    defaults = {"low": 10, "high": 30}

    def evaluate(self, ctx: MessageContext) -> Fired | None:
        counts = ctx.state.get("rcpt_24h")
        if not ctx.is_code or not counts or len(counts) < 3:
            return None
        n, low = counts[2], self.params["low"]
        if n <= low:
            return None
        return Fired(ramp(n, low, self.params["high"]), f"{n} one-time codes to this recipient in 24 h, from all senders")


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
