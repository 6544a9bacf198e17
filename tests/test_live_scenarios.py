"""A scenario through the live stream: real tansu, redis-server and a `smsguard worker` subprocess.

The same night-time spam blaster as in tests/test_scenarios.py (which drives replay), but produced to
sms.outbound and judged by the worker with Redis state: the blaster must be throttled or blocked on
sms.port-actions within its first 200 spam messages, while a busy verification-code port beside it
is never throttled.
"""
from __future__ import annotations

import asyncio
import json
import time

import pytest

from detector.events import TOPIC_DECISIONS, TOPIC_OUTBOUND, TOPIC_PORT_ACTIONS
from detector.replay import LEVEL
from detector.services import create_smsguard_topics
from detector.simulator import PortProfile, TrafficSimulator, publish
from tests.test_integration_stream import read_topics, start_worker, stop_worker

pytestmark = pytest.mark.integration
HOUR = 3_600_000


def last_china_2300_before(now_ms: int) -> int:
    """The latest 23:00 China time (UTC+8) at least 30 minutes before ``now_ms``."""
    day = 24 * HOUR
    candidate = (now_ms + 8 * HOUR) // day * day + 23 * HOUR - 8 * HOUR
    while candidate > now_ms - 30 * 60_000:
        candidate -= day
    return candidate


def test_night_blaster_is_throttled_on_the_live_stream_and_codes_are_not(settings, tmp_path):
    s = settings(batch_size=200)
    create_smsguard_topics(s)
    night = last_china_2300_before(int(time.time() * 1000))
    sim = TrafficSimulator(s.data_dir, seed=21)
    codes = PortProfile("10690001", "verification", 300, signatures=("支付宝",), recipients=2_000_000)
    blaster = PortProfile("10690666", "spam", 120, signatures=(), recipients=1_000_000, unsubscribe=False,
                          start_ms=night + 10 * 60_000)
    events = list(sim.events([codes, blaster], night, 20 * 60))
    spam_sent = sum(e["port"] == "10690666" for e in events)
    assert spam_sent > 800

    worker = start_worker(s, tmp_path / "worker.log")
    try:
        assert asyncio.run(publish(s.kafka_bootstrap, s.topic(TOPIC_OUTBOUND), events)) == len(events)
        topics = [s.topic(TOPIC_DECISIONS), s.topic(TOPIC_PORT_ACTIONS)]
        got = asyncio.run(read_topics(s.kafka_bootstrap, topics, timeout_s=240,
                                      until=lambda g: len(g[topics[0]]) >= len(events)))
        assert worker.poll() is None, (tmp_path / "worker.log").read_text(errors="replace")[-3000:]
    finally:
        stop_worker(worker)

    decisions = [json.loads(v) for v in got[topics[0]]]
    actions = [json.loads(v) for v in got[topics[1]]]
    assert len({d["msg_id"] for d in decisions}) == len(events)
    blaster_actions = [a for a in actions if a["port"] == "10690666"]
    first_stop = next((a for a in blaster_actions if LEVEL[a["state"]] >= LEVEL["throttle"]), None)
    assert first_stop is not None, json.dumps([blaster_actions, [d for d in decisions if d["port"] == "10690666"][-1]], ensure_ascii=False)
    assert first_stop["reasons"] and first_stop["decided_by"] == "engine"
    spam_before = sum(1 for d in decisions if d["port"] == "10690666" and d["ts_ms"] <= first_stop["ts_ms"]
                      and any(r["signal"] == "content_spam" for r in d["reasons"]))
    assert spam_before <= 200, spam_before
    assert all(LEVEL[a["state"]] <= LEVEL["watch"] for a in actions if a["port"] == "10690001"), actions
    late = [d for d in decisions if d["port"] == "10690666" and d["ts_ms"] > first_stop["ts_ms"]]
    assert late and all(d["port_state"] in ("throttle", "block") for d in late[-100:])
