"""LiveStats: per-port numbers in event time, bounded memory, masked output."""
from __future__ import annotations

from detector.dashboard import live as live_module
from detector.dashboard.live import MINUTE_MS, LiveStats

T0 = 1_731_326_400_000          # a minute boundary


def decision(i: int, ts_ms: int, port: str = "10690001", action: str = "allow", recipient: str | None = None,
             score: float = 0.1, content: str = "【京东】您的订单已发货") -> dict:
    return {"msg_id": f"m{i}", "port": port, "ts_ms": ts_ms, "action": action, "score": score, "risk": 1.0,
            "reasons": [{"signal": "classifier", "value": score, "weight": 2.0}] if action != "allow" else [],
            "recipient": recipient or f"r_{i:020d}", "content": content, "signature": "京东", "sp_id": "sp01"}


def test_rate_now_against_baseline_in_event_time():
    live = LiveStats()
    i = 0
    for minute in range(30):                    # 10 a minute for 30 minutes
        for k in range(10):
            live.add_decision(decision(i, T0 + minute * MINUTE_MS + k * 5_000))
            i += 1
    for k in range(60):                          # then 60 in the first half of minute 30
        live.add_decision(decision(i, T0 + 30 * MINUTE_MS + k * 500))
        i += 1
    row = live.port_summary("10690001")
    assert row["baseline"] == 10.0
    # 5 full minutes at 10 plus 60 messages in the ~half minute gone so far
    assert 20 < row["rate_now"] < 22
    assert row["spark"][-1] > 100                 # the current minute projected to a full minute


def test_a_new_port_rate_counts_only_since_it_started():
    live = LiveStats()
    live.add_decision(decision(0, T0, port="10690009"))          # another port sets the clock
    for k in range(40):
        live.add_decision(decision(k + 1, T0 + 20_000 + k * 500, port="10690777", action="flag", score=0.9))
    row = live.port_summary("10690777")
    assert row["baseline"] is None
    assert 100 < row["rate_now"] < 130           # 40 messages in ~40 s, not 40 over 5 minutes
    assert row["spam_share"] == 1.0 and row["flagged"] == 40 and row["fan_out"] == 40


def test_memory_is_bounded_and_old_minutes_age_out(monkeypatch):
    monkeypatch.setattr(live_module, "CONTENT_KEEP", 100)
    live = LiveStats()
    for i in range(live_module.RECENT_FLAGGED + 1):         # m0 is neither among the contents nor shown
        live.add_decision(decision(i, T0 + i * 1_000, action="flag", score=0.9))
    assert live.content_of("m500") is not None and live.content_of("m0") is None
    assert len(live.recent_flagged(1_000)) == live_module.RECENT_FLAGGED
    live.add_decision(decision(999, T0 + 3 * 3_600_000, port="10690002"))     # three hours later
    assert "10690001" not in live.ports() or live.port_summary("10690001")["volume"] == 0
    assert live.add_decision(decision(1000, T0)) is None                       # too old to count


def test_output_is_masked_and_complaints_are_counted():
    live = LiveStats()
    public = live.add_decision(decision(1, T0, action="block", score=0.99, recipient="r_abcdef0123456789abcd",
                                        content="加微信 13812345678 或致电 021-62345678"))
    assert public["content"] == "加微信 138****5678 或致电 021-****5678"
    assert public["recipient"] == "r_abcd…"
    live.add_complaint({"ts": "2024-11-11T12:00:30Z", "port": "10690001", "recipient": "13812345678"})
    live.add_complaint({"ts": "not a time", "port": "10690001"})
    assert live.port_summary("10690001")["complaints"] == 1
    assert live.totals()["by_action"] == {"block": 1}


def test_one_decision_dated_far_ahead_does_not_move_now():
    """The worker accepts event times up to 24 h ahead: one message 1 h ahead made every other port's volume 0."""
    wall = T0 + 10 * MINUTE_MS
    live = LiveStats(clock=lambda: wall)
    for k in range(20):
        live.add_decision(decision(k, T0 + 5 * MINUTE_MS + k * 1_000))
    live.add_decision(decision(99, wall + 3_600_000, port="10690002"))       # a sender clock 1 h fast
    assert live.now_ms == T0 + 5 * MINUTE_MS + 19_000
    assert live.port_summary("10690001")["volume"] == 20
    live.add_decision(decision(100, wall + 30_000, port="10690003"))          # a few seconds fast still counts
    assert live.now_ms == wall + 30_000 and live.port_summary("10690001")["volume"] == 20


def test_a_flagged_message_the_page_still_shows_can_be_labelled(monkeypatch):
    """QA14 case 9: the label action looks the text up among the last CONTENT_KEEP decisions of every port (at
    1,000 messages/s, 20 seconds' worth), while a quiet port's page and the flagged list keep showing older
    flagged messages with their label buttons: a click on one answered 404 'not among the recent decisions'."""
    monkeypatch.setattr(live_module, "CONTENT_KEEP", 100)
    live = LiveStats()
    live.add_decision(decision(0, T0, port="10690666", action="flag", score=0.9, content="加微信 13812345678 领红包"))
    for i in range(1, 201):                                  # other ports' traffic pushes it out of the contents
        live.add_decision(decision(i, T0 + i * 100))
    assert live.recent_flagged(port="10690666")[0]["msg_id"] == "m0"           # still on the page
    known = live.content_of("m0")
    assert known is not None and known["port"] == "10690666" and known["content"] == "加微信 138****5678 领红包"
    assert live.content_of("m1") is None                     # an allowed message out of the contents is gone
