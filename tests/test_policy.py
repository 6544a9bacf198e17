"""The policy: message actions and the port state machine (escalation, hysteresis, expiry, operators)."""
from __future__ import annotations

import copy

import pytest
import yaml

from detector.errors import ConfigError
from detector.events import Reason
from detector.policy import DEFAULT_POLICY_FILE, Policy, operator_action
from detector.signals import ALL_SIGNALS

MIN = 60_000


@pytest.fixture(scope="module")
def policy():
    return Policy.load()


def raw_config():
    return yaml.safe_load(DEFAULT_POLICY_FILE.read_text(encoding="utf-8"))


def test_message_actions_follow_the_thresholds(policy):
    assert policy.message_action([Reason("content_spam", 0.5, 4.0)], "normal", False)[0] == "allow"
    assert policy.message_action([Reason("content_spam", 0.9, 4.0)], "normal", False)[0] == "flag"
    assert policy.message_action([], "normal", True)[0] == "block"
    assert policy.message_action([], "block", False)[0] == "block"
    action, risk = policy.message_action([Reason("a", 1, 5.0), Reason("b", 1, 4.5)], "normal", False)
    assert (action, risk) == ("block", 9.5)


def test_escalation_is_immediate_and_carries_reasons(policy):
    reasons = [Reason("spam_share", 1.0, 3.0, "90%")]
    action = policy.next_port_state("1069", None, 3.0, reasons, 0)
    assert action.state == "throttle" and action.rate_limit_per_min == policy.throttle_rate_per_min
    assert action.reasons == reasons and action.decided_by == "engine" and action.previous_state == "normal"
    assert action.expires_at_ms == policy.ttl_ms["throttle"]


def test_an_engine_throttle_slows_a_port_below_its_own_recent_rate(policy):
    """Red team case 14: a fixed 60 a minute slowed nothing that sent less (a drip at 2 a minute, a blast at 30)."""
    reasons = [Reason("spam_share", 1.0, 3.0, "90%")]
    rates = {recent: policy.next_port_state("1069", None, 3.0, reasons, 0, recent_per_min=recent).rate_limit_per_min
             for recent in (2.0, 30.0, 5000.0, None)}
    assert rates == {2.0: 1, 30.0: 15, 5000.0: 60, None: 60}
    drip = policy.next_port_state("1069", None, 3.0, reasons, 0, recent_per_min=2.0)
    # renewed under the throttle (the port now sends at most 1 a minute): the rate is kept, not halved again
    renewed = policy.next_port_state("1069", drip, 3.0, reasons, drip.expires_at_ms - MIN, recent_per_min=1.0)
    assert renewed.since_ms == drip.since_ms and renewed.rate_limit_per_min == 1
    # a block stepping down throttles at the fixed rate: the rate measured under the block says nothing (review)
    block = policy.next_port_state("1069", None, 5.0, reasons, 0, recent_per_min=400.0)
    step = policy.next_port_state("1069", block, 0.0, [], block.expires_at_ms + 1, recent_per_min=1.0)
    assert step.state == "throttle" and step.rate_limit_per_min == policy.throttle_rate_per_min
    # a policy written before throttle_share throttles at its fixed rate, as it did
    older = raw_config()
    del older["port"]["throttle_share"]
    assert Policy(older).next_port_state("1069", None, 3.0, reasons, 0, recent_per_min=2.0).rate_limit_per_min == 60


def test_a_policy_naming_the_unused_min_messages_for_state_loads_and_says_it_is_not_used(caplog):
    """It was read and never used (spam_share's min_volume is the floor): the default file no longer has it."""
    assert "min_messages_for_state" not in raw_config()["port"]
    older = raw_config()
    older["port"]["min_messages_for_state"] = 20
    with caplog.at_level("WARNING", logger="detector.policy"):
        Policy(older)
    assert "min_messages_for_state is not used" in caplog.text


def test_state_holds_until_expiry_then_steps_down_one_level(policy):
    block = policy.next_port_state("1069", None, 5.0, [], 0)
    assert block.state == "block"
    assert policy.next_port_state("1069", block, 0.0, [], 10 * MIN) is None          # not expired: holds
    later = block.expires_at_ms + 1
    step = policy.next_port_state("1069", block, 0.0, [], later)
    assert step.state == "throttle" and step.note == "block expired"


