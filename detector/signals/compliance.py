"""Registry compliance: a port sending under a signature it has not registered (签名报备).

A port with no registry entry is not penalised: the registry is opt-in per port.

>>> from detector.events import SmsEvent
>>> from detector.signals.base import MessageContext
>>> ctx = MessageContext(SmsEvent("m", 0, "1069", "r", "x", signature="淘宝"), 0.1, False, False, False, 12, "k", "t", "c")
>>> UnregisteredSignature().evaluate(ctx) is None
True
>>> ctx.registered_signatures = frozenset({"京东"})
>>> UnregisteredSignature().evaluate(ctx).detail
"signature '淘宝' not registered for port 1069"
"""
from __future__ import annotations

from detector.signals.base import Fired, MessageContext, Signal


class UnregisteredSignature(Signal):
    """The port has a registry entry and this message's signature is not in it (or has none)."""
    name = "unregistered_signature"
    level = "both"
    reads_registry = True

    def evaluate(self, ctx: MessageContext) -> Fired | None:
        if ctx.registered_signatures is None or ctx.signature_registered_to_port:
            return None
        sig = ctx.event.signature
        detail = f"signature {sig!r} not registered for port {ctx.event.port}" if sig else "no signature"
        return Fired(1.0, detail)
