"""The worker's batch logic (no broker): dead letters with where they came from, one decision per msg_id,
port actions, and never a raw MSISDN in an output or a log line."""
from __future__ import annotations

import asyncio
import json
import logging
import re

from detector.engine import Engine
from detector.events import TOPIC_COMPLAINTS, TOPIC_DEAD_LETTER, TOPIC_DECISIONS, TOPIC_OPTOUTS, TOPIC_OUTBOUND, \
    TOPIC_PORT_ACTIONS
from detector.settings import Settings
from detector.simulator import PortProfile, TrafficSimulator
from detector.state.memory import MemoryStore
from detector.worker import BatchProcessor, RawEvent, create_app

from conftest import DATA_DIR

T0 = 1_731_290_400_000          # 2024-11-11 10:00 China time
MSISDN = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")


class SpamWords:
    version = "words@1"
    threshold = 0.5

    def score(self, texts):
        return [0.97 if re.search("微信|贷款|娱乐|葡京|代办", t) else 0.03 for t in texts]

    def explain(self, text, k=5):
        return []


class AllSpam(SpamWords):
    def score(self, texts):
        return [0.97] * len(texts)


class Broken(SpamWords):
    def score(self, texts):
        raise RuntimeError("model exploded")


def processor(scorer=None, clock=lambda: T0 + 60_000) -> BatchProcessor:
    settings = Settings.from_env({"SMSGUARD_RECIPIENT_SECRET": "worker-test-secret-1234"})
    return BatchProcessor(settings, Engine(settings, MemoryStore(), scorer or SpamWords()), clock=clock)


def raw(events, topic=TOPIC_OUTBOUND, first_offset=0):
    return [RawEvent(e if isinstance(e, bytes) else json.dumps(e, ensure_ascii=False).encode(), topic, 0,
                     first_offset + i) for i, e in enumerate(events)]


def records(out, topic):
    return [json.loads(v) for t, _k, v in out.records if t == topic]


def test_valid_events_get_one_decision_each_and_invalid_ones_a_dead_letter(caplog):
    sim = TrafficSimulator(DATA_DIR, seed=5)
    events = list(sim.events([PortProfile("10690001", "verification", 600),
                              PortProfile("10690002", "spam", 600, signatures=())], T0, 30))
    bad = sim.malformed(16, ts_ms=T0)
    batch = raw(events + bad)
    p = processor()
    with caplog.at_level(logging.DEBUG):
        out = asyncio.run(p.process(TOPIC_OUTBOUND, batch))
    decisions = records(out, TOPIC_DECISIONS)
    dead = records(out, TOPIC_DEAD_LETTER)
    assert sorted(d["msg_id"] for d in decisions) == sorted(e["msg_id"] for e in events)
    assert out.decisions == len(events) and out.dead_letters == 16 == len(dead)
    assert {d["source"]["offset"] for d in dead} == set(range(len(events), len(events) + 16))
    assert all(d["reason"] and d["source"]["topic"] == TOPIC_OUTBOUND for d in dead)
    # keys: the port for decisions and port actions
    assert all(k == json.loads(v)["port"].encode() for t, k, v in out.records if t != TOPIC_DEAD_LETTER)
    # no MSISDN anywhere: outputs (content numbers are masked, recipients hashed) and logs
    phones = {e["recipient"] for e in events}
    blob = b"\n".join(v for _t, _k, v in out.records).decode()
    assert not any(phone in blob for phone in phones)
    assert not MSISDN.search(blob)
    assert not MSISDN.search(caplog.text)


def test_a_redelivered_batch_is_not_decided_twice():
    sim = TrafficSimulator(DATA_DIR, seed=6)
    events = list(sim.events([PortProfile("10690001", "notification", 300)], T0, 20))
    p = processor()
    first = asyncio.run(p.process(TOPIC_OUTBOUND, raw(events)))
    again = asyncio.run(p.process(TOPIC_OUTBOUND, raw(events)))
    assert first.decisions == len(events) and again.decisions == 0 and not again.dead_letters


