"""`smsguard replay` end to end through the CLI: dead letters, determinism, summaries, comparing policies."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from detector.cli import main
from detector.policy import DEFAULT_POLICY_FILE
from detector.settings import Settings
from detector.simulator import PortProfile, TrafficSimulator, write_jsonl

T0 = 1_731_337_200_000   # 23:00 China time


def smsguard(*args, cwd):
    return subprocess.run([sys.executable, "-m", "detector.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_replay_cli_writes_every_decision_and_dead_letter_deterministically(tmp_path):
    root = Path(__file__).resolve().parents[1]
    sim = TrafficSimulator(Settings.from_env({}).data_dir, seed=3)
    profiles = [PortProfile("10690001", "notification", 60), PortProfile("10690002", "spam", 120, signatures=())]
    events = list(sim.events(profiles, T0, 5 * 60))
    optout = sim.optout(events[0])
    path = tmp_path / "events.jsonl"
    write_jsonl(events + [optout], path)
    with open(path, "ab") as fh:                       # two broken lines must come out as dead letters
        fh.write(b'{"msg_id": "bad", "ts": "yesterday"}\n\xff\xfe not utf-8\n')
    stricter = yaml.safe_load(DEFAULT_POLICY_FILE.read_text(encoding="utf-8"))
    stricter["port"].update(watch_at=0.5, throttle_at=1.0, block_at=2.0)
    strict_path = tmp_path / "strict.yaml"
    strict_path.write_text(yaml.safe_dump(stricter, allow_unicode=True), encoding="utf-8")

    runs = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.jsonl"
        proc = smsguard("replay", str(path), "-o", str(out), "--summary", str(tmp_path / f"{name}.json"),
                        "--batch-size", "100", cwd=root)
        assert proc.returncode == 0, proc.stderr
        assert "events/s" in proc.stdout
        runs.append(out.read_bytes())
    assert runs[0] == runs[1], "replay must be byte-for-byte deterministic"
    records = [json.loads(line) for line in runs[0].splitlines()]
    decisions = [r for r in records if r["type"] == "decision"]
    dead = [r for r in records if r["type"] == "dead_letter"]
    assert len(decisions) == len(events) and len({d["msg_id"] for d in decisions}) == len(events)
    assert len(dead) == 2 and all(d["reason"] for d in dead)
    assert any(r["type"] == "port_action" and r["port"] == "10690002" for r in records)
    summary = json.loads((tmp_path / "a.json").read_text(encoding="utf-8"))
    assert summary["ports"]["10690002"]["peak_state"] in ("throttle", "block")
    assert summary["ports"]["10690001"]["messages"] == sum(e["port"] == "10690001" for e in events)

    proc = smsguard("replay", str(path), "--versus", str(strict_path), "--summary", str(tmp_path / "ab.json"), cwd=root)
    assert proc.returncode == 0, proc.stderr
    both = json.loads((tmp_path / "ab.json").read_text(encoding="utf-8"))
    assert set(both) == {"A", "B"} and both["B"]["policy"] == str(strict_path)


def test_replay_refuses_a_bad_policy_with_a_clear_error(tmp_path):
    root = Path(__file__).resolve().parents[1]
    events = tmp_path / "e.jsonl"
    events.write_text("", encoding="utf-8")
    bad = tmp_path / "bad.yaml"
    bad.write_text("message: {flag_at: 1}\n", encoding="utf-8")
    proc = smsguard("replay", str(events), "--config", str(bad), "--no-model", cwd=root)
    assert proc.returncode == 2 and "policy" in proc.stderr and "Traceback" not in proc.stderr


def test_bench_replay_repeats_cold_and_reports_the_median():
    """Each run starts with a cold template cache, so every run scores the same new templates."""
    result = smsguard("bench", "replay", "--minutes", "1", "--ports", "6", "--repeat", "2",
                      cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr
    runs = [line for line in result.stdout.splitlines() if line.startswith("run ")]
    assert len(runs) == 2
    hit_rates = [line.rsplit("template cache ", 1)[1] for line in runs]
    assert hit_rates[0] == hit_rates[1] != "100% hits"
    assert "median of 2" in result.stdout


def test_a_repeated_msg_id_is_decided_once_whatever_the_batch_size(tmp_path):
    """Replay keeps no decisions for redelivery: a repeat in a later batch was once decided again (read-only), so
    the output depended on the batch size and a msg_id could get two different decisions."""
    from detector.replay import run_replay
    line = {"msg_id": "d1", "ts": T0, "port": "10690001", "recipient": "13812345678",
            "content": "【京东】双11大促，全场5折，回T退订", "category": "marketing"}
    optout = {"type": "optout", "ts": T0 + 60_000, "recipient": "13812345678", "port": "10690001", "signature": "京东"}
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(e, ensure_ascii=False) for e in
                              (line, optout, {**line, "ts": T0 + 120_000}, line)) + "\n", encoding="utf-8")
    outputs = []
    for batch_size in (1, 2, 500):
        out = tmp_path / f"out{batch_size}.jsonl"
        stats = run_replay(path, out, Settings.from_env({}), batch_size=batch_size)
        decisions = [json.loads(r) for r in out.read_text(encoding="utf-8").splitlines()]
        assert [d["msg_id"] for d in decisions if d["type"] == "decision"] == ["d1"], batch_size
        assert stats.duplicates == 2
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1] == outputs[2]


def _one_event_file(tmp_path) -> Path:
    path = tmp_path / "events.jsonl"
    sim = TrafficSimulator(Settings.from_env({}).data_dir, seed=3)
    write_jsonl(list(sim.events([PortProfile("10690001", "notification", 60)], T0, 5))[:1], path)
    return path


@pytest.mark.parametrize("args,env", [
    (["--batch-size", "-1"], {}), (["--batch-size", "0"], {}),
    ([], {"SMSGUARD_BATCH_SIZE": "-5"}), ([], {"SMSGUARD_BATCH_SIZE": "0"}),
])
def test_replay_refuses_a_batch_size_below_one(tmp_path, args, env):
    """A negative batch size used to replay nothing and report success; 0 fell back or crashed in range()."""
    result = CliRunner().invoke(main, ["replay", str(_one_event_file(tmp_path)), "--no-model", *args], env=env)
    assert result.exit_code == 2 and "events/s" not in result.output, result.output
    assert isinstance(result.exception, SystemExit)     # a one-line error, no traceback
    assert "batch-size" in result.output or "SMSGUARD_BATCH_SIZE: must be at least 1" in result.output


def test_bench_replay_refuses_a_batch_size_below_one():
    result = CliRunner().invoke(main, ["bench", "replay", "--batch-size", "0"])
    assert result.exit_code == 2 and "--batch-size" in result.output


@pytest.mark.parametrize("option", ["-o", "--summary"])
def test_replay_refuses_an_output_in_a_missing_directory_before_replaying(tmp_path, option):
    """It was a FileNotFoundError traceback, for --summary only after the whole replay had run."""
    result = CliRunner().invoke(main, ["replay", str(_one_event_file(tmp_path)), "--no-model",
                                       option, str(tmp_path / "nodir" / "out")])
    assert result.exit_code == 2 and "no directory" in result.output, result.output
    assert "events/s" not in result.output


def test_replay_model_by_name_resolves_through_the_registry_outside_the_repo(tmp_path, monkeypatch):
    """Like `evaluate --model`: a relative SMSGUARD_MODELS_DIR falls back to the repository's models/."""
    from detector.registry import Registry
    name = Registry().promoted_name()
    events = _one_event_file(tmp_path)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["replay", str(events), "--model", name, "--summary", "s.json"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "s.json").read_text(encoding="utf-8"))["model"].startswith(f"{name}@")
    result = CliRunner().invoke(main, ["replay", str(events), "--model", "no-such-model"])
    assert result.exit_code == 2 and "no model named 'no-such-model'" in result.output


