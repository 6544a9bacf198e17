"""Every signal smsguard knows, by name. The policy file gives each its weights and parameters."""
from detector.signals.base import Fired, MessageContext, Signal
from detector.signals.compliance import UnregisteredSignature
from detector.signals.content import (CompliantMarketing, ContentSpam, DeclaredCodeMismatch, DisguisedContact,
                                      FakeUnsubscribe, MissingUnsubscribe, ProhibitedOffer, QuietHours, ScamLure)
from detector.signals.fanout import PortSignatures, SpamFanout, TemplatePorts, TemplateRecipients
from detector.signals.port_health import ComplaintRate, NoncompliantMarketing, OptoutViolations, SpamShare
from detector.signals.recipient import (CodeFlood, IdenticalContent, MarketingFrequency, OptedOut,
                                        RecipientFrequency)
from detector.signals.volume import PortBurst, ProviderBurst, SignatureBurst

ALL_SIGNALS: dict[str, type[Signal]] = {cls.name: cls for cls in (
    ContentSpam, ScamLure, ProhibitedOffer, DisguisedContact, MissingUnsubscribe, FakeUnsubscribe,
    DeclaredCodeMismatch, QuietHours, CompliantMarketing,
    PortBurst, ProviderBurst, SignatureBurst,
    SpamFanout, TemplateRecipients, TemplatePorts, PortSignatures,
    RecipientFrequency, MarketingFrequency, IdenticalContent, CodeFlood, OptedOut,
    UnregisteredSignature,
    SpamShare, NoncompliantMarketing, ComplaintRate, OptoutViolations,
)}

__all__ = ["ALL_SIGNALS", "Fired", "MessageContext", "Signal"]
