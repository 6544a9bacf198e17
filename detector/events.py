r"""The event contract (schema version 1): parse inputs, build outputs. ``docs/events.md`` documents it.

Parsing is hand-written rather than pydantic because it runs on every message; each
rejection raises :class:`InvalidEvent` whose message is the dead-letter reason.

>>> p = EventParser(RecipientHasher("k" * 16))
>>> e = p.parse_sms(b'{"msg_id": "m1", "ts": "2024-11-11T20:00:00+08:00", "port": "10690001",'
...                 b' "recipient": "13812345678", "content": "\\u3010\\u4eac\\u4e1c\\u3011\\u4f60\\u597d"}')
>>> e.ts_ms, e.signature, e.recipient.startswith("r_")
(1731326400000, '京东', True)
>>> p.parse_sms(b'{"msg_id": "m1", "ts": 1, "port": "1069"}')
Traceback (most recent call last):
...
detector.errors.InvalidEvent: missing required field(s): content, recipient
"""
from __future__ import annotations

import base64
import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timezone
from sys import intern
from typing import Any

import orjson

from detector.errors import InvalidEvent
from detector.privacy import RecipientHasher, mask_numbers, scrub_msisdns
from detector.textnorm import INVISIBLE, INVISIBLE_CHARS, to_simplified

SCHEMA_VERSION = 1

# Topic base names; Settings.topic() adds the configured prefix.
TOPIC_OUTBOUND = "sms.outbound"
TOPIC_OPTOUTS = "sms.optouts"
TOPIC_COMPLAINTS = "sms.complaints"
TOPIC_DECISIONS = "sms.decisions"
TOPIC_PORT_ACTIONS = "sms.port-actions"
TOPIC_DEAD_LETTER = "sms.dead-letter"
TOPIC_FEEDBACK = "sms.feedback"

CATEGORIES = ("verification", "notification", "marketing")
_CATEGORY_SET = frozenset(CATEGORIES)
ACTIONS = ("allow", "flag", "block")
PORT_STATES = ("normal", "watch", "throttle", "block")
OPTOUT_KEYWORDS = ("T", "TD", "退订", "R", "N", "0000", "STOP", "QX", "取消")

# 【京东】 as the rules write it, and the brackets senders use instead: [京东], full-width ［京东］, 〖京东〗; spaces and
# invisible characters (zero-width, BOM, bidi marks: a known dodge) around them do not hide them
_GAP = rf"[\s{INVISIBLE_CHARS}]*"
_BRACKETED = r"[【\[［〖]([^】\]］〗]{2,16})[】\]］〗]"
_LEADING_SIGNATURE = re.compile(rf"{_GAP}{_BRACKETED}")       # at the start (match) ...
_TRAILING_SIGNATURE = re.compile(rf"{_BRACKETED}{_GAP}$")     # ... or at the end (search)
_TRAILING_GAP = re.compile(rf"{_GAP}$")
_CLOSING_BRACKETS = frozenset("】]］〗")
_SIGNATURE_BRACKETS = "【】[]［］〖〗 \u3000"
# Matched whole (fullmatch): with match, "$" also matched before a final newline, and "10690001\n" was a port of
# its own, with no state.
_PORT = re.compile(r"[0-9]{3,24}")
_MSISDN = re.compile(r"\+?[0-9][0-9\- ]{4,22}")
_MSG_ID = re.compile(r"[\x21-\x7e]{1,128}")


def is_port(value: str) -> bool:
    """``_PORT.fullmatch(value)``, without the regex engine (every event has a port).

    >>> is_port("10690001"), is_port("10690001\\n"), is_port("١٠٦٩"), is_port("12")
    (True, False, False, False)
    """
    return 3 <= len(value) <= 24 and value.isascii() and value.isdigit()


def _is_msg_id(value: str) -> bool:
    """``_MSG_ID.fullmatch(value)`` (printable ASCII without the space), without the regex engine.

    >>> _is_msg_id("sim-1:a/b"), _is_msg_id("m 1"), _is_msg_id("m1\\n"), _is_msg_id("")
    (True, False, False, False)
    """
    return 0 < len(value) <= 128 and value.isascii() and value.isprintable() and " " not in value


_MIN_TS_MS = 946_684_800_000      # 2000-01-01: anything earlier is a unit mistake
_MAX_TS_MS = 4_102_444_800_000    # 2100-01-01


_SECOND_PREFIX: dict[int, str] = {}


