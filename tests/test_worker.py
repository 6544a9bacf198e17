"""The worker's batch logic (no broker): dead letters with where they came from, one decision per msg_id,
port actions, and never a raw MSISDN in an output or a log line."""
from __future__ import annotations

import asyncio
import json
import logging
import re
import tempfile
import time

import pytest

from detector.engine import Engine
from detector.events import TOPIC_COMPLAINTS, TOPIC_DEAD_LETTER, TOPIC_DECISIONS, TOPIC_OPTOUTS, TOPIC_OUTBOUND, \
    TOPIC_PORT_ACTIONS
from detector.settings import Settings
from detector.simulator import PortProfile, TrafficSimulator
from detector.state.memory import MemoryStore
from detector.worker import OUTPUT_BATCH_BYTES, BatchProcessor, RawEvent, create_app, deliver

from conftest import DATA_DIR

T0 = 1_731_290_400_000          # 2024-11-11 10:00 China time
MSISDN = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")


class SpamWords:
    version = "words@1"
    threshold = 0.5

    def score(self, texts):
        return [0.97 if re.search("微信|贷款|娱乐|葡京|代办", t) else 0.03 for t in texts]

    def explain_many(self, texts, k=5):
        return [[] for _ in texts]


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


def test_faust_apps_keep_their_data_directory_out_of_the_current_directory(tmp_path, monkeypatch):
    """faust's default data directory is ``<app id>-data`` in the current directory: a benchmark run from the
    checkout would leave it there. The worker and the naive baseline both put it under the temp dir."""
    from detector.bench_stream import naive_app

    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env({"SMSGUARD_APP_ID": "unit-datadir", "SMSGUARD_WORKER_WEB_PORT": "0"})
    for app in (create_app(settings, store=MemoryStore()), naive_app(settings)):
        assert str(app.conf.datadir).startswith(tempfile.gettempdir()), app.conf.datadir
        app.conf.tabledir.mkdir(parents=True, exist_ok=True)      # what faust does when a worker starts
    assert list(tmp_path.iterdir()) == []


def test_the_fetch_wait_must_be_positive_and_set_before_the_consumer_starts():
    from aiokafka import AIOKafkaConsumer

    from detector.errors import ConfigError
    from detector.worker import set_fetch_max_wait

    async def check():
        consumer = AIOKafkaConsumer(bootstrap_servers="localhost:1")
        set_fetch_max_wait(consumer, 40)
        assert consumer._fetch_max_wait_ms == 40
        with pytest.raises(ConfigError, match="at least 1 ms"):
            set_fetch_max_wait(consumer, 0)
        consumer._fetcher = object()        # what start() leaves behind: a change now would be ignored
        with pytest.raises(ConfigError, match="cannot set"):
            set_fetch_max_wait(consumer, 40)
    asyncio.run(check())


def test_the_fetch_wait_setting_reaches_the_worker_consumer_and_the_broker(settings, broker):
    """faust hard-codes fetch_max_wait_ms=1500 and tansu holds an empty fetch that long: with the setting
    at 40 ms, a record produced while the consumer waits arrives within tens of ms (at 1500 ms: ~700 ms here)."""
    from aiokafka import AIOKafkaProducer, TopicPartition

    from detector.services import create_topics

    s = settings(env={"SMSGUARD_FETCH_MAX_WAIT_MS": "40"})
    topic = s.topic(TOPIC_OUTBOUND)
    create_topics(broker.bootstrap, [topic], 1)

    async def check():
        app = create_app(s, store=MemoryStore())
        # the aiokafka consumer exactly as the worker's faust consumer thread builds it
        consumer = app.consumer._thread._create_consumer(loop=asyncio.get_running_loop())
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        await consumer.start()
        await producer.start()
        try:
            assert consumer._fetcher._fetch_max_wait_ms == 40
            consumer.assign([TopicPartition(topic, 0)])
            await consumer.seek_to_end()
            delays = []
            for i in range(3):
                receive = asyncio.ensure_future(consumer.getone())
                await asyncio.sleep(0.05)             # the consumer's fetch is now waiting at the broker
                sent = time.monotonic()
                await producer.send_and_wait(topic, f"r{i}".encode())
                record = await asyncio.wait_for(receive, 10)
                delays.append(time.monotonic() - sent)
                assert record.value == f"r{i}".encode()
            return sorted(delays)[1]
        finally:
            await producer.stop()
            await consumer.stop()
    median_delay = asyncio.run(check())
    assert median_delay < 0.35, f"median delivery delay {median_delay:.3f} s: the fetch wait did not apply"


@pytest.mark.parametrize("batch_bytes", [OUTPUT_BATCH_BYTES, 2048])
def test_deliver_keeps_every_record_in_order_on_its_keys_partition(settings, broker, batch_bytes):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.partitioner import murmur2

    from detector.services import create_topics

    topic = settings().topic(TOPIC_DECISIONS)
    create_topics(broker.bootstrap, [topic], 4)
    keyed = [(topic, f"1069{i % 23:04d}".encode(), json.dumps({"n": i, "pad": "x" * 150}).encode())
             for i in range(400)]
    unkeyed = [(topic, None, json.dumps({"n": 400 + i}).encode()) for i in range(20)]
    records = keyed[:200] + unkeyed + keyed[200:]

    async def run():
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", max_batch_size=batch_bytes)
        await producer.start()
        try:
            batches = await deliver(producer, records)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
        await consumer.start()
        got: dict[int, list] = {}
        try:
            consumer.assign([TopicPartition(topic, p) for p in range(4)])
            await consumer.seek_to_beginning()
            deadline = time.monotonic() + 20
            while sum(map(len, got.values())) < len(records) and time.monotonic() < deadline:
                for tp, msgs in (await consumer.getmany(timeout_ms=500)).items():
                    got.setdefault(tp.partition, []).extend((m.key, json.loads(m.value)["n"]) for m in msgs)
        finally:
            await consumer.stop()
        return batches, got

    batches, got = asyncio.run(run())
    position = {json.loads(value)["n"]: i for i, (_t, _k, value) in enumerate(records)}
    assert sorted(n for msgs in got.values() for _k, n in msgs) == list(range(420))     # all, once each
    for partition, msgs in got.items():
        positions = [position[n] for _k, n in msgs]
        assert positions == sorted(positions)                                          # in order per partition
        assert all((murmur2(k) & 0x7FFFFFFF) % 4 == partition for k, _n in msgs if k is not None)
    if batch_bytes == OUTPUT_BATCH_BYTES:
        assert batches <= 4              # one record batch per partition
    else:
        assert batches >= 420 * 160 // 2048   # full batches were sent and new ones started