def test_replay_versus_names_the_model_on_both_sides_and_shows_whole_ports(tmp_path):
    sim = TrafficSimulator(Settings.from_env({}).data_dir, seed=3)
    ports = ["10695501230001", "10695501230002", "10695501230003"]
    path = tmp_path / "events.jsonl"
    write_jsonl(sim.events([PortProfile(p, "notification", 60) for p in ports], T0, 30), path)
    result = CliRunner().invoke(main, ["replay", str(path), "--no-model", "--versus", str(DEFAULT_POLICY_FILE),
                                       "--summary", str(tmp_path / "ab.json")], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    both = json.loads((tmp_path / "ab.json").read_text(encoding="utf-8"))
    assert both["A"]["model"] == both["B"]["model"] == "none"
    for port in ports:       # ports share long prefixes: cut, they looked identical
        assert port in result.output


def test_signals_listing_shows_summaries_not_doctests():
    result = CliRunner().invoke(main, ["signals"])
    assert result.exit_code == 0, result.output
    assert ">>>" not in result.output
    from detector.signals import ALL_SIGNALS
    assert len(result.output.splitlines()) == len(ALL_SIGNALS)     # one line a signal


def test_replay_judges_signatures_by_a_registry_file_on_both_sides_of_versus(tmp_path):
    """Without --signatures no port has an entry, so unregistered_signature never fired in a backtest."""
    events = tmp_path / "events.jsonl"
    write_jsonl([{"msg_id": f"m{i}", "ts": "2024-11-12T10:00:00+08:00", "port": "10690001",
                  "recipient": f"1380013{i:04d}", "signature": sig, "category": "notification",
                  "content": f"【{sig}】您的订单{i}已发货，请注意查收。"} for i, sig in enumerate(["京东", "优品汇"])], events)
    registry = tmp_path / "registry.tsv"
    registry.write_text("# port\tsignatures\n10690001\t京东\n", encoding="utf-8")

    def reasons(args) -> dict[str, set[str]]:
        out = tmp_path / "out.jsonl"
        result = CliRunner().invoke(main, ["replay", str(events), "--no-model", "-o", str(out), *args])
        assert result.exit_code == 0, result.output
        return {d["msg_id"]: {r["signal"] for r in d["reasons"]}
                for d in map(json.loads, out.read_text(encoding="utf-8").splitlines()) if d["type"] == "decision"}

    assert not any("unregistered_signature" in names for names in reasons([]).values())
    judged = reasons(["--signatures", str(registry)])
    assert "unregistered_signature" not in judged["m0"] and "unregistered_signature" in judged["m1"]

    result = CliRunner().invoke(main, ["replay", str(events), "--no-model", "--signatures", str(registry),
                                       "--versus", str(DEFAULT_POLICY_FILE), "--summary", str(tmp_path / "ab.json")])
    assert result.exit_code == 0, result.output
    both = json.loads((tmp_path / "ab.json").read_text(encoding="utf-8"))
    assert both["A"]["signatures"] == both["B"]["signatures"] == str(registry)
    assert both["A"]["actions"] == both["B"]["actions"]        # the same policy and registry on both sides


def test_replay_refuses_a_bad_registry_file_before_replaying(tmp_path):
    registry = tmp_path / "registry.json"
    registry.write_text('{"10690001": "京东"}', encoding="utf-8")
    result = CliRunner().invoke(main, ["replay", str(_one_event_file(tmp_path)), "--no-model",
                                       "--signatures", str(registry)])
    assert result.exit_code != 0 and "signatures must be a list of strings" in result.output, result.output
    assert "events/s" not in result.output
