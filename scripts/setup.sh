# shellcheck shell=bash
# Prepares a fresh Debian machine (or does nothing if it is ready). Sourced by demo.sh and test.sh.
#
#   - Debian packages, installed with apt-get only when missing: redis-server (both), and
#     with SMSGUARD_SETUP_TEST_TOOLS=1 chromium + chromium-driver + a CJK font (browser tests),
#     docker-compose (validates docker-compose.yml; no Docker engine is needed) and openssl (the TLS
#     Redis test makes its certificates with it);
#   - .venv (python3 -m venv) with `pip install -e '.[dev]'`, redone only when pyproject.toml,
#     the Python version or the checkout's path changed (a stamp file in .venv records them).
#
# Afterwards the working directory is the repository root, so relative settings such as
# SMSGUARD_DATA_DIR=../shared/data/sms_zh resolve from there.
set -euo pipefail

SMSGUARD_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$SMSGUARD_REPO"
PYTHON="${PYTHON:-python3}"

_say() { echo "setup: $*" >&2; }

_apt_install_missing() {
    local missing=()
    command -v "$PYTHON" >/dev/null || missing+=(python3)
    # Debian splits venv/ensurepip out of python3.
    command -v "$PYTHON" >/dev/null && "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
    command -v redis-server >/dev/null || missing+=(redis-server)
    if [[ "${SMSGUARD_SETUP_TEST_TOOLS:-0}" == 1 ]]; then
        command -v chromium >/dev/null || missing+=(chromium)
        command -v chromedriver >/dev/null || missing+=(chromium-driver)
        command -v docker-compose >/dev/null || missing+=(docker-compose)
        command -v openssl >/dev/null || missing+=(openssl)
        # a CJK font, or the browser tests' screenshots show boxes for Chinese text
        [[ -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ]] || missing+=(fonts-wqy-microhei)
    fi
    ((${#missing[@]})) || return 0
    local sudo=()
    [[ "$(id -u)" -eq 0 ]] || sudo=(sudo)
    _say "installing ${missing[*]} with apt-get"
    # given to apt-get itself: sudo clears the environment, and a prompt would stop an unattended run
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

_venv_ready() {
    local stamp
    if [[ -x .venv/bin/python ]] && ! .venv/bin/python -c '' 2>/dev/null; then
        _say ".venv is broken (its Python is gone): recreating it"
        rm -rf .venv
    fi
    if [[ ! -x .venv/bin/python ]]; then
        _say "creating .venv"
        "$PYTHON" -m venv .venv
    fi
    stamp="$({ cat pyproject.toml; .venv/bin/python -VV; echo "$SMSGUARD_REPO"; } | sha256sum | cut -c1-64)"
    if [[ "$(cat .venv/.smsguard-installed 2>/dev/null)" == "$stamp" ]]; then
        return 0
    fi
    _say "pip install -e '.[dev]' (takes a few minutes the first time)"
    # pip warns about every package missing from this machine's optional local indexes: noise.
    .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]' 2>&1 \
        | { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2
    echo "$stamp" > .venv/.smsguard-installed
}

_apt_install_missing
_venv_ready

if [[ ! -d "${SMSGUARD_DATA_DIR:-../shared/data/sms_zh}" ]]; then
    _say "warning: no data at ${SMSGUARD_DATA_DIR:-../shared/data/sms_zh} (set SMSGUARD_DATA_DIR)"
fi
