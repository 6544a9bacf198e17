"""The append-only audit log of operator actions: one JSON object a line, fsync'd before the call returns.

>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "audit.jsonl")
>>> log = AuditLog(path)
>>> entry = log.append({"operator": "alice", "action": "block", "port": "10690001", "reason": "fraud"}, now_ms=1)
>>> entry["at_ms"], [e["action"] for e in log.recent()]
(1, ['block'])
"""
from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from detector.errors import SmsGuardError
from detector.events import format_ts


class AuditError(SmsGuardError):
    """The audit log could not be written; the action it would record must not be reported as done."""


class AuditLog:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock = threading.Lock()

    def append(self, entry: dict[str, Any], now_ms: int | None = None) -> dict[str, Any]:
        """Write ``entry`` with its time and return it as written. Raises :class:`AuditError`."""
        at_ms = int(time.time() * 1000) if now_ms is None else now_ms
        record = {"at": format_ts(at_ms), "at_ms": at_ms, **entry}
        line = json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"
        try:
            with self._lock:
                if self.path.parent != Path(""):
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
                try:
                    os.write(fd, line.encode("utf-8"))
                    os.fsync(fd)
                finally:
                    os.close(fd)
        except OSError as exc:
            raise AuditError(f"audit log {self.path}: {exc.strerror or exc}") from exc
        return record

    def recent(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` entries, newest first (a torn last line is skipped)."""
        if not self.path.exists():
            return []
        tail: deque[dict[str, Any]] = deque(maxlen=limit)
        with self.path.open(encoding="utf-8") as fh:
            for line in fh:
                try:
                    tail.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return list(reversed(tail))