def format_ts(ts_ms: int) -> str:
    """Epoch milliseconds as RFC 3339 UTC.

    >>> format_ts(1731326400000), format_ts(1731326400042), format_ts(-1)
    ('2024-11-11T12:00:00.000Z', '2024-11-11T12:00:00.042Z', '1969-12-31T23:59:59.999Z')
    """
    seconds, ms = divmod(ts_ms, 1000)
    prefix = _SECOND_PREFIX.get(seconds)
    if prefix is None:      # every decision carries a timestamp, and a batch's events share their seconds
        if len(_SECOND_PREFIX) > 8192:
            _SECOND_PREFIX.clear()
        prefix = _SECOND_PREFIX[seconds] = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{prefix}.{ms:03d}Z"


def to_json(record: dict[str, Any]) -> bytes:
    """One output record as compact UTF-8 JSON (decisions, port actions, dead letters).

    >>> to_json({"port": "1069", "content": "验证码", "score": 0.5})
    b'{"port":"1069","content":"\xe9\xaa\x8c\xe8\xaf\x81\xe7\xa0\x81","score":0.5}'
    """
    return orjson.dumps(record)


def parse_ts(value: Any) -> int:
    """RFC 3339 with an offset, or epoch milliseconds, to epoch milliseconds.

    >>> parse_ts("2024-11-11T12:00:00Z"), parse_ts(1731326400000)
    (1731326400000, 1731326400000)
    >>> parse_ts("2024-11-11 12:00:00")
    Traceback (most recent call last):
    ...
    detector.errors.InvalidEvent: ts: RFC 3339 timestamp needs an offset (Z or +08:00)
    """
    if isinstance(value, bool):
        raise InvalidEvent("ts: expected RFC 3339 string or epoch milliseconds, got bool")
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        ts_ms = int(value)
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("z", "Z"))
        except ValueError:
            raise InvalidEvent(f"ts: not an RFC 3339 timestamp: {value[:40]!r}") from None
        if parsed.tzinfo is None:
            raise InvalidEvent("ts: RFC 3339 timestamp needs an offset (Z or +08:00)")
        ts_ms = int(parsed.timestamp() * 1000)
    else:
        raise InvalidEvent(f"ts: expected RFC 3339 string or epoch milliseconds, got {type(value).__name__}")
    if not _MIN_TS_MS <= ts_ms <= _MAX_TS_MS:
        raise InvalidEvent(f"ts: {ts_ms} ms is outside 2000..2100 (seconds instead of milliseconds?)")
    return ts_ms


def signature_from_content(content: str) -> str | None:
    """The merchant signature in a leading or trailing 【…】 (or [...], ［…］, 〖…〗), as :func:`canonical_signature`.

    >>> signature_from_content("【京东】您的订单已发货"), signature_from_content("验证码1234【阿里云】")
    ('京东', '阿里云')
    >>> signature_from_content("〖ＪＤ〗双11大促"), signature_from_content("没有签名") is None
    ('JD', True)
    """
    # one pattern, ^(leading)|(trailing)$, searched as its two halves (a property test holds them to it)
    matched, leading = _leading_signature(content)
    return leading if matched else _trailing_signature(content)


def signature_of(content: str, declared: str | None) -> str | None:
    """The signature of a message: the one its recipient sees (:func:`signature_from_content`) over the declared
    field, which names messages whose signature the gateway adds later; but the declared one when the text
    ends with it and opens with another bracket (【温馨提示】…【京东】, 【EBM141024001】…【工商银行】).

    >>> signature_of("【淘宝】双11大促", "京东"), signature_of("双11大促", "【京东】"), signature_of("【温馨提示】账单已出【京东】", "京东")
    ('淘宝', '京东', '京东')
    """
    matched, found = _leading_signature(content)
    if not matched:
        found = _trailing_signature(content)
    if found is None or declared is None:
        return found if found is not None else canonical_signature(declared)
    declared = canonical_signature(declared)
    if not matched or declared is None or declared == found:
        return found
    return declared if _trailing_signature(content) == declared else found


def _leading_signature(content: str) -> tuple[bool, str | None]:
    """(whether the text opens with a bracketed 2-16 characters, their canonical signature)."""
    if content[:1] == "【":
        # How nearly every signature comes: _LEADING_SIGNATURE's answer without the regex. It matches when the
        # first closing bracket is 】 at index 3..17 (2-16 characters), and then the group is what lies between.
        close = content.find("】", 1, 18)
        if close >= 3:
            group = content[1:close]
            if "]" not in group and "］" not in group and "〗" not in group:
                return True, canonical_signature(group)
    m = _LEADING_SIGNATURE.match(content)          # other brackets, spaces or invisible characters before it
    return m is not None, canonical_signature(m.group(1)) if m else None


