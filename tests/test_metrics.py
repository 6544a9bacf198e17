"""detector.metrics: the worker's tiny API and the /metrics exposition."""
from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY

from detector import metrics
from detector.events import Decision, Reason


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_observe_batch_counts_actions_latency_and_batch_size():
    flag_before = sample("smsguard_decisions_total", action="flag")
    block_before = sample("smsguard_decisions_total", action="block")
    slow_before = sample("smsguard_decision_latency_seconds_bucket", le="2.5")
    fast_before = sample("smsguard_decision_latency_seconds_bucket", le="0.05")
    batches_before = sample("smsguard_scoring_batch_size_count")
    decision = Decision(msg_id="m1", port="10690001", ts_ms=10_000, action="block", score=0.99, risk=3.0,
                        reasons=[Reason("classifier", 0.99, 2.0)], port_state="throttle", model_version="m1",
                        recipient="r_x", content="hi")
    # one decision 2 s after its event, one 20 ms after
    metrics.observe_batch([decision, {"action": "flag", "ts_ms": 11_980}], batch_size=2, now_ms=12_000)
    assert sample("smsguard_decisions_total", action="block") == block_before + 1
    assert sample("smsguard_decisions_total", action="flag") == flag_before + 1
    assert sample("smsguard_decision_latency_seconds_bucket", le="0.05") == fast_before + 1
    assert sample("smsguard_decision_latency_seconds_bucket", le="2.5") == slow_before + 2
    assert sample("smsguard_scoring_batch_size_count") == batches_before + 1


def test_counters_gauges_and_model_switch():
    before = sample("smsguard_dead_letters_total"), sample("smsguard_redis_errors_total")
    metrics.dead_letter(3)
    metrics.redis_error()
    assert sample("smsguard_dead_letters_total") == before[0] + 3
    assert sample("smsguard_redis_errors_total") == before[1] + 1
    metrics.event_in("sms.outbound", 5)
    assert sample("smsguard_events_in_total", topic="sms.outbound") >= 5
    metrics.set_lag(2, 17)
    assert sample("smsguard_consumer_lag", consumer="worker", partition="2") == 17
    metrics.set_port_states({"throttle": 4})
    assert sample("smsguard_ports", state="throttle") == 4
    assert sample("smsguard_ports", state="block") == 0
    metrics.set_model("v1")
    metrics.set_model("v2")
    assert sample("smsguard_model_info", version="v2") == 1
    assert REGISTRY.get_sample_value("smsguard_model_info", {"version": "v1"}) is None


async def test_metrics_handler_serves_exposition_text():
    app = web.Application()
    app.router.add_get("/metrics", metrics.metrics_handler)
    metrics.dead_letter()
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/metrics")
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        body = await resp.text()
    assert "smsguard_dead_letters_total" in body
    assert "smsguard_decision_latency_seconds_bucket" in body
