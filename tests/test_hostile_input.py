"""Hostile input through the REAL worker: thousands of generated malformed events, none of them silent.

Hypothesis generates batches of events (invalid JSON and UTF-8, wrong types, missing and extra
fields, 1 MB contents, far-future and far-past timestamps, control characters, thousands of
distinct ports, plus valid events) and they go, as raw Kafka records, to one running
`smsguard worker`. Then, for every record produced (by partition and offset):

* it is in the dead-letter topic with a reason and its source partition/offset, or
* it has a decision for its msg_id and port,

and the kinds whose fate is certain get exactly that fate. The worker stays up and its RSS
stays bounded. Shrinking is off (each example costs seconds of real I/O); a failure prints the
example.
"""
from __future__ import annotations

import asyncio
import json
import time

import pytest
from hypothesis import HealthCheck, Phase, given, settings as hsettings, strategies as st

from detector.bench_stream import Processor, start_processor
from detector.events import TOPIC_DEAD_LETTER, TOPIC_DECISIONS, TOPIC_OUTBOUND
from detector.services import create_smsguard_topics

pytestmark = pytest.mark.integration

EXAMPLES, PER_EXAMPLE = 8, 260         # ≥ 2,000 events in all
NOW = int(time.time() * 1000)
DAY = 86_400_000
REQUIRED = ("msg_id", "ts", "port", "recipient", "content")

# the fate each kind must have: "dead" (dead-letter topic), "decided", or "either"
DEAD, DECIDED, EITHER = "dead", "decided", "either"


def _valid(i: int, port: str = "10690001") -> dict:
    return {"msg_id": f"h-{i}", "ts": NOW - 60_000, "port": port, "recipient": f"1380013{i % 10_000:04d}",
            "content": "【京东】您的订单已发货，请注意查收。", "sp_id": "sp01"}


wrong_values = st.one_of(st.integers(-2**70, 2**70), st.floats(allow_nan=True), st.booleans(),
                         st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(),
                                                                                max_size=2))
control_text = st.text(alphabet=st.characters(codec="utf-8", categories=("Cc", "Cf", "Zs", "Co")), min_size=1,
                       max_size=40)


