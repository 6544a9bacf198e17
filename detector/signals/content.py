"""Signals about the message text itself: the classifier, unsubscribe text, quiet hours, compliance.

>>> from detector.events import SmsEvent
>>> from detector.signals.base import MessageContext
>>> ev = SmsEvent("m", 0, "1069", "r", "【店】大促", signature="店", category="marketing")
>>> night = MessageContext(ev, 0.97, True, True, False, 23, "k", "t", "c")
>>> QuietHours().evaluate(night), MissingUnsubscribe().evaluate(night).value
(Fired(value=1.0, detail='marketing at 23:00 local'), 1.0)
>>> ContentSpam().evaluate(night).value
0.97
"""
from __future__ import annotations

from detector.signals.base import Fired, MessageContext, Signal


class ContentSpam(Signal):
    """The classifier says spam (value = its probability); detail names the tokens that pushed it."""
    name = "content_spam"
    only_for = "spam"

    def evaluate(self, ctx: MessageContext) -> Fired | None:
        if not ctx.is_spam:
            return None
        detail = ", ".join(f"{tok}:{w:+.2f}" for tok, w in ctx.explanation[:5]) or None
        return Fired(ctx.score, detail)


class MissingUnsubscribe(Signal):
    """Marketing without a way to refuse (回T退订, 拒收请回复R …): the rules require one."""
    name = "missing_unsubscribe"
    only_for = "marketing"

    def evaluate(self, ctx: MessageContext) -> Fired | None:
        if ctx.marketing and not ctx.has_unsubscribe:
            return Fired(1.0)
        return None


class QuietHours(Signal):
    """Marketing sent in the recipient's quiet hours (default 21:00–08:00 local)."""
    name = "quiet_hours"
    only_for = "marketing"
    defaults = {"start_hour": 21, "end_hour": 8}

    def in_quiet_hours(self, hour: int) -> bool:
        start, end = self.params["start_hour"], self.params["end_hour"]
        return (hour >= start or hour < end) if start > end else start <= hour < end

    def evaluate(self, ctx: MessageContext) -> Fired | None:
        if ctx.marketing and self.in_quiet_hours(ctx.local_hour):
            return Fired(1.0, f"marketing at {ctx.local_hour:02d}:00 local")
        return None


class CompliantMarketing(Signal):
    """Marketing that names its sender and offers unsubscribe (a negative weight: it lowers the risk)."""
    name = "compliant_marketing"
    only_for = "marketing"

    def evaluate(self, ctx: MessageContext) -> Fired | None:
        return Fired(1.0) if ctx.compliant_marketing else None
