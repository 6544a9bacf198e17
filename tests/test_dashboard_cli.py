"""The terminal side: ``smsguard ports`` (Redis or the dashboard API) and ``smsguard tail flagged``."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

from aiohttp.test_utils import TestServer

from detector.dashboard.app import DASHBOARD, create_app
from detector.events import TOPIC_DECISIONS
from detector.services import acreate_topics
from detector.state.redis import RedisStore
from test_dashboard_api import ALL_TOPICS, SPAM_PORT, decide_like_worker, engine_throttle, produce, traffic, wait_for

CLI = str(Path(sys.executable).parent / "smsguard")


def run_cli(settings, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**settings.as_env(), "PATH": "/usr/bin:/bin", "COLUMNS": "160"}
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=timeout)


async def test_ports_from_redis_and_from_the_dashboard_api(settings):
    s = settings()
    await acreate_topics(s.kafka_bootstrap, [s.topic(t) for t in ALL_TOPICS], partitions=2)
    now = int(time.time() * 1000)
    store = RedisStore(s.redis_url)
    await store.put_port_state(engine_throttle(SPAM_PORT, now))
    await store.close()

    result = run_cli(s, "ports")
    assert result.returncode == 0, result.stderr
    assert SPAM_PORT in result.stdout and "throttle" in result.stdout and "spam_share" in result.stdout

    await produce(s.kafka_bootstrap, s.topic(TOPIC_DECISIONS),
                  decide_like_worker(traffic(s.data_dir, now - 300_000, 300, spam_rate=30), {SPAM_PORT}))
    server = TestServer(create_app(s))
    await server.start_server()
    try:
        async def counted():
            return server.app[DASHBOARD].live.decisions_seen > 100

        await wait_for(counted)
        result = await asyncio.to_thread(run_cli, s, "ports", "--api", str(server.make_url("/")))
    finally:
        await server.close()
    assert result.returncode == 0, result.stderr
    first_row = next(line for line in result.stdout.splitlines() if "10690" in line)
    assert SPAM_PORT in first_row and "throttle" in first_row and "100%" in first_row


async def test_tail_flagged_prints_masked_flagged_decisions(settings):
    s = settings()
    await acreate_topics(s.kafka_bootstrap, [s.topic(t) for t in ALL_TOPICS], partitions=2)
    now = int(time.time() * 1000)
    decisions = decide_like_worker(traffic(s.data_dir, now - 120_000, 120, spam_rate=30), {SPAM_PORT})
    await produce(s.kafka_bootstrap, s.topic(TOPIC_DECISIONS), decisions)
    result = run_cli(s, "tail", "flagged", "--lookback", "1000", "--count", "5", "--json")
    assert result.returncode == 0, result.stderr
    shown = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(shown) == 5
    assert {d["port"] for d in shown} == {SPAM_PORT} and {d["action"] for d in shown} <= {"flag", "block"}
    assert all(d["recipient"].startswith("r_") and d["recipient"].endswith("…") for d in shown)

    pretty = run_cli(s, "tail", "flagged", "--lookback", "1000", "--count", "2")
    assert pretty.returncode == 0, pretty.stderr
    assert SPAM_PORT in pretty.stdout and "classifier" in pretty.stdout


def test_ports_table_prints_markup_and_control_characters_as_text(capsys, monkeypatch):
    """An operator's note is data: "[/b]" crashed the table (MarkupError), "[red]" restyled it, and control or
    bidi characters reached the terminal."""
    from detector.ops_cli import _print_ports

    monkeypatch.setenv("COLUMNS", "300")           # one line per row
    row = {**engine_throttle(SPAM_PORT, 1_731_326_400_000).as_dict(), "state_reasons": ["operator_block"],
           "decided_by": "ops[/b]", "note": "block by ops: [red]fraud[/red] [/b]\x1b[2J\u202eevil"}
    _print_ports([row], live=False)
    out = capsys.readouterr().out
    assert "[red]fraud[/red] [/b]" in out and "ops[/b]" in out
    assert "\x1b" not in out and "\u202e" not in out and "\ufffd[2J\ufffdevil" in out


def test_signatures_commands_refuse_bad_ports_and_files_before_writing(tmp_path, monkeypatch):
    """Nothing reaches Redis (there is none here): every entry is checked first, with a message, no traceback."""
    from click.testing import CliRunner

    from detector.cli import main
    from detector.services import free_port

    monkeypatch.setenv("SMSGUARD_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    runner = CliRunner()
    cases = {
        "not-a-port.txt": ("abc\t京东\n", "port must be 3-24 digits"),
        "string.json": ('{"10690801": "京东"}', "must be a list of strings"),     # registered 京 and 东
        "broken.json": ("{bad", "not valid JSON"),
        "list.json": ("[1, 2]", "must be an object"),                            # registered a port "[1,2]"
        "brackets.json": ('{"10690801": ["【】"]}', "besides its brackets"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        result = runner.invoke(main, ["signatures", "load", str(tmp_path / name)])
        assert result.exit_code != 0 and message in result.output, (name, result.output)
        assert "Traceback" not in result.output and not isinstance(result.exception, ValueError), name
    result = runner.invoke(main, ["signatures", "add", "abc", "京东"])
    assert result.exit_code != 0 and "port must be 3-24 digits" in result.output
