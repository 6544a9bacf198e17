#!/usr/bin/env bash
# Instructions the replay engine executes per event, counted by valgrind (callgrind): a deterministic figure
# for A/B comparisons of engine changes on a shared, noisy machine, where CPU-time benchmarks of one change
# can differ by ±20 % from run to run. Counts parsing, the engine with the in-process store, and encoding each
# decision; the model is out of it (a fixed scorer), so the figure is about the engine's own code.
#
#   scripts/engine_instructions.sh [EVENTS]        # default 10,000 events of `smsguard bench replay`'s traffic
#   SMSGUARD_COUNT_MODEL=1 scripts/engine_instructions.sh   # the promoted model instead of a fixed scorer (~3 min)
#
# Runs the same program twice under callgrind, over 0 and over EVENTS events, and prints the difference per
# event (imports and start-up cancel out). Needs valgrind (Debian: apt-get install valgrind); ~1 minute.
set -euo pipefail
cd "$(dirname "$0")/.."
events="${1:-10000}"
python="${PYTHON:-.venv/bin/python}"
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 2; }
traffic="${TMPDIR:-/tmp}/smsguard-engine-instructions.jsonl"
"$python" - "$traffic" <<'EOF'
import sys
from pathlib import Path
from detector.settings import Settings
from detector.simulator import TrafficSimulator, write_jsonl
path = Path(sys.argv[1])
if not path.exists():      # the traffic of `smsguard bench replay --minutes 20` (20 ports, seed 11)
    sim = TrafficSimulator(Settings.from_env().data_dir, seed=11)
    write_jsonl(sim.events(sim.default_profiles(20), 1_731_337_200_000, 20 * 60), path)
EOF
count() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$python" scripts/engine_instructions.py "$traffic" "$1" 2>&1 \
    | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
idle=$(count 0)
busy=$(count "$events")
echo "$(( (busy - idle) / events )) instructions per event ($events events; $(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