def _trailing_signature(content: str) -> str | None:
    """The canonical signature in a closing bracket at the end, tried only where one can be: the regex's
    trailing half would be tried at every position of every message."""
    tail = content.rstrip()[-1:]
    if tail not in _CLOSING_BRACKETS:
        if not tail or INVISIBLE.match(tail) is None:
            return None
        tail = content[:_TRAILING_GAP.search(content).start()][-1:]
        if tail not in _CLOSING_BRACKETS:
            return None
    m = _TRAILING_SIGNATURE.search(content)
    return canonical_signature(m.group(1)) if m else None


_CANONICAL_SIGNATURES: dict[str, str | None] = {}


def canonical_signature(value: str | None) -> str | None:
    """One spelling per signature, so opt-outs, the registry and the counters agree: brackets and spaces
    stripped, invisible characters dropped, full-width forms folded (NFKC: ＪＤ is JD), traditional characters
    simplified (京東 is 京东). None when no letter, digit or character is left: a "-" or "/" is how some gateways
    say "no signature".

    >>> canonical_signature("【京东】"), canonical_signature(" ［ＪＤ］ "), canonical_signature("【】"), canonical_signature("-")
    ('京东', 'JD', None, None)
    >>> canonical_signature("淘\u200b宝"), canonical_signature("【京東】"), canonical_signature("【优 品 汇】")
    ('淘宝', '京东', '优品汇')
    """
    if not value:
        return None
    known = _CANONICAL_SIGNATURES.get(value, False)
    if known is not False:       # a few merchants send most messages: their spellings are met again and again
        return known
    folded = INVISIBLE.sub("", unicodedata.normalize("NFKC", value))
    # every space goes, not only those at the ends: 【优 品 汇】 must not be a merchant of its own, past an opt-out
    folded = "".join(to_simplified(folded.strip(_SIGNATURE_BRACKETS)).strip(_SIGNATURE_BRACKETS).split())
    if not any(ch.isalnum() for ch in folded):
        folded = None
    if len(_CANONICAL_SIGNATURES) > 65_536:
        _CANONICAL_SIGNATURES.clear()
    _CANONICAL_SIGNATURES[value] = folded = folded and intern(folded)
    return folded


@dataclass(slots=True)
class SmsEvent:
    msg_id: str
    ts_ms: int
    port: str
    recipient: str            # keyed hash, never the MSISDN
    content: str
    sp_id: str | None = None
    signature: str | None = None
    category: str | None = None


@dataclass(slots=True)
class OptOutEvent:
    ts_ms: int
    recipient: str
    port: str
    signature: str | None = None
    keyword: str | None = None


@dataclass(slots=True)
class ComplaintEvent:
    ts_ms: int
    recipient: str
    port: str
    content: str | None = None


@dataclass(slots=True)
class Reason:
    """One named signal that fired: its value and the weight the policy gave it."""
    signal: str
    value: float
    weight: float
    detail: str | None = None

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"signal": self.signal, "value": round(float(self.value), 4), "weight": self.weight}
        if self.detail:
            d["detail"] = self.detail
        return d