def test_hysteresis_keeps_a_state_while_risk_stays_near_its_threshold(policy):
    throttle = policy.next_port_state("1069", None, 2.6, [], 0)
    near = policy.thresholds["throttle"] * (policy.hysteresis + 0.1)
    assert policy.next_port_state("1069", throttle, near, [], 1 * MIN) is None          # no chatter
    # At (or near) its expiry the state is renewed, not left to lapse: gateways read an expired record as
    # normal, and the engine would go on judging the port at throttle without ever saying so again.
    for now in (throttle.expires_at_ms - 60_000, throttle.expires_at_ms + 1):
        renewed = policy.next_port_state("1069", throttle, near, [], now)
        assert renewed.state == "throttle" and renewed.since_ms == throttle.since_ms
        assert renewed.expires_at_ms > now and renewed.rate_limit_per_min == throttle.rate_limit_per_min


def test_justified_state_is_renewed_shortly_before_expiry(policy):
    watch = policy.next_port_state("1069", None, 1.5, [], 0)
    assert policy.next_port_state("1069", watch, 1.5, [], 1 * MIN) is None            # no chatter
    renewed = policy.next_port_state("1069", watch, 1.5, [], watch.expires_at_ms - 60_000)
    assert renewed.state == "watch" and renewed.since_ms == watch.since_ms
    assert renewed.expires_at_ms > watch.expires_at_ms


def test_operator_state_wins_until_it_expires(policy):
    allow = operator_action("1069", "allowlist", "ops-wang", "bank OTP port", now_ms=0, expires_in_s=3600)
    assert policy.next_port_state("1069", allow, 10.0, [], 30 * MIN) is None          # engine cannot raise it
    after = policy.next_port_state("1069", allow, 10.0, [], 61 * MIN)
    assert after.state == "block" and after.decided_by == "engine"
    block = operator_action("1069", "block", "ops-wang", "fraud", now_ms=0)             # no expiry: until released
    assert policy.next_port_state("1069", block, 0.0, [], 10**12) is None


def test_operator_actions_validate_their_input():
    with pytest.raises(ConfigError):
        operator_action("1069", "block", "ops", "  ", now_ms=0)
    with pytest.raises(ConfigError):
        operator_action("1069", "nuke", "ops", "why", now_ms=0)
    release = operator_action("1069", "release", "ops", "false positive", now_ms=5)
    assert release.state == "normal" and release.decided_by == "engine" and "ops" in release.note
    throttle = operator_action("1069", "throttle", "ops", "slow down", now_ms=0, rate_limit_per_min=10)
    assert throttle.rate_limit_per_min == 10


