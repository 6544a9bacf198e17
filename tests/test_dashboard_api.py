"""The dashboard's JSON API against a real broker and Redis (no browser).

Decisions are produced to ``sms.decisions`` the way the worker writes them
(``Decision.as_dict(decided_at_ms)``, keyed by port), from simulated traffic whose
spam ports are flagged; the dashboard reads them back with its own consumer.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import time
from pathlib import Path
from typing import Any, Iterable

import pytest
from aiohttp.test_utils import TestClient, TestServer

from detector.dashboard import auth as auth_module
from detector.dashboard.app import DASHBOARD, create_app
from detector.dashboard.feeds import read_to_end
from detector.events import (TOPIC_COMPLAINTS, TOPIC_DECISIONS, TOPIC_FEEDBACK, TOPIC_PORT_ACTIONS, Decision,
                             EventParser, PortAction, Reason)
from detector.privacy import RecipientHasher
from detector.services import acreate_topics
from detector.simulator import PortProfile, TrafficSimulator, publish

TOKEN = "tok-alice-0123456789"
TOKENS_ENV = {"SMSGUARD_OPERATOR_TOKENS": f"alice:{TOKEN},bob:tok-bob-9876543210"}
ALL_TOPICS = (TOPIC_DECISIONS, TOPIC_PORT_ACTIONS, TOPIC_COMPLAINTS, TOPIC_FEEDBACK, "sms.outbound")
SPAM_PORT = "10690666"


# -- helpers shared with tests/test_dashboard_browser.py ---------------------------------------------
def profiles(spam_rate_per_min: float = 60) -> list[PortProfile]:
    return [
        PortProfile("10690001", "verification", 120, sp_id="sp01", signatures=("支付宝",)),
        PortProfile("10690002", "notification", 60, sp_id="sp02", signatures=("工商银行",)),
        PortProfile("10690003", "marketing", 30, sp_id="sp05", signatures=("京东",)),
        PortProfile("10690004", "verification", 40, sp_id="sp01", signatures=("美团",)),
        PortProfile(SPAM_PORT, "spam", spam_rate_per_min, sp_id="sp09", signatures=(), recipients=1_000_000,
                    unsubscribe=False, templates=6),
    ]


def decide_like_worker(events: Iterable[dict[str, Any]], spam_ports: set[str], secret: str = "k" * 16,
                       port_state: str = "normal") -> list[dict[str, Any]]:
    """What the worker would write to sms.decisions for these events: parsed, hashed, scored, reasons.

    The spam ports' messages are flagged with the reasons the real signals would give; the
    others are allowed. (The dashboard tests need the decision stream, not the engine.)
    """
    parser = EventParser(RecipientHasher(secret))
    out = []
    for i, raw in enumerate(events):
        e = parser.parse_sms(raw)
        spam = e.port in spam_ports
        reasons = ([Reason("classifier", 0.93, 2.0), Reason("fresh_recipients", 0.8, 1.0, "80% never seen"),
                    Reason("no_unsubscribe", 1.0, 0.5)] if spam else [])
        action = ("block" if i % 5 == 0 else "flag") if spam else "allow"
        decision = Decision(msg_id=e.msg_id, port=e.port, ts_ms=e.ts_ms, action=action,
                            score=0.93 if spam else 0.04, risk=sum(r.value * r.weight for r in reasons),
                            reasons=reasons, port_state=port_state, model_version="test-model",
                            recipient=e.recipient, content=e.content, signature=e.signature, sp_id=e.sp_id,
                            category=e.category)
        out.append(decision.as_dict(decided_at_ms=e.ts_ms + 20))
    return out


def traffic(data_dir: str, start_ms: int, duration_s: float, spam_rate: float = 60, seed: int = 3) -> list[dict]:
    sim = TrafficSimulator(data_dir, seed=seed)
    return list(sim.events(profiles(spam_rate), start_ms, duration_s))


def engine_throttle(port: str, ts_ms: int) -> PortAction:
    """The port action the engine writes when a port turns to throttle."""
    return PortAction(port=port, ts_ms=ts_ms, state="throttle", reasons=[Reason("spam_share", 0.9, 1.0, "90% spam")],
                      since_ms=ts_ms, expires_at_ms=ts_ms + 3_600_000, decided_by="engine", rate_limit_per_min=30,
                      previous_state="normal")


async def produce(bootstrap: str, topic: str, values: Iterable[dict[str, Any]]) -> int:
    return await publish(bootstrap, topic, values)


async def wait_for(predicate, timeout: float = 20.0, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        result = await predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


# -- fixtures -----------------------------------------------------------------------------------------------
@pytest.fixture
async def stack(settings):
    s = settings(TOKENS_ENV)
    await acreate_topics(s.kafka_bootstrap, [s.topic(t) for t in ALL_TOPICS], partitions=3,
                         compacted=[s.topic(TOPIC_PORT_ACTIONS)])
    return s


@pytest.fixture
async def client(stack):
    app = create_app(stack, lookback=10_000)
    async with TestClient(TestServer(app)) as c:
        c.settings = stack
        yield c


# -- tests ----------------------------------------------------------------------------------------------------
async def test_mutations_need_an_operator_token(client):
    body = {"kind": "block", "reason": "fraud"}
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {TOKEN}"},
                    {"Authorization": f"Bearer {TOKEN}x"}):
        resp = await client.post(f"/api/ports/{SPAM_PORT}/actions", json=body, headers=headers)
        assert resp.status == 401, headers
        assert "operator token" in (await resp.json())["error"]
    resp = await client.post("/api/messages/m1/label", json={"label": "spam"})
    assert resp.status == 401
    assert not Path(client.settings.audit_log).exists()      # nothing happened, nothing audited
    me = await (await client.get("/api/me", headers={"Authorization": f"Bearer {TOKEN}"})).json()
    assert me == {"operator": "alice", "tokens_configured": True}


def test_tokens_are_compared_in_constant_time(monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth_module.hmac, "compare_digest", spy)
    checker = auth_module.OperatorAuth({"first-token": "alice", "second-token": "bob"})
    assert checker.operator("Bearer first-token") == "alice"
    # every configured token is compared, even after the first one matched: no early exit
    assert len(calls) == 2
    assert checker.operator("Bearer second-token") == "bob"
    assert checker.operator("Bearer first") is None
    assert len(calls) == 6


async def test_block_goes_to_topic_redis_and_audit_log(client):
    s = client.settings
    headers = {"Authorization": f"Bearer {TOKEN}"}
    resp = await client.post(f"/api/ports/{SPAM_PORT}/actions", headers=headers,
                             json={"kind": "block", "reason": "12321 complaints + 加微信 spam", "expires_in_s": 3600})
    assert resp.status == 200, await resp.text()
    result = await resp.json()
    assert result["action"]["state"] == "block" and result["action"]["decided_by"] == "alice"

    on_topic = await read_to_end(s.kafka_bootstrap, s.topic(TOPIC_PORT_ACTIONS))
    assert [(a["port"], a["state"], a["decided_by"], a["reasons"][0]["detail"]) for a in on_topic] == [
        (SPAM_PORT, "block", "alice", "12321 complaints + 加微信 spam")]

    store = client.server.app[DASHBOARD].store
    mirrored = await store.get_port_states([SPAM_PORT])
    assert mirrored[SPAM_PORT].state == "block"
    assert [a.state for a in await store.port_history(SPAM_PORT)] == ["block"]

    lines = Path(s.audit_log).read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert (entry["operator"], entry["action"], entry["port"], entry["reason"], entry["outcome"]) == (
        "alice", "block", SPAM_PORT, "12321 complaints + 加微信 spam", "done")
    assert entry["at_ms"] > 0 and entry["expires_at_ms"] - entry["at_ms"] == 3_600_000
    audit = await (await client.get("/api/audit")).json()
    assert audit["entries"][0]["port"] == SPAM_PORT

    ports = await (await client.get("/api/ports?state=block")).json()
    assert [r["port"] for r in ports["ports"]] == [SPAM_PORT]


async def test_bad_requests_are_refused_and_not_audited(client):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    for body in ({"kind": "block", "reason": "  "}, {"kind": "explode", "reason": "x"},
                 {"kind": "block", "reason": "x", "rate_limit_per_min": 10},
                 {"kind": "throttle", "reason": "x", "expires_in_s": "soon"}):
        resp = await client.post(f"/api/ports/{SPAM_PORT}/actions", headers=headers, json=body)
        assert resp.status == 400, body
    resp = await client.post("/api/ports/not-a-port/actions", headers=headers, json={"kind": "block", "reason": "x"})
    assert resp.status == 400
    assert not Path(client.settings.audit_log).exists()


async def test_live_stats_label_and_export_labels(client, tmp_path):
    s = client.settings
    start = int(time.time() * 1000) - 20 * 60_000
    events = traffic(s.data_dir, start, 20 * 60, spam_rate=30)
    decisions = decide_like_worker(events, {SPAM_PORT})
    await produce(s.kafka_bootstrap, s.topic(TOPIC_DECISIONS), decisions)

    async def spam_port_row():
        data = await (await client.get("/api/ports")).json()
        rows = {r["port"]: r for r in data["ports"]}
        return rows.get(SPAM_PORT) if rows.get(SPAM_PORT, {}).get("volume", 0) >= 300 else None

    row = await wait_for(spam_port_row)
    assert row["spam_share"] == 1.0 and row["flagged"] > 0 and row["fan_out"] > 100
    assert "classifier" in [name for name, _ in row["top_reasons"]]
    data = await (await client.get("/api/ports")).json()
    assert data["ports"][0]["port"] == SPAM_PORT          # sorted by risk
    allowed = next(r for r in data["ports"] if r["port"] == "10690001")
    assert allowed["flagged"] == 0 and allowed["spam_share"] == 0.0
    by_provider = (await (await client.get("/api/ports?sp_id=SP09")).json())["ports"]
    assert [r["port"] for r in by_provider] == [SPAM_PORT]
    by_signature = (await (await client.get("/api/ports?signature=工商")).json())["ports"]
    assert [r["port"] for r in by_signature] == ["10690002"]

    flagged = (await (await client.get("/api/flagged?limit=500")).json())["flagged"]
    assert flagged and all(d["port"] == SPAM_PORT for d in flagged)
    assert all(d["recipient"].endswith("…") and len(d["recipient"]) == 7 for d in flagged)
    assert not any(c.isdigit() and len(c) >= 7 for d in flagged for c in d["content"].split())

    headers = {"Authorization": f"Bearer {TOKEN}"}
    spam_id, normal_id = flagged[0]["msg_id"], next(d["msg_id"] for d in decisions if d["action"] == "allow")
    for msg_id, label in ((spam_id, "normal"), (normal_id, "normal"), (spam_id, "spam")):   # last label wins
        resp = await client.post(f"/api/messages/{msg_id}/label", headers=headers, json={"label": label})
        assert resp.status == 200, await resp.text()
    resp = await client.post("/api/messages/never-seen/label", headers=headers, json={"label": "spam"})
    assert resp.status == 404

    from detector.ops_cli import export_labels
    out = tmp_path / "labels.tsv"
    read, written = await export_labels(s, str(out))
    assert (read, written) == (3, 2)
    rows = [line.split("\t") for line in out.read_text(encoding="utf-8").splitlines()]
    by_text = {text: label for label, text in rows}
    from detector.dashboard.actions import training_text
    spam_text = training_text(next(d["content"] for d in decisions if d["msg_id"] == spam_id))   # 138xxxx5678
    assert by_text[spam_text] == "1"
    assert sorted(by_text.values()) == ["0", "1"]

    audit = [json.loads(line) for line in Path(s.audit_log).read_text(encoding="utf-8").splitlines()]
    assert [(e["action"], e["label"]) for e in audit] == [("label", "normal"), ("label", "normal"), ("label", "spam")]


async def test_port_page_and_metrics(client):
    s = client.settings
    start = int(time.time() * 1000) - 10 * 60_000
    await produce(s.kafka_bootstrap, s.topic(TOPIC_DECISIONS),
                  decide_like_worker(traffic(s.data_dir, start, 600, spam_rate=30), {SPAM_PORT}))
    action = engine_throttle(SPAM_PORT, start + 300_000)
    await produce(s.kafka_bootstrap, s.topic(TOPIC_PORT_ACTIONS), [action.as_dict()])
    await client.server.app[DASHBOARD].store.put_port_state(action)

    async def port_page():
        data = await (await client.get(f"/api/ports/{SPAM_PORT}")).json()
        return data if data["port"]["state"] == "throttle" and data["recent"] else None

    page = await wait_for(port_page)
    assert [h["state"] for h in page["history"]] == ["throttle"]
    assert len(page["volume"]) == 60 and sum(page["volume"]) > 0
    assert page["port"]["templates"] and page["port"]["rate_limit_per_min"] == 30
    body = await (await client.get("/metrics")).text()
    assert 'smsguard_ports{state="throttle"} 1.0' in body


async def test_an_expired_state_is_marked(client):
    s = client.settings
    now = int(time.time() * 1000)
    action = engine_throttle("10690555", now - 2 * 3_600_000)          # expired an hour ago
    await client.server.app[DASHBOARD].store.put_port_state(action)
    await produce(s.kafka_bootstrap, s.topic(TOPIC_DECISIONS),
                  decide_like_worker(traffic(s.data_dir, now - 60_000, 60), {SPAM_PORT}))

    async def throttled_rows():
        dashboard = client.server.app[DASHBOARD]
        if not dashboard.live.decisions_seen:             # event time known from the decisions
            return None
        return (await (await client.get("/api/ports?state=throttle")).json())["ports"]

    rows = await wait_for(throttled_rows)
    assert [(r["port"], r["expired"]) for r in rows] == [("10690555", True)]


async def test_signature_registry_is_editable_through_the_api_and_feeds_the_engine(client):
    from detector.engine import Engine
    from detector.events import EventParser
    from detector.privacy import RecipientHasher
    headers = {"Authorization": f"Bearer {TOKEN}"}
    port = "10690777"
    before = await (await client.get(f"/api/ports/{port}/signatures")).json()
    assert before == {"port": port, "registered": False, "registered_signatures": []}
    refused = await client.post(f"/api/ports/{port}/signatures", json={"signatures": ["京东"], "reason": "报备"})
    assert refused.status == 401
    bad = await client.post(f"/api/ports/{port}/signatures", headers=headers, json={"signatures": ["京东"]})
    assert bad.status == 400                                             # a reason is required
    done = await client.post(f"/api/ports/{port}/signatures", headers=headers,
                             json={"signatures": ["京东", "京东到家"], "reason": "签名报备 2024-11"})
    assert done.status == 200, await done.text()
    assert (await done.json())["registered_signatures"] == ["京东", "京东到家"]
    audit = json.loads(Path(client.settings.audit_log).read_text(encoding="utf-8").splitlines()[-1])
    assert (audit["operator"], audit["action"], audit["port"]) == ("alice", "add_signatures", port)

    # the engine reads the same registry: an unregistered signature on that port fires its signal
    store = client.server.app[DASHBOARD].store
    parser = EventParser(RecipientHasher("k" * 16))
    event = parser.parse_sms({"msg_id": "sig1", "ts": 1731290400000, "port": port, "recipient": "13800000000",
                              "content": "【淘宝】您的包裹已发出"})
    decision = (await Engine(client.settings, store).process([event])).decisions[0]
    assert any(r.signal == "unregistered_signature" for r in decision.reasons)


async def test_an_operator_block_wins_over_an_engine_throttle_dated_in_the_future(client):
    """A sender clock 1 h fast dates the engine's throttle 1 h ahead; the operator's block must still be newest."""
    dashboard = client.server.app[DASHBOARD]
    ahead = engine_throttle("10690556", int(time.time() * 1000) + 3_600_000)
    await dashboard.store.put_port_state(ahead)

    async def shown_state():
        rows = (await (await client.get("/api/ports?q=10690556")).json())["ports"]
        return rows[0]["state"] if rows else None

    assert await wait_for(shown_state) == "throttle"
    resp = await client.post("/api/ports/10690556/actions", headers={"Authorization": f"Bearer {TOKEN}"},
                             json={"kind": "block", "reason": "fraud"})
    assert resp.status == 200, await resp.text()
    block = (await resp.json())["action"]
    assert block["ts_ms"] == ahead.ts_ms + 1 and block["since_ms"] < ahead.ts_ms
    assert await shown_state() == "block"
    assert (await dashboard.store.get_port_states(["10690556"]))["10690556"].state == "block"


async def test_a_throttle_rate_is_kept_at_zero_and_bounded(client):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    resp = await client.post(f"/api/ports/{SPAM_PORT}/actions", headers=headers,
                             json={"kind": "throttle", "reason": "stop it", "rate_limit_per_min": 0})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["action"]["rate_limit_per_min"] == 0          # 0 rejects; it is not "the default"
    for rate in (1e30, 1_000_001, -1):           # 1e30 became a 31-digit integer no int64 field can hold
        resp = await client.post(f"/api/ports/{SPAM_PORT}/actions", headers=headers,
                                 json={"kind": "throttle", "reason": "x", "rate_limit_per_min": rate})
        assert resp.status == 400, rate
        assert "1,000,000" in (await resp.json())["error"]


async def test_signature_registry_requests_are_checked_before_anything_is_written(client):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    store = client.server.app[DASHBOARD].store
    for port, body, message in (
            ("not-a-port", {"signatures": ["京东"], "reason": "报备"}, "port must be"),
            ("10690001%0A", {"signatures": ["京东"], "reason": "报备"}, "port must be"),
            ("10690778", {"signatures": ["【】"], "reason": "报备"}, "brackets"),
            ("10690778", {"signatures": "京东", "reason": "报备"}, "list of strings"),
            ("10690778", {"signatures": ["京东"], "reason": "报备", "replace": "false"}, "JSON boolean")):
        resp = await client.post(f"/api/ports/{port}/signatures", headers=headers, json=body)
        assert resp.status == 400, (port, body)
        assert message in (await resp.json())["error"]
    assert await store.registered_signatures(["not-a-port", "10690001\n", "10690778"]) == {}
    assert not Path(client.settings.audit_log).exists()
    for replace, expected in ((False, ["京东"]), (False, ["京东", "淘宝"]), (True, ["支付宝"])):
        sig = expected[-1]
        resp = await client.post("/api/ports/10690778/signatures", headers=headers,
                                 json={"signatures": [f"【{sig}】"], "reason": "报备", "replace": replace})
        assert (await resp.json())["registered_signatures"] == expected


async def test_label_and_reason_input_is_checked_and_a_failed_label_is_audited(client):
    from detector.dashboard.feeds import KafkaUnavailable

    s = client.settings
    dashboard = client.server.app[DASHBOARD]
    decision = decide_like_worker(traffic(s.data_dir, int(time.time() * 1000) - 60_000, 60), {SPAM_PORT})[0]
    dashboard.live.add_decision(decision)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    label_url = f"/api/messages/{decision['msg_id']}/label"
    for body, message in (({"label": []}, "label must be"), ({"label": {}}, "label must be"),
                          ({"label": True}, "label must be"),
                          ({"label": "spam", "reason": "x" * 60_000}, "longer than 500"),
                          ({"label": "spam", "reason": {"why": "x"}}, "reason must be a string")):
        resp = await client.post(label_url, headers=headers, json=body)
        assert resp.status == 400 and resp.content_type == "application/json", body       # was a 500 text/plain
        assert message in (await resp.json())["error"], body
    for body, message in (({"kind": "block", "reason": ["fraud"]}, "reason must be a string"),
                          ({"kind": "block", "reason": "fraud", "expires_in_s": True}, "must be a number")):
        resp = await client.post(f"/api/ports/{SPAM_PORT}/actions", headers=headers, json=body)
        assert resp.status == 400 and message in (await resp.json())["error"], body
    assert not Path(s.audit_log).exists()

    async def kafka_down(*args):
        raise KafkaUnavailable("could not write to sms.feedback: KafkaConnectionError")

    dashboard.publisher.send = kafka_down
    resp = await client.post(label_url, headers=headers, json={"label": "spam", "reason": " 诈骗 "})
    assert resp.status == 503
    entries = [json.loads(line) for line in Path(s.audit_log).read_text(encoding="utf-8").splitlines()]
    assert [(e["action"], e["label"], e["reason"], e["outcome"]) for e in entries] == [
        ("label", "spam", "诈骗", "failed")]
    assert "KafkaConnectionError" in entries[0]["error"]


async def test_a_port_action_only_on_the_topic_is_written_back_to_redis(client):
    """After Redis lost data (or an action was taken while it was down) the engine, which reads Redis, would
    otherwise go on from an older state and override the operator."""
    s = client.settings
    store = client.server.app[DASHBOARD].store
    now = int(time.time() * 1000)
    older = engine_throttle("10690557", now - 60_000)
    await store.put_port_state(older)
    from detector.policy import operator_action
    block = operator_action("10690557", "block", "alice", "fraud", now_ms=now, current=older)
    await produce(s.kafka_bootstrap, s.topic(TOPIC_PORT_ACTIONS), [block.as_dict()])

    async def mirrored():
        return (await store.get_port_states(["10690557"])).get("10690557").state == "block"

    await wait_for(mirrored)
    assert [a.state for a in await store.port_history("10690557")] == ["block", "throttle"]