@dataclass(slots=True)
class Decision:
    msg_id: str
    port: str
    ts_ms: int
    action: str
    score: float                      # the classifier's spam probability
    risk: float                       # sum of the reasons' value x weight
    reasons: list[Reason]
    port_state: str
    model_version: str
    recipient: str
    content: str
    signature: str | None = None
    sp_id: str | None = None
    category: str | None = None
    #: :meth:`encode`'s bytes, once made (a decision is final when it is encoded)
    encoded: bytes | None = field(default=None, repr=False, compare=False)
    #: False when the content has no number that :func:`~detector.privacy.mask_numbers` would mask (the engine
    #: knows it per template): :meth:`as_dict` then skips the mask
    may_mask: bool = field(default=True, repr=False, compare=False)

    def encode(self, decided_at_ms: int | None = None) -> bytes:
        """The record as JSON bytes. Encoded once: the engine keeps these bytes in the store and the worker
        sends them, with ``decided_at_ms`` spliced in.

        >>> d = Decision("m1", "1069", 0, "allow", 0.1, 0.0, [], "normal", "v1", "r_1", "hi")
        >>> import json; json.loads(d.encode(5)) == d.as_dict(decided_at_ms=5)
        True
        """
        if self.encoded is None:
            self.encoded = to_json(self.as_dict())
        if decided_at_ms is None:
            return self.encoded
        return b'%s,"decided_at_ms":%d}' % (self.encoded[:-1], decided_at_ms)

    def as_dict(self, decided_at_ms: int | None = None) -> dict[str, Any]:
        d = {
            "v": SCHEMA_VERSION, "type": "decision", "msg_id": self.msg_id, "port": self.port,
            "ts": format_ts(self.ts_ms), "ts_ms": self.ts_ms, "action": self.action,
            "score": round(float(self.score), 4), "risk": round(float(self.risk), 3),
            "reasons": [r.as_dict() for r in self.reasons], "port_state": self.port_state,
            "model_version": self.model_version, "recipient": self.recipient,
            "signature": self.signature, "sp_id": self.sp_id, "category": self.category,
            "content": mask_numbers(self.content[:500]) if self.may_mask else self.content[:500],
        }
        if decided_at_ms is not None:
            d["decided_at_ms"] = decided_at_ms
        return d