def test_spam_blast_changes_the_port_state():
    sim = TrafficSimulator(DATA_DIR, seed=8)
    events = list(sim.events([PortProfile("10690009", "spam", 1000, signatures=(), recipients=1_000_000,
                                          unsubscribe=False, templates=3)], T0 - 9 * 3_600_000, 60))   # 01:00
    p = processor(scorer=AllSpam(), clock=lambda: T0)
    actions = []
    for i in range(0, len(events), 200):
        out = asyncio.run(p.process(TOPIC_OUTBOUND, raw(events[i:i + 200], first_offset=i)))
        actions += records(out, TOPIC_PORT_ACTIONS)
    assert actions and actions[-1]["port"] == "10690009" and actions[-1]["state"] in ("throttle", "block")


def test_optouts_and_complaints_are_parsed_with_their_own_contract():
    sim = TrafficSimulator(DATA_DIR, seed=9)
    event = next(sim.events([PortProfile("10690001", "marketing", 60)], T0, 60))
    p = processor()
    asyncio.run(p.process(TOPIC_OUTBOUND, raw([event])))
    out = asyncio.run(p.process(TOPIC_OPTOUTS, raw([sim.optout(event), {"ts": T0, "port": "1069"}], TOPIC_OPTOUTS)))
    assert out.dead_letters == 1 and "recipient" in records(out, TOPIC_DEAD_LETTER)[0]["reason"]
    out = asyncio.run(p.process(TOPIC_COMPLAINTS, raw([sim.complaint(event)], TOPIC_COMPLAINTS)))
    assert out.dead_letters == 0 and out.decisions == 0


def test_events_outside_the_clock_bounds_are_dead_lettered():
    p = processor(clock=lambda: T0)
    event = {"msg_id": "m1", "ts": T0 + 3 * 86_400_000, "port": "10690001", "recipient": "13812345678",
             "content": "【京东】您好"}
    out = asyncio.run(p.process(TOPIC_OUTBOUND, raw([event])))
    assert out.dead_letters == 1 and "future" in records(out, TOPIC_DEAD_LETTER)[0]["reason"]


def test_an_engine_failure_keeps_the_events_as_dead_letters_and_the_worker_alive():
    p = processor(scorer=Broken())
    event = {"msg_id": "m1", "ts": T0, "port": "10690001", "recipient": "13812345678", "content": "【京东】您好"}
    out = asyncio.run(p.process(TOPIC_OUTBOUND, raw([event])))
    dead = records(out, TOPIC_DEAD_LETTER)
    assert out.decisions == 0 and dead[0]["reason"] == "engine error: RuntimeError"
    assert b"13812345678" not in out.records[0][2]


def test_dead_letter_reasons_never_quote_an_msisdn():
    p = processor()
    event = {"msg_id": "m1", "ts": "13812345678 is no time", "port": "10690001", "recipient": "13812345678",
             "content": "x"}
    out = asyncio.run(p.process(TOPIC_OUTBOUND, raw([event])))
    dead = records(out, TOPIC_DEAD_LETTER)[0]
    assert dead["reason"].startswith("ts:") and "13812345678" not in dead["reason"]


def test_create_app_names_topics_with_the_prefix_and_uses_raw_bytes():
    settings = Settings.from_env({"SMSGUARD_TOPIC_PREFIX": "unit.", "SMSGUARD_APP_ID": "unit-worker",
                                  "SMSGUARD_WORKER_WEB_PORT": "0"})
    app = create_app(settings, store=MemoryStore())
    topics = {t for agent in app.agents.values() for t in agent.channel.topics}
    assert topics == {"unit.sms.outbound", "unit.sms.optouts", "unit.sms.complaints"}
    assert app.conf.id == "unit-worker" and not app.conf.web_enabled
    assert app.conf.broker_session_timeout == settings.broker_session_timeout_s
    assert app.conf.consumer_auto_offset_reset == "earliest"
