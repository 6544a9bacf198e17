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


class _KindPerDay(Signal):
    """A daily count by the message's kind, rcpt_24h's third (feeds._recipient_day: codes from every sender, or
    marketing through the port under any signature not registered to it), ramped from ``low`` to ``high``."""
    feeds = ("rcpt_24h",)

    def counted(self, ctx: MessageContext) -> bool:
        """Whether the message is of the kind counted."""
        raise NotImplementedError

    def detail(self, n: int, ctx: MessageContext) -> str:
        raise NotImplementedError

    def evaluate(self, ctx: MessageContext) -> Fired | None:
        counts = ctx.state.get("rcpt_24h")
        if not counts or len(counts) < 3:
            return None
        n, low = counts[2], self.params["low"]
        if n <= low or not self.counted(ctx):      # the count first: most messages are under it
            return None
        return Fired(ramp(n, low, self.params["high"]), self.detail(n, ctx))


class MarketingFrequency(_KindPerDay):
    """Marketing through one port to one recipient, under any signatures not registered to the port, more than a
    daily cap: a port rotating signatures stays under recipient_frequency's per-signature cap. Codes, notices and
    marketing under a signature registered to the port are not counted.

    The value ramps from ``low`` marketing messages in 24 h (Tencent's default: 10 a day per number) to ``high``
    (Huawei's 50 a day per number). Codes are judged by code_flood instead: a user retrying a login gets
    several, and they are not counted here. Notices are left out too: a bank's or a monitoring service's alerts
    reach one number dozens of times a day through one port, and recipient_frequency still caps each sender. So
    are the merchants registered to a port (签名报备): a shared platform port carries many merchants' ads, and the
    platforms' caps are per customer account, not per port; recipient_frequency caps each of them. A port with no
    registry entry has all its marketing counted, signed or not.

    >>> from detector.events import SmsEvent
    >>> ctx = MessageContext(SmsEvent("m", 0, "1069", "r", "x", signature="店"), 0.1, False, True, True, 12, "k", "t",
    ...                      "c")
    >>> ctx.state = {"rcpt_24h": (10, 1, 50)}
    >>> MarketingFrequency().evaluate(ctx)
    Fired(value=1.0, detail='50 marketing messages through port 1069 to this recipient in 24 h, any signature (cap 10)')
    >>> ctx.state = {"rcpt_24h": (10, 1, 10)}
    >>> MarketingFrequency().evaluate(ctx) is None
    True
    >>> ctx.registered_signatures, ctx.state = frozenset({"京东"}), {"rcpt_24h": (10, 1, 30)}
    >>> MarketingFrequency().evaluate(ctx).detail
    '30 marketing messages through port 1069 to this recipient in 24 h, unregistered signatures (cap 10)'
    >>> ctx.registered_signatures, ctx.state = frozenset({"店"}), {"rcpt_24h": (10, 1)}   # registered: not counted
    >>> MarketingFrequency().evaluate(ctx) is None
    True
    """
    name = "marketing_frequency"
    only_for = "marketing"
    reads_registry = True
    defaults = {"low": 10, "high": 50}

    def counted(self, ctx: MessageContext) -> bool:
        return ctx.marketing and not ctx.is_code and not ctx.signature_registered_to_port

    def detail(self, n: int, ctx: MessageContext) -> str:
        signatures = "any signature" if ctx.registered_signatures is None else "unregistered signatures"
        return (f"{n} marketing messages through port {ctx.event.port} to this recipient in 24 h, {signatures} "
                f"(cap {self.params['low']})")


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


class CodeFlood(_KindPerDay):
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
    defaults = {"low": 10, "high": 30}

    def counted(self, ctx: MessageContext) -> bool:
        return ctx.is_code

    def detail(self, n: int, ctx: MessageContext) -> str:
        return f"{n} one-time codes to this recipient in 24 h, from all senders"


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