@dataclass(slots=True)
class PortAction:
    port: str
    ts_ms: int
    state: str
    reasons: list[Reason]
    since_ms: int
    expires_at_ms: int | None
    decided_by: str                   # "engine" or an operator id
    rate_limit_per_min: int | None = None
    previous_state: str | None = None
    note: str | None = None           # an operator's reason, free text

    def lapsed_by(self, now_ms: int) -> bool:
        """Whether the record has expired by ``now_ms``: then it is no state at all (gateways, the engine and the
        policy read it as normal until the port is judged again).

        >>> a = PortAction("1069", 0, "block", [], 0, 60_000, "ops-li")
        >>> a.lapsed_by(59_999), a.lapsed_by(60_000), PortAction("1069", 0, "block", [], 0, None, "x").lapsed_by(10**15)
        (False, True, False)
        """
        return self.expires_at_ms is not None and self.expires_at_ms <= now_ms

    def as_dict(self) -> dict[str, Any]:
        return {
            "v": SCHEMA_VERSION, "type": "port_action", "port": self.port, "ts": format_ts(self.ts_ms),
            "ts_ms": self.ts_ms, "state": self.state, "previous_state": self.previous_state,
            "rate_limit_per_min": self.rate_limit_per_min, "reasons": [r.as_dict() for r in self.reasons],
            "since": format_ts(self.since_ms), "since_ms": self.since_ms,
            "expires_at": format_ts(self.expires_at_ms) if self.expires_at_ms else None,
            "expires_at_ms": self.expires_at_ms, "decided_by": self.decided_by, "note": self.note,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PortAction":
        return cls(
            port=d["port"], ts_ms=int(d["ts_ms"]), state=d["state"],
            reasons=[Reason(r["signal"], r["value"], r["weight"], r.get("detail")) for r in d.get("reasons", [])],
            since_ms=int(d.get("since_ms") or d["ts_ms"]), expires_at_ms=d.get("expires_at_ms"),
            decided_by=d.get("decided_by", "engine"), rate_limit_per_min=d.get("rate_limit_per_min"),
            previous_state=d.get("previous_state"), note=d.get("note"),
        )


#: Most raw bytes a dead letter carries. Base64 makes them 4/3 larger, and a record over the output topic's
#: size limit (Kafka's default max.message.bytes is 1 MB, aiokafka's max_request_size too) could never be
#: produced: the worker would retry it forever and its partition would stop. Longer inputs keep this much,
#: their length and the sha256 of the whole redacted input; the whole input stays at its source offset.
DEAD_LETTER_MAX_RAW_BYTES = 131_072


def dead_letter(raw: bytes, reason: str, hasher: RecipientHasher, *, topic: str = "", partition: int = -1,
                offset: int = -1, now_ms: int | None = None) -> dict[str, Any]:
    """A dead-letter record: the rejected bytes (MSISDNs replaced by their hash), where they came from, why.

    >>> big = dead_letter(b"x" * 1_048_576, "too big", RecipientHasher("k" * 16))
    >>> len(base64.b64decode(big["raw_b64"])), big["raw_bytes"], big["raw_truncated"], big["raw_sha256"][:12]
    (131072, 1048576, True, '8f990ba0b577')
    """
    scrubbed = scrub_msisdns(raw, hasher)
    record = {
        "v": SCHEMA_VERSION, "type": "dead_letter", "reason": reason,
        "source": {"topic": topic, "partition": partition, "offset": offset},
        "raw_b64": base64.b64encode(scrubbed[:DEAD_LETTER_MAX_RAW_BYTES]).decode(), "raw_bytes": len(raw),
        "msisdns_redacted": scrubbed != raw, "received_at_ms": now_ms,
    }
    if len(scrubbed) > DEAD_LETTER_MAX_RAW_BYTES:
        record["raw_truncated"] = True
        record["raw_sha256"] = hashlib.sha256(scrubbed).hexdigest()     # of what is kept: no number leaks
    return record


class EventParser:
    """Validates raw input bytes against the contract and hashes recipients at ingress."""

    def __init__(self, hasher: RecipientHasher, *, max_event_bytes: int = 65_536, max_content_chars: int = 2_000,
                 now_ms: int | None = None, max_future_ms: int | None = None, max_age_ms: int | None = None):
        self.hasher = hasher
        self.max_event_bytes = max_event_bytes
        self.max_content_chars = max_content_chars
        # Clock bounds are optional so replay of old recordings stays deterministic.
        self.now_ms = now_ms
        self.max_future_ms = max_future_ms
        self.max_age_ms = max_age_ms

    # -- helpers -------------------------------------------------------------------------------
    def _load(self, raw: bytes | str | dict) -> dict[str, Any]:
        if isinstance(raw, dict):
            obj = raw
        else:
            if isinstance(raw, str):
                raw = raw.encode("utf-8", "surrogatepass")
            if len(raw) > self.max_event_bytes:
                raise InvalidEvent(f"event is {len(raw)} bytes, more than the {self.max_event_bytes} allowed")
            try:
                obj = orjson.loads(raw)         # validates UTF-8 too; rejects NaN and lone surrogates
            except orjson.JSONDecodeError as exc:
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError as bad:
                    raise InvalidEvent(f"not valid UTF-8 at byte {bad.start}") from None
                raise InvalidEvent(f"not valid JSON: {str(exc)[:80]}") from None
        if not isinstance(obj, dict):
            raise InvalidEvent(f"expected a JSON object, got {type(obj).__name__}")
        v = obj.get("v", SCHEMA_VERSION)
        if v != SCHEMA_VERSION:
            raise InvalidEvent(f"unsupported schema version {v!r} (this worker speaks {SCHEMA_VERSION})")
        return obj

    @staticmethod
    def _require(obj: dict[str, Any], names: tuple[str, ...]) -> None:
        missing = [n for n in names if obj.get(n) is None]
        if missing:
            raise InvalidEvent(f"missing required field(s): {', '.join(sorted(missing))}")

    @staticmethod
    def _str(obj: dict[str, Any], name: str, *, optional: bool = False, pattern: re.Pattern | None = None,
             max_len: int = 256) -> str | None:
        value = obj.get(name)
        if value is None:
            if optional:
                return None
            raise InvalidEvent(f"missing required field(s): {name}")
        if not isinstance(value, str):
            raise InvalidEvent(f"{name}: expected string, got {type(value).__name__}")
        if len(value) > max_len:
            raise InvalidEvent(f"{name}: longer than {max_len} characters")
        if pattern is not None and not pattern.fullmatch(value):
            raise InvalidEvent(f"{name}: {value[:40]!r} is not a valid {name}")
        if "\x00" in value:
            raise InvalidEvent(f"{name}: contains a NUL character")
        return value

    def _ts(self, obj: dict[str, Any]) -> int:
        ts_ms = parse_ts(obj.get("ts"))
        if self.now_ms is not None:
            if self.max_future_ms is not None and ts_ms > self.now_ms + self.max_future_ms:
                raise InvalidEvent(f"ts: {format_ts(ts_ms)} is too far in the future")
            if self.max_age_ms is not None and ts_ms < self.now_ms - self.max_age_ms:
                raise InvalidEvent(f"ts: {format_ts(ts_ms)} is too old")
        return ts_ms

    def _recipient(self, obj: dict[str, Any]) -> str:
        value = self._str(obj, "recipient", pattern=_MSISDN, max_len=32)
        return self.hasher(value)

    # -- public ----------------------------------------------------------------------------------
    def parse_sms(self, raw: bytes | str | dict) -> SmsEvent:
        return self._sms(self._load(raw))

    def _sms(self, obj: dict[str, Any]) -> SmsEvent:
        """The event, or InvalidEvent naming the first rule it breaks.

        Most events are well formed: they take one pass of the same rules inline (the per-field checks took
        about a tenth of a replayed event's CPU time). Anything that fails a rule there goes through
        :meth:`_sms_checked`, which finds the first broken rule and says which; a property test holds the
        two to the same answers.
        """
        get = obj.get
        msg_id, port, recipient, content = get("msg_id"), get("port"), get("recipient"), get("content")
        category, signature, sp_id = get("category"), get("signature"), get("sp_id")
        if (type(msg_id) is str and _is_msg_id(msg_id)
                and type(port) is str and is_port(port)
                and type(recipient) is str and len(recipient) <= 32 and _MSISDN.fullmatch(recipient)
                and type(content) is str and len(content) <= self.max_content_chars and "\x00" not in content
                and (category is None or (type(category) is str and category in _CATEGORY_SET))
                and (signature is None or (type(signature) is str and len(signature) <= 32 and "\x00" not in signature))
                and (sp_id is None or (type(sp_id) is str and len(sp_id) <= 64 and "\x00" not in sp_id))
                and get("ts") is not None and content.strip()):
            ts_ms = self._ts(obj)
            # The signature the recipient sees wins over the declared field (signature_of): a port registered
            # for 京东 must not send 【淘宝】 under signature="京东".
            signature = signature_of(content, signature)
            # A few ports, providers and signatures send most messages: one string each, not one per event
            # (replay holds every event of a file at once).
            return SmsEvent(msg_id, ts_ms, intern(port), self.hasher(recipient), content,
                            sp_id and intern(sp_id), signature, category and intern(category))
        return self._sms_checked(obj)

    def _sms_checked(self, obj: dict[str, Any]) -> SmsEvent:
        self._require(obj, ("msg_id", "ts", "port", "recipient", "content"))
        content = self._str(obj, "content", max_len=self.max_content_chars)
        if not content.strip():
            raise InvalidEvent("content: empty")
        category = self._str(obj, "category", optional=True, max_len=32)
        if category is not None and category not in CATEGORIES:
            raise InvalidEvent(f"category: {category[:32]!r} is not one of {', '.join(CATEGORIES)}")
        signature = self._str(obj, "signature", optional=True, max_len=32)
        signature = signature_of(content, signature)
        return SmsEvent(
            msg_id=self._str(obj, "msg_id", pattern=_MSG_ID, max_len=128),
            ts_ms=self._ts(obj),
            port=self._str(obj, "port", pattern=_PORT, max_len=24),
            recipient=self._recipient(obj),
            content=content,
            sp_id=self._str(obj, "sp_id", optional=True, max_len=64),
            signature=signature,
            category=category,
        )

    def parse_optout(self, raw: bytes | str | dict) -> OptOutEvent:
        return self._optout(self._load(raw))

    def _optout(self, obj: dict[str, Any]) -> OptOutEvent:
        self._require(obj, ("ts", "recipient", "port"))
        return OptOutEvent(
            ts_ms=self._ts(obj), recipient=self._recipient(obj),
            port=self._str(obj, "port", pattern=_PORT, max_len=24),
            signature=canonical_signature(self._str(obj, "signature", optional=True, max_len=32)),
            keyword=self._str(obj, "keyword", optional=True, max_len=32),
        )

    def parse_complaint(self, raw: bytes | str | dict) -> ComplaintEvent:
        return self._complaint(self._load(raw))

    def _complaint(self, obj: dict[str, Any]) -> ComplaintEvent:
        self._require(obj, ("ts", "recipient", "port"))
        return ComplaintEvent(
            ts_ms=self._ts(obj), recipient=self._recipient(obj),
            port=self._str(obj, "port", pattern=_PORT, max_len=24),
            content=self._str(obj, "content", optional=True, max_len=self.max_content_chars),
        )

    def parse_any(self, raw: bytes | str | dict) -> SmsEvent | OptOutEvent | ComplaintEvent:
        """A replay line: ``type`` is ``sms`` (default), ``optout`` or ``complaint``."""
        obj = self._load(raw)
        kind = obj.get("type", "sms")
        if kind == "sms":
            return self._sms(obj)
        if kind == "optout":
            return self._optout(obj)
        if kind == "complaint":
            return self._complaint(obj)
        raise InvalidEvent(f"type: {str(kind)[:20]!r} is not sms, optout or complaint")
