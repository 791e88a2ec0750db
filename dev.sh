#!/usr/bin/env bash
# The two set-up commands of the README, each self-contained on a fresh machine:
#   ./dev.sh demo   -> installs what the main job needs (Blender's bpy included), then runs `headsplat demo`
#   ./dev.sh test   -> installs the test extras, then runs the whole test suite
# Extra arguments go to the command (e.g. ./dev.sh test -k protocol, ./dev.sh demo --out DIR).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
VENV=${HEADSPLAT_VENV:-.venv}

ensure_venv() {
    if [ ! -x "$VENV/bin/python" ]; then
        "$PY" -m venv "$VENV"
        "$VENV/bin/python" -m pip install -q --upgrade pip
    fi
}

install() {  # $1: extras spec, e.g. "[blender]" or "[test]"
    local stamp="$VENV/.installed$1"
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
        # torch first and alone, so the pinned CPU build is taken before anything asks for "torch"
        "$VENV/bin/python" -m pip install -q -c constraints.txt "torch==2.13.0"
        "$VENV/bin/python" -m pip install -q -c constraints.txt -e ".$1"
        touch "$stamp"
    fi
}

# What `./dev.sh demo` installs; tests/test_demo.py reads this line to check that every module
# the demo imports comes with it.
DEMO_EXTRAS="[blender]"

cmd=${1:-}
shift || true
case "$cmd" in
    demo)
        ensure_venv; install "$DEMO_EXTRAS"
        exec "$VENV/bin/headsplat" demo "$@" ;;
    test)
        ensure_venv; install "[test]"
        # two workers (HEADSPLAT_TEST_WORKERS; 0 runs in one process): a test file runs whole on
        # one worker (tests/conftest.py), and the suite uses both cores of a CI machine
        exec "$VENV/bin/python" -m pytest -n "${HEADSPLAT_TEST_WORKERS:-2}" --dist loadfile "$@" ;;
    *)
        echo "usage: ./dev.sh demo|test [args...]" >&2; exit 2 ;;
esac