@st.composite
def hostile(draw, i: int) -> tuple[str, bytes]:
    """(expected fate, raw record value) of one generated event."""
    kind = draw(st.sampled_from(("binary", "bad_utf8", "truncated", "wrong_type", "missing", "extra", "huge",
                                 "future", "past", "ts_junk", "control", "ports", "nested", "valid")))
    event = _valid(i)
    if kind == "binary":
        return DEAD, draw(st.binary(max_size=300).filter(lambda b: not b.strip().startswith(b"{")))
    if kind == "bad_utf8":
        raw = json.dumps(event, ensure_ascii=False).encode()
        at = draw(st.integers(0, len(raw)))
        return DEAD, raw[:at] + draw(st.sampled_from((b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80"))) + raw[at:]
    if kind == "truncated":
        raw = json.dumps(event, ensure_ascii=False).encode()
        return DEAD, raw[: draw(st.integers(0, len(raw) - 1))]
    if kind == "wrong_type":
        field = draw(st.sampled_from(REQUIRED))
        value = draw(wrong_values)
        if field == "ts" and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]                                   # a number is a legitimate ts type
        event[field] = value
        return DEAD, json.dumps(event).encode()
    if kind == "missing":
        for field in draw(st.sets(st.sampled_from(REQUIRED), min_size=1)):
            del event[field]
        return DEAD, json.dumps(event).encode()
    if kind == "extra":
        extra = draw(st.dictionaries(st.text(min_size=1, max_size=12).map(lambda k: "x_" + k),
                                     st.one_of(st.none(), st.integers(), st.text(max_size=20)), min_size=1,
                                     max_size=8))
        return DECIDED, json.dumps({**event, **extra}, ensure_ascii=False).encode()
    if kind == "huge":
        char = draw(st.sampled_from("垃a\U0001F4A9"))
        event["content"] = char * (draw(st.integers(70_000, 1_100_000)) // len(char.encode()))   # up to ~1 MB
        return DEAD, json.dumps(event, ensure_ascii=False).encode()
    if kind == "future":
        event["ts"] = draw(st.integers(NOW + 2 * DAY, 4_102_444_800_000 * 10))
        return DEAD, json.dumps(event).encode()
    if kind == "past":
        event["ts"] = draw(st.integers(-2**63, NOW - 40 * DAY))
        return DEAD, json.dumps(event).encode()
    if kind == "ts_junk":
        event["ts"] = draw(st.one_of(st.text(max_size=30).filter(lambda t: not t[:1].isdigit()),
                                     st.just("2024-11-11 12:00:00"), st.just("NaN")))
        return DEAD, json.dumps(event).encode()
    if kind == "control":
        field = draw(st.sampled_from(("content", "signature", "sp_id", "msg_id", "port")))
        event[field] = draw(control_text) if field != "content" else event["content"] + draw(control_text)
        # content and free-text fields may legitimately hold them; ids/ports may not
        return (EITHER if field in ("content", "signature", "sp_id") else DEAD), json.dumps(event).encode()
    if kind == "ports":
        event["port"] = "106" + str(draw(st.integers(0, 10**15)))
        return DECIDED, json.dumps(event).encode()
    if kind == "nested":
        depth = draw(st.integers(100, 20_000))
        return DEAD, b"[" * depth + b"]" * draw(st.integers(0, depth))
    return DECIDED, json.dumps(event, ensure_ascii=False).encode()


@st.composite
def batches(draw) -> list[tuple[str, bytes, str | None]]:
    """A batch of hostile events with unique msg_ids: (expected fate, raw bytes, msg_id or None)."""
    base = draw(st.integers(0, 10**9)) * 10_000
    out = []
    for i in range(PER_EXAMPLE):
        fate, raw = draw(hostile(base + i))
        msg_id = f"h-{base + i}"
        out.append((fate, raw, msg_id if msg_id.encode() in raw else None))
    return out


async def _produce(bootstrap: str, topic: str, values: list[bytes]) -> list[tuple[int, int]]:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=8 * 1024 * 1024, linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, v) for v in values]
        return [(m.partition, m.offset) for m in await asyncio.gather(*futures)]
    finally:
        await producer.stop()


async def _outcomes(bootstrap: str, decisions_topic: str, dead_topic: str, where: list[tuple[int, int]],
                    msg_ids: set[str], timeout: float) -> tuple[dict[tuple[int, int], dict], dict[str, list[dict]]]:
    """Dead letters by source (partition, offset) and decisions by msg_id, until ``where``/``msg_ids`` are all
    accounted for or the timeout."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(decisions_topic, dead_topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=16 * 1024 * 1024,
                                fetch_max_bytes=32 * 1024 * 1024)
    await consumer.start()
    dead: dict[tuple[int, int], dict] = {}
    decided: dict[str, list[dict]] = {}
    wanted = set(where)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for tp, records in (await consumer.getmany(timeout_ms=300)).items():
                for r in records:
                    value = json.loads(r.value)
                    if tp.topic == dead_topic:
                        dead[(value["source"]["partition"], value["source"]["offset"])] = value
                    else:
                        decided.setdefault(value["msg_id"], []).append(value)
            settled = {w for w in wanted if w in dead}
            if len(settled) + len(msg_ids & decided.keys()) >= len(wanted):
                break
    finally:
        await consumer.stop()
    return dead, decided


@pytest.fixture
def worker(settings, tmp_path) -> tuple[Processor, object]:
    s = settings(batch_size=200, broker_session_timeout_s=3.0)
    create_smsguard_topics(s)
    models = tmp_path / "no-models"
    models.mkdir()
    proc = start_processor("worker", {**s.as_env(), "SMSGUARD_MODELS_DIR": str(models)}, tmp_path / "worker.log")
    try:
        yield proc, s
    finally:
        proc.stop()


def test_every_hostile_event_is_dead_lettered_or_decided_and_the_worker_survives(worker):
    proc, s = worker
    sent = {"events": 0, "dead": 0, "decided": 0}
    rss: list[int] = []

    @hsettings(max_examples=EXAMPLES, deadline=None, derandomize=True, phases=(Phase.explicit, Phase.generate),
               suppress_health_check=list(HealthCheck), database=None)
    @given(batches())
    def one_batch(batch):
        values = [raw for _, raw, _ in batch]
        where = asyncio.run(_produce(s.kafka_bootstrap, s.topic(TOPIC_OUTBOUND), values))
        expected_ids = {m for fate, _, m in batch if m is not None and fate != DEAD}
        dead, decided = asyncio.run(_outcomes(s.kafka_bootstrap, s.topic(TOPIC_DECISIONS),
                                              s.topic(TOPIC_DEAD_LETTER), where, expected_ids,
                                              timeout=120 if not rss else 60))
        assert proc.proc.poll() is None, f"the worker died:\n{proc.log_tail()}"
        for (fate, raw, msg_id), position in zip(batch, where):
            letter = dead.get(position)
            decision = decided.get(msg_id) if msg_id else None
            what = f"{fate} event {raw[:120]!r}… at {position}"
            assert letter or decision, f"lost: {what}"
            assert not (letter and decision), f"both dead-lettered and decided: {what}"
            if letter:
                assert letter["reason"] and letter["source"]["topic"] == s.topic(TOPIC_OUTBOUND), letter
                assert letter["raw_bytes"] == len(raw)
                assert fate != DECIDED, f"a valid event was dead-lettered ({letter['reason']}): {what}"
            else:
                assert fate != DEAD, f"decided but should have been rejected: {what}"
                assert len(decision) == 1, f"decided {len(decision)} times: {what}"
                assert decision[0]["port"] == json.loads(raw)["port"]
                assert decision[0]["action"] in ("allow", "flag", "block")
            sent["dead" if letter else "decided"] += 1
        sent["events"] += len(batch)
        rss.append(proc.sample().rss_bytes)

    one_batch()
    assert sent["events"] >= 2_000, sent
    assert sent["dead"] > 500 and sent["decided"] > 200, sent          # both paths were really exercised
    assert proc.proc.poll() is None, proc.log_tail()
    # bounded memory: 1 MB events must not pile up. A first batch warms caches; growth after it stays small.
    assert max(rss) < 700 * 2**20, [r // 2**20 for r in rss]
    assert rss[-1] - rss[0] < 200 * 2**20, [r // 2**20 for r in rss]
    print(f"hostile events: {sent}; worker RSS MB per batch: {[r // 2**20 for r in rss]}")
