"""What a signal is: a named, pure function from a message's context (and the state it read) to a value.

Like rspamd's symbols, a signal that fires yields a ``value`` (its strength, 0..1) that the
policy multiplies by the signal's ``weight``. Signals never touch a store: each one names
the state *feeds* it reads (see :mod:`detector.signals.feeds`); the engine builds one op per
feed per message, runs them in one batch and hands every signal the results.

Every signal in :data:`detector.signals.ALL_SIGNALS` passes ``tests/test_signal_contract.py``.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

from detector.events import SmsEvent


@dataclass(slots=True)
class MessageContext:
    """Everything the signals may know about one message; computed once by the engine."""
    event: SmsEvent
    score: float                    # classifier P(spam)
    is_spam: bool                   # score >= the model's threshold
    marketing: bool                 # declared marketing, or looks/scored like it
    has_unsubscribe: bool
    local_hour: int                 # recipient-local hour 0..23
    template_key: str               # texts that differ only in digits/URLs share it
    template_id: str                # short stable hash of template_key
    content_id: str                 # short stable hash of the exact content
    lsh_bands: tuple[str, ...] = ()  # MinHash band keys of the normalised text (near-duplicate buckets); marketing only
    registered_signatures: frozenset[str] | None = None   # None: the port has no registry entry
    explanation: tuple[tuple[str, float], ...] = ()
    lure: str | None = None         # a job-scam lure in the text (detector.signals.content.scam_lure), or None
    is_code: bool = False           # a one-time code: worded as one, not selling; declared "verification" or undeclared
    may_mask: bool = True           # the content may hold a phone-like number to mask for display (privacy.may_mask)
    offer: str | None = None        # a prohibited offer in the text (detector.signals.content.prohibited_offer), or None
    disguised: str | None = None    # a link or number in a disguise (detector.signals.content.disguised_contact), or None
    fake_unsubscribe: str | None = None   # an unsubscribe line that gives no way to refuse (engine._unsubscribe), or None
    state: dict[str, Any] = field(default_factory=dict)   # feed name -> op result (absent when degraded)

    @property
    def compliant_marketing(self) -> bool:
        """Marketing that carries a signature and an unsubscribe method (what the rules ask of it)."""
        return self.marketing and self.has_unsubscribe and bool(self.event.signature)

    @property
    def signature_registered_to_port(self) -> bool:
        """Whether the port has a registry entry (签名报备) and the message's signature is in it.

        >>> ctx = MessageContext(SmsEvent("m", 0, "1069", "r", "x", signature="店"), 0.1, False, True, True, 12, "k",
        ...                      "t", "c")
        >>> ctx.signature_registered_to_port
        False
        >>> ctx.registered_signatures = frozenset({"店"})
        >>> ctx.signature_registered_to_port
        True
        """
        registered = self.registered_signatures
        return registered is not None and bool(self.event.signature) and self.event.signature in registered


@dataclass(frozen=True, slots=True)
class Fired:
    value: float
    detail: str | None = None


class Signal(abc.ABC):
    """One named symbol. Subclasses set ``name``, ``feeds`` and implement :meth:`evaluate`."""

    name: ClassVar[str]
    #: "message": judges this message; "port": judges the port (feeds the port state machine).
    level: ClassVar[str] = "message"
    #: state feeds this signal reads (names in detector.signals.feeds.FEEDS)
    feeds: ClassVar[tuple[str, ...]] = ()
    #: default parameters; the policy file may override them per signal
    defaults: ClassVar[Mapping[str, Any]] = {}
    #: "marketing" / "spam" / "code": never fires unless the context says so (``ctx.marketing`` /
    #: ``ctx.is_spam`` / ``ctx.is_code``), so the engine does not ask it about other messages
    only_for: ClassVar[str | None] = None
    #: judges by the port's signature registry (``ctx.registered_signatures``): skipped, and named in the degraded
    #: reason, when the engine could not read the registry (every port then reads as having no entry)
    reads_registry: ClassVar[bool] = False

    @classmethod
    def may_fire(cls, marketing: bool, spam: bool, code: bool = False) -> bool:
        """False when ``only_for`` rules the signal out for a message of this kind.

        >>> Signal.may_fire(False, False)
        True
        """
        only_for = cls.only_for
        if only_for is None:
            return True
        return marketing if only_for == "marketing" else spam if only_for == "spam" else code

    def __init__(self, params: Mapping[str, Any] | None = None):
        unknown = set(params or {}) - set(self.defaults)
        if unknown:
            from detector.errors import ConfigError
            raise ConfigError(f"signal {self.name}: unknown parameter(s) {', '.join(sorted(unknown))}")
        self.params = {**self.defaults, **(params or {})}

    @abc.abstractmethod
    def evaluate(self, ctx: MessageContext) -> Fired | None:
        """Return :class:`Fired` when the signal fires, else ``None``. Must not raise on missing state."""

    def available(self, ctx: MessageContext) -> bool:
        """False when a feed this signal needs has no result (the store was unreachable)."""
        return all(f in ctx.state for f in self.feeds)


def clamp01(x: float) -> float:
    """Clamp to [0, 1].

    >>> clamp01(1.7), clamp01(-2), clamp01(0.25)
    (1.0, 0.0, 0.25)
    """
    return 0.0 if x < 0 else 1.0 if x > 1 else float(x)


def ramp(x: float, low: float, high: float) -> float:
    """0 at or below ``low``, 1 at or above ``high``, linear between.

    >>> ramp(5, 0, 10), ramp(20, 0, 10), ramp(-1, 0, 10)
    (0.5, 1.0, 0.0)
    """
    if high <= low:
        return 1.0 if x >= high else 0.0
    return clamp01((x - low) / (high - low))
