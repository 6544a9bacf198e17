"""Volume against the sender's own baseline: bursts per port, service provider and signature.

A burst needs history: a port seen for fewer than ``warmup_minutes`` has no baseline
to burst against (new ports are judged by spam share and fan-out instead).

>>> from detector.events import SmsEvent
>>> from detector.signals.base import MessageContext
>>> ctx = MessageContext(SmsEvent("m", 0, "1069", "r", "x"), 0.0, False, False, False, 12, "k", "t", "c")
>>> ctx.state = {"port_rate": (300, 900, 4000), "port_baseline": (20.0, 16.0, 120, 300)}
>>> PortBurst().evaluate(ctx)
Fired(value=1.0, detail='300/min vs baseline 20.0/min')
>>> ctx.state["port_baseline"] = (20.0, 16.0, 5, 300)    # still warming up
>>> PortBurst().evaluate(ctx) is None
True
"""
from __future__ import annotations

import math

from detector.signals.base import Fired, MessageContext, Signal, ramp


class _Burst(Signal):
    rate_feed: str
    baseline_feed: str
    defaults = {"warmup_minutes": 30, "ratio_low": 3.0, "ratio_high": 10.0, "min_per_min": 30, "min_z": 3.0}

    def evaluate(self, ctx: MessageContext) -> Fired | None:
        rate, base = ctx.state.get(self.rate_feed), ctx.state.get(self.baseline_feed)
        if rate is None or base is None:
            return None
        per_min = rate[0]
        mean, var, seen, _ = base
        p = self.params
        if seen < p["warmup_minutes"] or per_min < p["min_per_min"]:
            return None
        z = (per_min - mean) / math.sqrt(var + mean + 1.0)
        if z < p["min_z"]:
            return None
        value = ramp(per_min / (mean + 1.0), p["ratio_low"], p["ratio_high"])
        return Fired(value, f"{per_min}/min vs baseline {mean:.1f}/min") if value > 0 else None


class PortBurst(_Burst):
    """The port sends far above its own per-minute baseline (EWMA of rate and variance)."""
    name = "port_burst"
    level = "port"
    feeds = ("port_rate", "port_baseline")
    rate_feed, baseline_feed = feeds


class ProviderBurst(_Burst):
    """The service provider's ports together send far above their baseline."""
    name = "provider_burst"
    feeds = ("sp_rate", "sp_baseline")
    rate_feed, baseline_feed = feeds


class SignatureBurst(_Burst):
    """The merchant signature is sent far above its baseline (across all its ports)."""
    name = "signature_burst"
    feeds = ("sig_rate", "sig_baseline")
    rate_feed, baseline_feed = feeds
