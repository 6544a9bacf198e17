"""The one root exception. Components raise subclasses; only the edges (CLI, worker loop, HTTP handlers) catch."""


class SmsGuardError(Exception):
    """Root of every error smsguard raises on purpose."""


class ConfigError(SmsGuardError):
    """A setting or config file is missing or wrong."""


class InvalidEvent(SmsGuardError):
    """An input event breaks the contract; the message is the reason written to the dead-letter topic."""


class ModelError(SmsGuardError):
    """A model artifact is missing, corrupted, tampered with or unsafe to load."""


class StateUnavailable(SmsGuardError):
    """The state store (Redis) cannot be reached; signals that need it are marked degraded."""


class ServiceError(SmsGuardError):
    """A local service (broker, Redis) could not be started or stopped."""
