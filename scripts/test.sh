#!/usr/bin/env bash
# The test suite: bash scripts/test.sh [pytest args...]   (e.g. -m "not browser", -k services, -x)
set -euo pipefail
SMSGUARD_SETUP_TEST_TOOLS=1
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
exec .venv/bin/python -m pytest -q -ra --durations=15 "$@"