@pytest.mark.parametrize("mutate,message", [
    (lambda c: c["signals"].update(bogus={"weight": 1}), "unknown signal"),
    (lambda c: c["port"].update(watch_at=9), "must rise"),
    (lambda c: c["signals"]["quiet_hours"].update(colour="red"), "unknown key"),
    (lambda c: c["signals"]["quiet_hours"]["params"].update(start=1), "unknown parameter"),
    (lambda c: c.pop("message"), "missing key"),
    # each error names the key path, so the operator finds the line without reading the whole file
    (lambda c: c["port"].update(ttl_s={"watch": 3600, "throtle": 1800, "block": 21600}),
     r"port\.ttl_s: unknown key\(s\) throtle"),
    (lambda c: c["port"]["ttl_s"].pop("block"), r"port\.ttl_s: missing key\(s\) block"),
    (lambda c: c["port"]["ttl_s"].update(watch=0), r"port\.ttl_s\.watch: must be above 0"),
    (lambda c: c["port"]["ttl_s"].update(watch=-60), r"port\.ttl_s\.watch: must be above 0"),
    (lambda c: c["message"].update(flag_att=1.0), r"message: unknown key\(s\) flag_att"),
    (lambda c: c["port"].update(flag_att=1.0), r"port: unknown key\(s\) flag_att"),
    (lambda c: c.update(mesage={"flag_at": 1}), r"top level: unknown key\(s\) mesage"),
    (lambda c: c["message"].update(flag_at=12, block_at=9), "flag_at .12. must be below block_at .9."),
    (lambda c: c["message"].update(flag_at=0), r"message\.flag_at: must be above 0"),
    (lambda c: c["port"].update(hysteresis=-3), r"port\.hysteresis: must be above 0"),
    (lambda c: c["port"].update(hysteresis=0), r"port\.hysteresis: must be above 0"),
    (lambda c: c["port"].update(hysteresis=1.5), r"port\.hysteresis: must be at most 1"),
    (lambda c: c["port"].update(renew_before_s=1800), r"port\.renew_before_s: must be below 1800"),
    (lambda c: c["port"].update(throttle_rate_per_min=0), r"port\.throttle_rate_per_min: must be above 0"),
    (lambda c: c["port"].update(throttle_share=0), r"port\.throttle_share: must be above 0"),
    (lambda c: c["port"].update(throttle_share=1.5), r"port\.throttle_share: must be at most 1"),
    (lambda c: c["port"].update(watch_at="1.0"), r"port\.watch_at: expected a number, got '1\.0'"),
    (lambda c: c["port"].update(min_messages_for_state=2.5), r"min_messages_for_state: expected a whole number"),
    (lambda c: c["signals"]["quiet_hours"]["params"].update(start_hour=31),
     r"signals\.quiet_hours\.params\.start_hour: must be at most 23"),
    (lambda c: c["signals"]["quiet_hours"]["params"].update(end_hour=-1), r"end_hour: must be at least 0"),
    (lambda c: c["signals"]["quiet_hours"]["params"].update(end_hour=7.5), r"end_hour: expected a whole number"),
    (lambda c: c["signals"]["spam_fanout"]["params"].update(low="many"), r"spam_fanout\.params\.low: expected a number"),
    (lambda c: c["signals"].update(scam_lure=None), r"signals\.scam_lure: expected a mapping .*got None"),
    (lambda c: c["signals"]["scam_lure"].update(weight="high"), r"signals\.scam_lure\.weight: expected a number"),
    (lambda c: c["signals"]["scam_lure"].update(weight=True), r"signals\.scam_lure\.weight: expected a number"),
    (lambda c: c["signals"]["opted_out"].update(hard_block="yes please"), r"opted_out\.hard_block: expected true"),
    (lambda c: c["signals"]["quiet_hours"].update(params=[21, 8]), r"quiet_hours\.params: expected a mapping"),
])
def test_bad_policy_files_are_refused_with_a_clear_error(mutate, message):
    config = copy.deepcopy(raw_config())
    mutate(config)
    with pytest.raises(ConfigError, match=message):
        Policy(config)


def test_the_packaged_policy_names_every_signal():
    """A policy file without a signal borrows the packaged default's entry, so the default must have them all."""
    assert Policy.load().defaulted_signals == ()
    assert set(raw_config()["signals"]) == set(ALL_SIGNALS)


def test_a_policy_written_before_a_signal_existed_still_loads_with_the_default_entry(tmp_path, caplog):
    """An operator's policy file from an older release has no entry for signals added since (declared_code_mismatch
    in session 16). It was refused ("missing signal"), so an upgrade stopped every worker that used one."""
    config = raw_config()
    config["signals"].pop("declared_code_mismatch")
    config["signals"]["quiet_hours"]["weight"] = 1.5          # the operator's own choices still hold
    path = tmp_path / "ours-2025.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    with caplog.at_level("WARNING", logger="detector.policy"):
        policy = Policy.load(path)
    default = Policy.load()
    assert policy.defaulted_signals == ("declared_code_mismatch",)
    assert set(policy.signals) == set(ALL_SIGNALS)
    assert policy.signals["declared_code_mismatch"].weight == default.signals["declared_code_mismatch"].weight
    assert policy.signals["quiet_hours"].weight == 1.5
    assert any("declared_code_mismatch" in r.getMessage() and str(path) in r.getMessage() for r in caplog.records)


