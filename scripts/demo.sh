#!/usr/bin/env bash
# The demo end to end: bash scripts/demo.sh [smsguard demo options...]   (see: bash scripts/demo.sh --help)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
exec .venv/bin/smsguard demo "$@"
