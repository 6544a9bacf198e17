"""docs/events.md and detector/events.py must agree: every example on the page is checked by the code."""
from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from detector.errors import InvalidEvent
from detector.events import (CATEGORIES, SCHEMA_VERSION, EventParser, PortAction, Reason, Decision, dead_letter,
                             format_ts)
from detector.privacy import RecipientHasher

DOC = (Path(__file__).resolve().parents[1] / "docs" / "events.md").read_text(encoding="utf-8")
EXAMPLES = {m.group(1): json.loads(m.group(2))
            for m in re.finditer(r"<!-- example: (\w+) -->\s*```json\n(.*?)```", DOC, re.S)}
hasher = RecipientHasher("doc-test-secret-0123")
parser = EventParser(hasher)


def test_every_topic_has_an_example():
    assert set(EXAMPLES) == {"sms", "optout", "complaint", "decision", "port_action", "dead_letter"}


def test_input_examples_parse():
    sms = parser.parse_sms(json.dumps(EXAMPLES["sms"]).encode())
    assert sms.signature == "京东" and sms.category in CATEGORIES and sms.recipient.startswith("r_")
    assert parser.parse_optout(json.dumps(EXAMPLES["optout"])).keyword == "TD"
    assert parser.parse_complaint(json.dumps(EXAMPLES["complaint"])).ts_ms == 1731326700000


def test_output_examples_have_exactly_the_fields_the_code_writes():
    d = EXAMPLES["decision"]
    built = Decision(d["msg_id"], d["port"], d["ts_ms"], d["action"], d["score"], d["risk"],
                     [Reason(**r) for r in d["reasons"]], d["port_state"], d["model_version"], d["recipient"],
                     d["content"], d["signature"], d["sp_id"], d["category"]).as_dict(d["decided_at_ms"])
    assert set(built) == set(d) and built["ts"] == d["ts"]
    a = PortAction.from_dict(EXAMPLES["port_action"])
    assert a.as_dict() == EXAMPLES["port_action"]
    dl = dead_letter(base64.b64decode(EXAMPLES["dead_letter"]["raw_b64"]), "missing required field(s): content",
                     hasher, topic="sms.outbound", partition=2, offset=41877, now_ms=1731326400100)
    assert dl == EXAMPLES["dead_letter"]
    assert all(e.get("v", SCHEMA_VERSION) == SCHEMA_VERSION for e in EXAMPLES.values())


@pytest.mark.parametrize("raw,reason", [
    (b'{"msg_id": "x"', "not valid JSON"),
    (b'\xff\xfe{}', "not valid UTF-8"),
    (b'[1, 2]', "expected a JSON object"),
    (b'{"v": 2, "msg_id": "x"}', "unsupported schema version"),
    (b'{"msg_id": "x", "ts": 1731326400000, "port": "1069", "recipient": "13812345678"}', "content"),
    (b'{"msg_id": "x", "ts": "2024-11-11 12:00", "port": "1069", "recipient": "138", "content": "a"}', "ts"),
    (b'{"msg_id": "x", "ts": 1731326400, "port": "1069", "recipient": "13812345678", "content": "a"}', "seconds"),
    (b'{"msg_id": 7, "ts": 1731326400000, "port": "1069", "recipient": "13812345678", "content": "a"}', "msg_id"),
    (b'{"msg_id": "x", "ts": 1731326400000, "port": "10 69", "recipient": "13812345678", "content": "a"}', "port"),
    (b'{"msg_id": "x", "ts": 1731326400000, "port": "1069", "recipient": "abc", "content": "a"}', "recipient"),
    (b'{"msg_id": "x", "ts": 1731326400000, "port": "1069", "recipient": "13812345678", "content": "a",'
     b' "category": "spam"}', "category"),
    (b'{"msg_id": "x", "ts": true, "port": "1069", "recipient": "13812345678", "content": "a"}', "bool"),
])
def test_contract_violations_are_refused_with_a_reason(raw, reason):
    with pytest.raises(InvalidEvent, match=reason):
        parser.parse_sms(raw)


def test_oversized_events_and_contents_are_refused():
    big = json.dumps({"msg_id": "x", "ts": 1731326400000, "port": "1069", "recipient": "13812345678",
                      "content": "广" * 1_000_000}).encode()
    with pytest.raises(InvalidEvent, match="bytes"):
        parser.parse_sms(big)
    with pytest.raises(InvalidEvent, match="longer than"):
        EventParser(hasher, max_event_bytes=10**8).parse_sms(big)


def test_clock_bounds_refuse_far_future_and_far_past_when_live():
    live = EventParser(hasher, now_ms=1731326400000, max_future_ms=86_400_000, max_age_ms=30 * 86_400_000)
    base = {"msg_id": "x", "port": "1069", "recipient": "13812345678", "content": "a"}
    with pytest.raises(InvalidEvent, match="future"):
        live.parse_sms({**base, "ts": 1731326400000 + 2 * 86_400_000})
    with pytest.raises(InvalidEvent, match="too old"):
        live.parse_sms({**base, "ts": "2024-01-01T00:00:00Z"})
    assert format_ts(live.parse_sms({**base, "ts": 1731326400000}).ts_ms) == "2024-11-11T12:00:00.000Z"


def test_dead_letters_never_carry_a_raw_msisdn():
    raw = b'{"msg_id": "x", "recipient": "+86 138-1234-5678", "to": "13912345678", "content": 5}'
    record = dead_letter(raw, "content: expected string", hasher)
    decoded = base64.b64decode(record["raw_b64"])
    assert b"13912345678" not in decoded and b"138-1234-5678" not in decoded and record["msisdns_redacted"]
    assert hasher("13812345678").encode() in decoded


def test_a_dead_letter_stays_under_kafkas_default_record_size_whatever_the_input():
    """A 1 MB input kept whole becomes 1.4 MB of base64: over Kafka's default max.message.bytes, never produced."""
    import hashlib

    from detector.events import DEAD_LETTER_MAX_RAW_BYTES, to_json
    raw = b'{"msg_id": "x", "recipient": "13912345678", "content": "' + b"a" * 1_048_000 + b'"}'
    record = dead_letter(raw, "event is too large", hasher)
    assert len(to_json(record)) < 1_000_000
    redacted = raw.replace(b"13912345678", hasher("13912345678").encode())
    assert record["raw_truncated"] and record["raw_sha256"] == hashlib.sha256(redacted).hexdigest()
    assert record["raw_bytes"] == len(raw)
    decoded = base64.b64decode(record["raw_b64"])
    assert len(decoded) == DEAD_LETTER_MAX_RAW_BYTES and b"13912345678" not in decoded
    assert "raw_truncated" not in dead_letter(b"{}", "missing", hasher)