def test_policy_errors_name_the_file(tmp_path):
    config = raw_config()
    config["signals"]["scam_lure"] = None
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^policy {path}: signals\.scam_lure: "):
        Policy.load(path)
    path.write_text("just a string\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^policy {path}: top level: expected a mapping"):
        Policy.load(path)


def test_policy_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="policy file"):
        Policy.load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("message: [", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        Policy.load(bad)


def test_an_engine_action_after_an_operator_release_sorts_after_it(policy):
    """Event time lags the wall clock: the engine's next throttle must not be dated before the release."""
    release = operator_action("1069", "release", "ops", "false positive", now_ms=1_000_000)
    throttle = policy.next_port_state("1069", release, 3.0, [], 1_000_000 - 3_000)     # a message 3 s old
    assert throttle.state == "throttle" and throttle.ts_ms == release.ts_ms + 1
    # since and expiry stay on the engine's own (event-time) clock
    assert throttle.since_ms == 1_000_000 - 3_000
    assert throttle.expires_at_ms == 1_000_000 - 3_000 + policy.ttl_ms["throttle"]


def test_an_operator_action_sorts_after_an_engine_action_dated_in_the_future(policy):
    """A sender clock 1 h fast dates the engine's throttle 1 h ahead; the operator's block still comes after it."""
    now = 10**12
    throttle = policy.next_port_state("1069", None, 3.0, [], now + 3_600_000)
    block = operator_action("1069", "block", "ops", "fraud", now_ms=now, expires_in_s=600, current=throttle)
    assert block.ts_ms == throttle.ts_ms + 1
    assert (block.since_ms, block.expires_at_ms) == (now, now + 600_000)
    assert operator_action("1069", "block", "ops", "fraud", now_ms=now).ts_ms == now       # nothing before it


def test_an_operator_throttle_to_zero_keeps_its_zero_rate():
    """0 means reject every message (docs/gateway.md), not "no rate given, take the default"."""
    assert operator_action("1069", "throttle", "ops", "stop it", now_ms=0, rate_limit_per_min=0).rate_limit_per_min == 0
    assert operator_action("1069", "throttle", "ops", "slow", now_ms=0).rate_limit_per_min == 60


def spam(value, fanout=0.36):
    """Port reasons of a port hovering on spam: spam_share at ``value`` (0.32 is a share of 36%) and its fan-out."""
    return [Reason("spam_share", value, 3.0), Reason("spam_fanout", fanout, 2.0)]


def risk(reasons):
    return sum(r.value * r.weight for r in reasons)


def test_a_port_kept_at_watch_on_spam_evidence_is_throttled_once_it_lasts(policy):
    """Red team #7 (s10): 35% spam for 10 minutes, then 10%, over and over, kept a port at watch, unslowed, for hours.
    Once the watch that carried the spam evidence is persistence.after_s old and the evidence is back, throttle."""
    after = policy.persist_after_ms
    watch = policy.next_port_state("1069", None, risk(spam(0.32)), spam(0.32), 0)
    assert watch.state == "watch"
    assert policy.next_port_state("1069", watch, risk(spam(0.32)), spam(0.32), after - MIN) is None
    quiet = [Reason("spam_fanout", 0.36 * 0.1 / 0.35, 2.0)]          # the 10% phase: no spam evidence
    assert policy.next_port_state("1069", watch, risk(quiet), quiet, after + MIN) is None
    throttle = policy.next_port_state("1069", watch, risk(spam(0.32)), spam(0.32), after + 2 * MIN,
                                      recent_per_min=50.0)
    assert throttle.state == "throttle" and throttle.previous_state == "watch"
    assert throttle.rate_limit_per_min == 25 and throttle.note == "at watch on spam share for 32 min"
    assert throttle.since_ms == after + 2 * MIN and throttle.expires_at_ms == after + 2 * MIN + policy.ttl_ms["throttle"]


def test_volume_or_a_compliant_campaigns_share_never_escalates_a_watch(policy):
    """Codes and 双11 campaigns are watched on volume for hours, and a campaign the classifier calls spam is 25%
    spam at most (compliant marketing counts a quarter: spam_share 0.1). Neither is spam evidence."""
    for reasons in ([Reason("port_burst", 1.0, 1.2)], [Reason("port_burst", 1.0, 1.2), Reason("spam_share", 0.1, 3.0)]):
        current = policy.next_port_state("1069", None, risk(reasons), reasons, 0)
        for now in range(0, 6 * 3_600_000, 5 * MIN):
            change = policy.next_port_state("1069", current, risk(reasons), reasons, now)
            if change is not None:
                assert change.state == "watch" and change.since_ms == 0, change      # renewals only
                current = change


def test_spam_evidence_arriving_at_a_watch_held_on_volume_starts_the_wait(policy):
    burst = [Reason("port_burst", 1.0, 1.2)]
    watch = policy.next_port_state("1069", None, 1.2, burst, 0)
    with_spam = burst + [Reason("spam_share", 0.32, 3.0)]
    marked = policy.next_port_state("1069", watch, risk(with_spam), with_spam, 40 * MIN)
    assert marked.state == "watch" and marked.since_ms == 0 and marked.ts_ms == 40 * MIN
    assert marked.note == "spam share at watch: throttled if it lasts"
    assert policy.next_port_state("1069", marked, risk(with_spam), with_spam, 41 * MIN) is None
    assert policy.next_port_state("1069", marked, risk(with_spam), with_spam,
                                  40 * MIN + policy.persist_after_ms).state == "throttle"


def test_a_throttle_stays_while_the_port_is_at_watch_on_spam_evidence_and_steps_down_once_it_is_not(policy):
    """Hysteresis as for any state: held while justified (here: at watch on spam evidence, though its risk, 1.2, is
    under 60% of throttle_at), renewed at expiry with its rate, stepping down one level once expired and unjustified."""
    watch = policy.next_port_state("1069", None, 1.6, spam(0.32), 0)
    throttle = policy.next_port_state("1069", watch, 1.6, spam(0.32), policy.persist_after_ms, recent_per_min=50.0)
    hovering = spam(0.2, 0.3)
    assert risk(hovering) < policy.thresholds["throttle"] * policy.hysteresis
    expired = throttle.expires_at_ms + 1
    renewed = policy.next_port_state("1069", throttle, risk(hovering), hovering, expired, recent_per_min=50.0)
    assert renewed.state == "throttle" and renewed.since_ms == throttle.since_ms and renewed.rate_limit_per_min == 25
    quiet = [Reason("spam_fanout", 0.1, 2.0)]
    step = policy.next_port_state("1069", throttle, risk(quiet), quiet, expired)
    assert step.state == "watch" and step.note == "throttle expired"
    # the evidence back at that watch starts the wait again
    again = policy.next_port_state("1069", step, 1.6, spam(0.32), expired + MIN)
    assert again.state == "watch" and again.note == "spam share at watch: throttled if it lasts"


def test_operators_win_over_escalation_on_persistence(policy):
    allow = operator_action("1069", "allowlist", "ops-wang", "bank OTP port", now_ms=0, expires_in_s=6 * 3600)
    for now in range(0, 6 * 3_600_000, 10 * MIN):
        assert policy.next_port_state("1069", allow, 1.6, spam(0.32), now) is None


def test_a_policy_without_persistence_keeps_a_port_at_watch(policy):
    older = raw_config()
    del older["port"]["persistence"]
    old = Policy(older)
    watch = old.next_port_state("1069", None, 1.6, spam(0.32), 0)
    assert old.next_port_state("1069", watch, 1.6, spam(0.32), 45 * MIN) is None


@pytest.mark.parametrize("mutate,message", [
    (lambda p: p.update(after_s=3001), r"port\.persistence\.after_s: must be at most 3000"),
    (lambda p: p.update(after_s=0), r"port\.persistence\.after_s: must be above 0"),
    (lambda p: p.update(spam_share=0), r"port\.persistence\.spam_share: must be above 0"),
    (lambda p: p.pop("spam_share"), r"port\.persistence: missing key\(s\) spam_share"),
    (lambda p: p.update(share=0.3), r"port\.persistence: unknown key\(s\) share"),
])
def test_bad_persistence_settings_are_refused(mutate, message):
    config = copy.deepcopy(raw_config())
    mutate(config["port"]["persistence"])
    with pytest.raises(ConfigError, match=message):
        Policy(config)
