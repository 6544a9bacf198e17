"""Structured logging: one JSON object a line by default, ``SMSGUARD_LOG_FORMAT=text`` for people.

Components use the standard library through :func:`get_logger` and pass structured fields
with ``extra=``; the message is a constant phrase so the lines can be grouped and counted::

    log = get_logger(__name__)
    log.info("batch scored", extra={"size": 500, "ms": 12.5})
    log.debug("template %s scored %.3f", key, score)   # %-args: formatted only if DEBUG is on

>>> import io
>>> stream = io.StringIO()
>>> handler = make_handler("json", stream)
>>> logger = logging.getLogger("smsguard.doctest")
>>> logger.addHandler(handler); logger.setLevel(logging.INFO); logger.propagate = False
>>> logger.info("port flagged", extra={"port": "10690001", "score": 0.97})
>>> line = json.loads(stream.getvalue())
>>> line["level"], line["logger"], line["msg"], line["port"], line["score"]
('INFO', 'smsguard.doctest', 'port flagged', '10690001', 0.97)
>>> logger.removeHandler(handler)

Arguments are formatted only when a record is emitted, so a disabled DEBUG call costs a
level check:

>>> class Expensive:
...     formatted = 0
...     def __str__(self):
...         Expensive.formatted += 1
...         return "expensive"
>>> logger.debug("details %s", Expensive())
>>> Expensive.formatted
0

The text format puts the extra fields after the message:

>>> TextFormatter().format(logging.makeLogRecord(
...     {"name": "w", "levelname": "INFO", "msg": "batch scored", "size": 500})).split(" ", 2)[2]
'INFO w: batch scored size=500'
"""
from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import IO, Any

from detector.errors import ConfigError

FORMATS = ("json", "text")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
_HANDLER_MARK = "_smsguard_handler"


def get_logger(name: str) -> logging.Logger:
    """A standard :class:`logging.Logger`; configure output once with :func:`configure_logging`."""
    return logging.getLogger(name)


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRS and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", ...extra fields, "exc"?}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _extras(record).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``2026-11-22 13:00:00,123 INFO detector.worker: batch scored size=500 ms=12.5``"""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        if not fields:
            return line
        head, sep, trace = line.partition("\n")   # keep fields on the first line, before a traceback
        return f"{head} {fields}{sep}{trace}"


def make_handler(fmt: str, stream: IO[str] | None = None) -> logging.Handler:
    if fmt not in FORMATS:
        raise ConfigError(f"SMSGUARD_LOG_FORMAT: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    setattr(handler, _HANDLER_MARK, True)
    return handler


def configure_logging(settings: Any, stream: IO[str] | None = None) -> logging.Handler:
    """Send every log record to stderr (or ``stream``) in SMSGUARD_LOG_FORMAT at SMSGUARD_LOG_LEVEL.

    Idempotent: calling it again replaces the handler it installed before, and leaves
    handlers that others (pytest, faust) installed alone.

    >>> import io
    >>> from detector.settings import Settings
    >>> root_level, out = logging.getLogger().level, io.StringIO()
    >>> env = {"SMSGUARD_LOG_FORMAT": "text", "SMSGUARD_LOG_LEVEL": "warning"}
    >>> handler = configure_logging(Settings.from_env(env), out)
    >>> handler is configure_logging(Settings.from_env(env), out)   # replaced, not stacked
    False
    >>> get_logger("smsguard.x").info("hidden"); get_logger("smsguard.x").warning("shown", extra={"n": 1})
    >>> out.getvalue().split(": ", 1)[1]
    'shown n=1\\n'
    >>> configure_logging(Settings.from_env({"SMSGUARD_LOG_FORMAT": "xml"}))
    Traceback (most recent call last):
    ...
    detector.errors.ConfigError: SMSGUARD_LOG_FORMAT: expected one of json, text, got 'xml'
    >>> for h in [h for h in logging.getLogger().handlers if getattr(h, _HANDLER_MARK, False)]:
    ...     logging.getLogger().removeHandler(h)
    >>> logging.getLogger().setLevel(root_level)
    """
    level = str(settings.log_level).upper()
    if level not in LEVELS:
        raise ConfigError(f"SMSGUARD_LOG_LEVEL: expected one of {', '.join(LEVELS)}, got {settings.log_level!r}")
    handler = make_handler(str(settings.log_format).lower(), stream)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
