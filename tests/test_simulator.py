"""The traffic simulator: deterministic, in event time, realistic enough to exercise the detector."""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from detector.errors import InvalidEvent
from detector.events import EventParser
from detector.privacy import RecipientHasher
from detector.settings import Settings
from detector.simulator import UNSUBSCRIBE_TEXTS, PortProfile, TrafficSimulator, scaled

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = (REPO / Settings.from_env({}).data_dir).resolve()
START = 1_731_340_800_000          # 2024-11-12 00:00 local (UTC+8) = 2024-11-11T16:00Z
MSISDN = re.compile(r"^1[3-9]\d{9}$")

pytestmark = pytest.mark.skipif(not (DATA_DIR / "dev.tsv").exists(), reason="sms_zh data not present")


@pytest.fixture(scope="module")
def sim() -> TrafficSimulator:
    return TrafficSimulator(DATA_DIR, seed=7)


@pytest.fixture(scope="module")
def parser() -> EventParser:
    return EventParser(RecipientHasher("test-secret-123456"))


def local_hour(ts_ms: int) -> int:
    return (ts_ms // 3_600_000 + 8) % 24


def test_same_seed_same_events_other_seed_other_events():
    profiles = [PortProfile("10690001", "spam", 120), PortProfile("10690002", "verification", 120)]
    a = list(TrafficSimulator(DATA_DIR, seed=1).events(profiles, START, 120))
    b = list(TrafficSimulator(DATA_DIR, seed=1).events(profiles, START, 120))
    c = list(TrafficSimulator(DATA_DIR, seed=2).events(profiles, START, 120))
    assert a == b
    assert [e["content"] for e in a] != [e["content"] for e in c]


def test_events_are_merged_in_event_time_within_the_window(sim):
    profiles = [PortProfile("10690001", "verification", 300), PortProfile("10690002", "notification", 200),
                PortProfile("10690003", "marketing", 100)]
    events = list(sim.events(profiles, START, 600))
    ts = [e["ts"] for e in events]
    assert ts == sorted(ts)
    assert START <= ts[0] and ts[-1] < START + 600_000
    assert len({e["msg_id"] for e in events}) == len(events)
    assert {e["port"] for e in events} == {"10690001", "10690002", "10690003"}


def test_rate_is_poisson_around_the_profile_rate(sim):
    events = list(sim.events([PortProfile("10690001", "verification", 600)], START, 1800))
    assert abs(len(events) - 18_000) < 18_000 * 0.05


def test_active_hours_silence_a_port_outside_them_including_across_midnight(sim):
    day = [PortProfile("10690001", "marketing", 60, active_hours=(8, 21))]
    night = [PortProfile("10690002", "spam", 60, active_hours=(22, 5))]
    day_events = list(sim.events(day, START, 86_400))
    night_events = list(sim.events(night, START, 86_400))
    assert {local_hour(e["ts"]) for e in day_events} == set(range(8, 21))
    assert {local_hour(e["ts"]) for e in night_events} == {22, 23, 0, 1, 2, 3, 4}
    assert abs(len(day_events) - 13 * 60 * 60) < 13 * 3600 * 0.05


def test_start_and_end_bound_a_profile(sim):
    p = PortProfile("10690001", "spam", 600, start_ms=START + 60_000, end_ms=START + 120_000)
    events = list(sim.events([p], START, 600))
    assert events and all(START + 60_000 <= e["ts"] < START + 120_000 for e in events)


def test_every_generated_event_meets_the_contract(sim, parser):
    events = list(sim.events(sim.default_profiles(20), START, 120))
    assert len(events) > 1000
    for e in events:
        assert e["type"] == "sms" and MSISDN.match(e["recipient"]), e
        parsed = parser.parse_sms(json.dumps(e, ensure_ascii=False).encode())
        assert parsed.recipient.startswith("r_")


def test_kinds_look_like_their_traffic(sim, parser):
    def sample(kind, **kw):
        return list(sim.events([PortProfile("10690001", kind, 600, signatures=("招商银行",), **kw)], START, 60))

    for e in sample("verification"):
        assert re.search(r"\d{4,6}", e["content"]) and "招商银行" in e["content"] and e["category"] == "verification"
    marketing = sample("marketing")
    assert all(any(u in e["content"] for u in UNSUBSCRIBE_TEXTS) for e in marketing)
    assert all(parser.parse_sms(e).signature == "招商银行" for e in marketing)
    assert not any(any(u in e["content"] for u in UNSUBSCRIBE_TEXTS) for e in sample("marketing", unsubscribe=False))
    spam = sample("spam", unsubscribe=False)
    unsigned = sum(parser.parse_sms(e).signature is None for e in spam)
    assert unsigned > len(spam) * 0.5
    assert all("category" not in e for e in sample("notification", declare_category=False))


def test_template_limit_and_recipient_pool(sim):
    events = list(sim.events([PortProfile("10690001", "spam", 600, signatures=(), unsubscribe=False, templates=3,
                                                 recipients=50)], START, 300))
    shapes = {re.sub(r"\d+", "#", e["content"]) for e in events}
    assert len(shapes) <= 3
    recipients = Counter(e["recipient"] for e in events)
    assert len(recipients) <= 50 and len(recipients) > 40
    assert all(MSISDN.match(r) for r in recipients)


def test_optout_and_complaint_follow_the_event(sim, parser):
    event = next(sim.events([PortProfile("10690001", "marketing", 60, signatures=("京东",))], START + 10 * 3_600_000, 600))
    optout = parser.parse_optout(sim.optout(event, keyword="TD"))
    complaint = parser.parse_complaint(sim.complaint(event))
    sms = parser.parse_sms(event)
    assert (optout.recipient, optout.port, optout.signature, optout.keyword) == (sms.recipient, "10690001", "京东", "TD")
    assert complaint.recipient == sms.recipient and complaint.ts_ms > sms.ts_ms and optout.ts_ms > sms.ts_ms
    assert sim.optout(event)["type"] == "optout" and sim.complaint(event)["type"] == "complaint"


def test_default_profiles_hold_a_night_blaster(sim):
    profiles = sim.default_profiles(20)
    kinds = Counter(p.kind for p in profiles)
    assert kinds["verification"] + kinds["notification"] > kinds["marketing"] + kinds["spam"]
    by_port: dict[str, list[PortProfile]] = {}
    for p in profiles:
        by_port.setdefault(p.port, []).append(p)
    blasters = [ps for ps in by_port.values() if {p.kind for p in ps} == {"notification", "spam"}]
    assert len(blasters) == 1
    spam = next(p for p in blasters[0] if p.kind == "spam")
    day = list(sim.events(blasters[0], START - 6 * 3_600_000, 5 * 3600))    # 18:00..23:00 local
    night = list(sim.events(blasters[0], START, 3600))                        # 00:00..01:00 local
    assert spam.active_hours and len(night) > 10 * len(day) / 5


def test_malformed_events_are_all_rejected_and_some_carry_msisdns(sim, parser):
    bad = sim.malformed(32)
    assert len(bad) == 32 and max(len(b) for b in bad) > 1_000_000
    reasons = set()
    for raw in bad:
        with pytest.raises(InvalidEvent) as exc:
            parser.parse_sms(raw)
        reasons.add(str(exc.value).split(":")[0])
    assert len(reasons) >= 10
    assert sum(bool(re.search(rb"1[3-9]\d{9}", b)) for b in bad) >= 10


def test_scaled_keeps_proportions_and_messages_per_subscriber():
    ps = scaled([PortProfile("1", "spam", 60, recipients=1_000), PortProfile("2", "spam", 180, recipients=5)], 8)
    assert [p.rate_per_min for p in ps] == [120.0, 360.0]
    assert [p.recipients for p in ps] == [2_000, 10]


def test_legitimate_ports_reach_a_subscriber_about_once_a_day(sim):
    """Codes and notices to one number are a handful a day: dozens would be SMS bombing (code_flood), and a
    simulated day of the default mix must not look like one."""
    for p in scaled(sim.default_profiles(20), 500):
        if p.kind == "spam":
            continue
        start, end = p.active_hours or (0, 24)
        per_day = p.rate_per_min * 60 * ((end - start) % 24 or 24) / p.recipients
        assert per_day <= 1.01, (p.kind, p.rate_per_min, p.recipients)
    busiest = max((p for p in sim.default_profiles(20) if p.kind == "verification"), key=lambda p: p.rate_per_min)
    hour = Counter(e["recipient"] for e in sim.events([busiest], START + 10 * 3_600_000, 3600))
    assert sum(hour.values()) > 100 * 60 and max(hour.values()) <= 3


def test_simulate_command_writes_replayable_jsonl(tmp_path, parser):
    from detector.cli import main

    out = tmp_path / "events.jsonl"
    result = CliRunner().invoke(main, ["simulate", "--rate", "50", "--duration", "20", "--seed", "3", "-o", str(out),
                                      "--start-ms", str(START + 10 * 3_600_000)],
                                env={"SMSGUARD_DATA_DIR": str(DATA_DIR)})
    assert result.exit_code == 0, result.output
    lines = out.read_text(encoding="utf-8").splitlines()
    assert 800 < len(lines) < 1200
    events = [parser.parse_any(line) for line in lines]
    assert [e.ts_ms for e in events] == sorted(e.ts_ms for e in events)


def test_simulate_writes_malformed_events_into_the_file_too(tmp_path, parser):
    """--malformed used to be honoured on the --kafka path only: with -o it was silently dropped."""
    from detector.cli import main

    out = tmp_path / "events.jsonl"
    result = CliRunner().invoke(main, ["simulate", "--rate", "5", "--duration", "10", "--seed", "3", "-o", str(out),
                                      "--malformed", "16", "--start-ms", str(START)],
                                env={"SMSGUARD_DATA_DIR": str(DATA_DIR)})
    assert result.exit_code == 0, result.output
    assert "16 of them malformed" in result.output
    lines = out.read_bytes().split(b"\n")[:-1]
    good = [parser.parse_any(line) for line in lines[:-16]]
    assert good and all(e.ts_ms >= START for e in good)
    for line in lines[-16:]:       # after the good ones, as the --kafka path sends them
        with pytest.raises(InvalidEvent):
            parser.parse_any(line)


@pytest.mark.parametrize("args", [["--rate", "-5"], ["--rate", "0"], ["--duration", "-1"], ["--ports", "0"],
                                  ["--malformed", "-1"]])
def test_simulate_refuses_nonsense_numbers_with_a_usage_error(tmp_path, args):
    from detector.cli import main

    result = CliRunner().invoke(main, ["simulate", "-o", str(tmp_path / "x.jsonl"), *args],
                                env={"SMSGUARD_DATA_DIR": str(DATA_DIR)})
    assert result.exit_code == 2 and "Invalid value for" in result.output, result.output
    assert not (tmp_path / "x.jsonl").exists()


def test_simulate_refuses_an_output_in_a_missing_directory(tmp_path):
    from detector.cli import main

    result = CliRunner().invoke(main, ["simulate", "-o", str(tmp_path / "nodir" / "x.jsonl")],
                                env={"SMSGUARD_DATA_DIR": str(DATA_DIR)})
    assert result.exit_code == 2 and "no directory" in result.output, result.output
