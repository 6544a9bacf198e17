"""Operator actions on ports, and feedback labels for retraining.

>>> a = port_action("10690001", "throttle", "alice", "双11 burst of 加微信 spam", now_ms=1_000, expires_in_s=600,
...                 rate_limit_per_min=30)
>>> a.state, a.decided_by, a.expires_at_ms, a.rate_limit_per_min
('throttle', 'alice', 601000, 30)
>>> port_action("10690001", "allowlist", "alice", "verified bank port", now_ms=1).reasons[0].signal
'operator_allowlist'
>>> port_action("10690001", "nuke", "alice", "why not", now_ms=1)
Traceback (most recent call last):
...
detector.dashboard.actions.InvalidAction: kind must be one of throttle, block, release, allowlist
>>> rows = dedup_labels([
...     {"label": 1, "content": "加 微信 领红包", "ts": 1}, {"label": 0, "content": "您的验证码是 #", "ts": 2},
...     {"label": 0, "content": "加 微信 领红包", "ts": 3}, {"label": 1, "content": "tab\\there", "ts": 4}])
>>> rows   # sorted by text
[(1, 'tab here'), (0, '加 微信 领红包'), (0, '您的验证码是 #')]
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable

from detector.errors import SmsGuardError
from detector.events import PortAction, canonical_signature, is_port
from detector.policy import operator_action
from detector.privacy import mask_numbers

ACTION_KINDS = ("throttle", "block", "release", "allowlist")
MAX_REASON_CHARS = 500
MAX_EXPIRY_S = 30 * 86_400
# U+0085, U+2028 and U+2029 too: Python's splitlines() breaks lines on them, so readers of the TSV may.
_CONTROL = re.compile(r"[\t\r\n\x00-\x1f\x7f\x85\u2028\u2029]+")
# The "****" mask_numbers puts in a number: after a digit (and a separator) and before one.
_NUMBER_MASK = re.compile(r"(?:(?<=[0-9])|(?<=[0-9][ \-]))\*{4}(?=[ \-]?[0-9])")
#: Far above any port's real rate, and small enough for an int32 field in a gateway written in another language.
MAX_RATE_PER_MIN = 1_000_000


class InvalidAction(SmsGuardError):
    """An operator request that cannot be carried out as given (answered with 400)."""


def port_action(port: str, kind: str, operator: str, reason: str, now_ms: int, expires_in_s: int | None = None,
                rate_limit_per_min: int | None = None, current: PortAction | None = None) -> PortAction:
    """Validate an operator's request (answers for the page) and build it with the policy's own builder."""
    if kind not in ACTION_KINDS:
        raise InvalidAction(f"kind must be one of {', '.join(ACTION_KINDS)}")
    reason = (reason or "").strip()
    if not reason:
        raise InvalidAction("a reason is required")
    if len(reason) > MAX_REASON_CHARS:
        raise InvalidAction(f"reason is longer than {MAX_REASON_CHARS} characters")
    check_port(port)
    if expires_in_s is not None and not 0 < expires_in_s <= MAX_EXPIRY_S:
        raise InvalidAction(f"expires_in_s must be between 1 and {MAX_EXPIRY_S}")
    if rate_limit_per_min is not None and (kind != "throttle" or not 0 <= rate_limit_per_min <= MAX_RATE_PER_MIN):
        raise InvalidAction(f"rate_limit_per_min is a rate from 0 to {MAX_RATE_PER_MIN:,} and only for throttle")
    return operator_action(port, kind, operator, reason, now_ms, expires_in_s=expires_in_s,
                           rate_limit_per_min=rate_limit_per_min, current=current)


def check_port(port: Any) -> str:
    """The port, if it is one by the event contract's rule (3-24 ASCII digits, nothing after them).

    >>> check_port("10690001")
    '10690001'
    >>> check_port("10690001\\n")
    Traceback (most recent call last):
    ...
    detector.dashboard.actions.InvalidAction: port must be 3-24 digits, not '10690001\\n'
    """
    if not isinstance(port, str) or not is_port(port):
        raise InvalidAction(f"port must be 3-24 digits, not {str(port)[:40]!r}")
    return port


def signature_entry(port: Any, signatures: Any) -> list[str]:
    """A port's signature registry entry as an operator or a registry file gives it, checked: the signatures
    in one spelling (:func:`~detector.events.canonical_signature`). A signature that is nothing but brackets is refused: it
    would register the port with no signature, and every message of the port would be unregistered.

    >>> signature_entry("10690801", ["【京东】", " 京东到家 ", "［ＪＤ］"])
    ['京东', '京东到家', 'JD']
    >>> signature_entry("10690801", "京东")
    Traceback (most recent call last):
    ...
    detector.dashboard.actions.InvalidAction: port 10690801: signatures must be a list of strings, not str
    """
    check_port(port)
    if not isinstance(signatures, list) or not all(isinstance(s, str) for s in signatures):
        raise InvalidAction(f"port {port}: signatures must be a list of strings, not {type(signatures).__name__}")
    clean = [canonical_signature(s) for s in signatures]     # the spelling events' signatures are compared in
    if not clean:
        raise InvalidAction(f"port {port}: at least one signature is needed")
    if not all(clean):
        raise InvalidAction(f"port {port}: every signature needs text besides its brackets and spaces")
    return clean


def feedback_record(msg_id: str, label: int, content: str, who: str, ts_ms: int,
                    source: str = "operator") -> dict[str, Any]:
    """One record of ``sms.feedback``; the content is masked again so no number reaches training data.

    >>> feedback_record("m1", 1, "加V 13812345678", "alice", 5)["content"]
    '加V 138****5678'
    """
    if label not in (0, 1):
        raise InvalidAction("label must be 0 (normal) or 1 (spam)")
    if source not in ("operator", "complaint"):
        raise InvalidAction("source must be operator or complaint")
    return {"v": 1, "type": "feedback", "msg_id": msg_id, "label": label, "content": mask_numbers(content),
            "who": who, "ts": ts_ms, "source": source}


def training_text(content: str) -> str:
    """A text as the training format wants it: no tabs, newlines or control characters, trimmed, numbers masked
    (:func:`~detector.privacy.mask_numbers`), and each masked middle written as the corpus masks digits, with ``x``.

    The normaliser reads ``x`` runs as digits, so ``138xxxx5678`` is a phone number to the model as the served
    message's ``13812345678`` was; ``138****5678`` was read as ``0****0``.

    >>> training_text("致电138****5678 或 +86 138 **** 5678、010-62345678，尾号****1234")
    '致电138xxxx5678 或 +86 138 xxxx 5678、010-xxxx5678，尾号****1234'
    """
    # masked again: a record on the topic from an older dashboard, or another producer, may hold a number as sent
    return _NUMBER_MASK.sub("xxxx", mask_numbers(_CONTROL.sub(" ", content))).strip()


def dedup_labels(records: Iterable[dict[str, Any]]) -> list[tuple[int, str]]:
    """``(label, text)`` rows, one per distinct text; the latest label (by ``ts``) wins. Sorted by text."""
    latest: dict[str, tuple[Any, int, int]] = {}
    for order, record in enumerate(records):
        text = training_text(str(record.get("content") or ""))
        label = record.get("label")
        if not text or label not in (0, 1):
            continue
        key = (record.get("ts") or 0, order)
        if text not in latest or key >= latest[text][:2]:
            latest[text] = (*key, label)
    return sorted(((label, text) for text, (_, _, label) in latest.items()), key=lambda row: row[1])


def write_labels_tsv(rows: Iterable[tuple[int, str]], path: str | Path) -> int:
    """Write ``label<TAB>text`` lines (the format of ../shared/data/sms_zh); return how many."""
    count = 0
    with Path(path).open("w", encoding="utf-8", newline="\n") as fh:
        for label, text in rows:
            fh.write(f"{label}\t{text}\n")
            count += 1
    return count
