"""Port-level health: spam share, complaints per 10k messages, opt-out violations.

>>> from detector.events import SmsEvent
>>> from detector.signals.base import MessageContext
>>> ctx = MessageContext(SmsEvent("m", 0, "1069", "r", "x"), 0.9, True, True, False, 12, "k", "t", "c")
>>> ctx.state = {"port_rate": (10, 100, 300), "port_spam": (360,), "port_day": (2000,), "port_complaints": (12,)}
>>> SpamShare().evaluate(ctx).value, ComplaintRate().evaluate(ctx).detail
(1.0, '12 complaints in 24 h = 60.0 per 10k messages')
"""
from __future__ import annotations

from detector.signals.base import Fired, MessageContext, Signal, ramp
from detector.signals.fanout import noncode_spam_share, recent_share, spam_share


class SpamShare(Signal):
    """Share of the port's last 10 minutes scored spam or caught by scam_lure (compliant marketing counts a
    quarter); of its last hour when it sent fewer than min_volume in 10 minutes but that many in the hour. A port
    that also sends one-time codes is judged on its other messages too, whichever share is higher: codes do not
    dilute spam."""
    name = "spam_share"
    level = "port"
    feeds = ("port_rate", "port_spam", "port_codes", "port_code_spam")
    defaults = {"low": 0.2, "high": 0.7, "min_volume": 20}

    def evaluate(self, ctx: MessageContext) -> Fired | None:
        min_volume = self.params["min_volume"]
        share, window = spam_share(ctx, min_volume)
        beside_codes, codes_window = noncode_spam_share(ctx, min_volume)
        detail = "spam"
        if beside_codes > share:    # red team #6: 1 spam in 5, the rest codes, is no 20% spam port
            share, window, detail = beside_codes, codes_window, "spam, codes aside"
        value = ramp(share, self.params["low"], self.params["high"])
        return Fired(value, f"{share:.0%} of the last {window} {detail}") if value > 0 else None


class NoncompliantMarketing(Signal):
    """Share of the port's last 10 minutes that was marketing without a signature or an unsubscribe method, spam
    aside (spam_share counts it): a blast of unwanted marketing that the classifier does not call spam."""
    name = "noncompliant_marketing"
    level = "port"
    feeds = ("port_rate", "port_noncompliant")
    defaults = {"low": 0.2, "high": 0.6, "min_volume": 20}

    def evaluate(self, ctx: MessageContext) -> Fired | None:
        share, window = recent_share(ctx.state.get("port_rate"), ctx.state.get("port_noncompliant"),
                                     self.params["min_volume"])
        value = ramp(share, self.params["low"], self.params["high"])
        return Fired(value, f"{share:.0%} of the last {window} marketing without signature or unsubscribe") \
            if value > 0 else None


def complaint_value(complaints: int, day_volume: int, params: dict) -> Fired | None:
    """Complaints per 10k messages over 24 h; small ports count as ``volume_floor`` messages."""
    if complaints < params["min_complaints"]:
        return None
    per_10k = complaints * 10_000 / max(day_volume, params["volume_floor"])
    value = ramp(per_10k, params["low_per_10k"], params["high_per_10k"])
    if value <= 0:
        return None
    return Fired(value, f"{complaints} complaints in 24 h = {per_10k:.1f} per 10k messages")


class ComplaintRate(Signal):
    """Complaints (e.g. from the 12321 centre) per 10k messages of the port over 24 h."""
    name = "complaint_rate"
    level = "port"
    feeds = ("port_day", "port_complaints")
    defaults = {"min_complaints": 3, "low_per_10k": 2.0, "high_per_10k": 20.0, "volume_floor": 1000}

    def evaluate(self, ctx: MessageContext) -> Fired | None:
        day, cmp = ctx.state.get("port_day"), ctx.state.get("port_complaints")
        if day is None or cmp is None:
            return None
        return complaint_value(cmp[0], day[0], self.params)


class OptoutViolations(Signal):
    """The port keeps sending marketing to people who opted out (blocked messages in the last hour)."""
    name = "optout_violations"
    level = "port"
    feeds = ("port_optout_hits",)
    defaults = {"low": 0, "high": 20}

    def evaluate(self, ctx: MessageContext) -> Fired | None:
        n = (ctx.state.get("port_optout_hits") or (0,))[0]
        value = ramp(n, self.params["low"], self.params["high"])
        return Fired(value, f"{n} messages to opted-out recipients in the last hour") if value > 0 else None
