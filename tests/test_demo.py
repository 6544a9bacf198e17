"""`smsguard demo --duration 30`: it runs the whole system, prints decisions, and leaves no process behind."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from detector.demo import sim_start_before_midnight, smsguard_argv

from conftest import DATA_DIR

REPO = Path(__file__).resolve().parents[1]


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def still_running(procs: list[psutil.Process]) -> list[str]:
    alive = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{p.pid} {' '.join(p.cmdline())[:80]}")
        except psutil.NoSuchProcess:
            pass
    return alive


def run_demo(tmp_path: Path, duration: float, stop_with: int | None = None):
    env = {**os.environ, "SMSGUARD_DATA_DIR": str(DATA_DIR), "SMSGUARD_LOG_LEVEL": "WARNING"}
    out_path = tmp_path / "demo.out"
    argv = smsguard_argv("demo", "--duration", str(duration), "--rate", "80", "--night-in", "5")
    proc = subprocess.Popen(argv, env=env, cwd=REPO, stdout=open(out_path, "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    seen: dict[int, psutil.Process] = {}
    deadline = time.monotonic() + duration + 120
    signalled = False
    while proc.poll() is None and time.monotonic() < deadline:
        for child in descendants(proc.pid):     # broker, redis, worker, dashboard (and their children)
            seen.setdefault(child.pid, child)
        if stop_with is not None and not signalled and len(seen) >= 4 and "sent" in out_path.read_text(errors="replace"):
            proc.send_signal(stop_with)
            signalled = True
        time.sleep(0.5)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"demo did not stop:\n{out_path.read_text(errors='replace')[-3000:]}")
    time.sleep(0.5)
    return proc.returncode, out_path.read_text(errors="replace"), list(seen.values())


def test_demo_runs_prints_decisions_and_leaves_no_process(tmp_path):
    rc, output, children = run_demo(tmp_path, 30)
    assert rc == 0, output[-3000:]
    final = output[output.index("final:"):]
    decisions = int(re.search(r"decisions (\d+)", final).group(1))
    assert decisions > 100, output[-3000:]
    assert re.search(r"allow \d+", final) and "gateway verdicts" in final
    assert len(children) >= 3, children         # tansu, redis-server, worker (dashboard when it exists)
    assert not still_running(children), still_running(children)


def test_sigterm_stops_the_demo_and_its_children(tmp_path):
    rc, output, children = run_demo(tmp_path, 300, stop_with=signal.SIGTERM)
    assert rc == 0, output[-3000:]
    assert "stopped: broker, redis, worker" in output
    assert len(children) >= 3 and not still_running(children), still_running(children)


def test_simulated_clock_starts_just_before_local_midnight():
    now = int(time.time() * 1000)
    start = sim_start_before_midnight(now, 20)
    assert now - 86_400_000 - 20_000 < start <= now - 20_000 + 1
    assert (start + 20_000 + 8 * 3_600_000) % 86_400_000 == 0
