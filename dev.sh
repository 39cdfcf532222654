#!/usr/bin/env bash
# One entry point for a fresh machine: creates .venv, installs the project with its extras
# (again only when pyproject.toml changed), then runs the demo or the checks and tests.
#   ./dev.sh demo [ARGS...]   the embedded default: ccc-bridge demo
#   ./dev.sh test [PYTEST ARGS...]   ruff, mypy strict, then the test suite (TEST_WORKERS at
#                                    once, default 3; 0: in this process)
#   ./dev.sh run ARGS...      any ccc-bridge command inside the environment
set -euo pipefail
cd "$(dirname "$0")"

python_bin="${PYTHON:-python3}"
venv=".venv"
stamp="$venv/.installed"

setup() {
    if [ ! -x "$venv/bin/python" ]; then
        "$python_bin" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
            || { echo "dev.sh: Python 3.11 or newer is required (set PYTHON=...)" >&2; exit 1; }
        "$python_bin" -m venv "$venv"
    fi
    want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        echo "dev.sh: installing the project and its extras into $venv (log: $venv/install.log)" >&2
        # pip's chatter goes to a log that is shown only if the install fails.
        if ! { "$venv/bin/python" -m pip install --disable-pip-version-check --upgrade pip &&
            "$venv/bin/python" -m pip install --disable-pip-version-check -e ".[broker,test,dev,bench]"; \
            } > "$venv/install.log" 2>&1; then
            cat "$venv/install.log" >&2
            exit 1
        fi
        echo "$want" > "$stamp"
    fi
}

# promtool, Prometheus' rule checker for tests/deploy/test_monitoring.py: the one binary from
# Debian's prometheus package, unpacked into the venv (no root install, no daemon). Without it
# those tests fail and say so.
promtool="$venv/tools/promtool"
fetch_promtool() {
    [ -x "$promtool" ] && return
    echo "dev.sh: fetching promtool from Debian's prometheus package (log: $venv/promtool.log)" >&2
    local tmp dest="$PWD/$promtool"
    tmp="$(mktemp -d)"
    mkdir -p "$(dirname "$dest")"
    if ! (cd "$tmp" && { apt-get download prometheus || { apt-get update && apt-get download prometheus; }; } &&
        dpkg-deb --fsys-tarfile prometheus_*.deb | tar -xO ./usr/bin/promtool > promtool &&
        chmod +x promtool && mv promtool "$dest") > "$venv/promtool.log" 2>&1; then
        echo "dev.sh: could not fetch promtool, see $venv/promtool.log" >&2
    fi
    rm -rf "$tmp"
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
    demo)
        setup
        exec "$venv/bin/ccc-bridge" demo "$@"
        ;;
    test)
        setup
        fetch_promtool
        "$venv/bin/ruff" check .
        "$venv/bin/ruff" format --check .
        "$venv/bin/mypy"
        # The suite mostly waits (brokers, emulators, deadlines): three workers on two cores
        # take it from about 8.5 to about 3.5 minutes. A file's tests stay on one worker.
        exec "$venv/bin/pytest" -n "${TEST_WORKERS:-3}" --dist loadfile "$@"
        ;;
    run)
        setup
        exec "$venv/bin/ccc-bridge" "$@"
        ;;
    *)
        echo "usage: ./dev.sh demo|test|run [ARGS...]" >&2
        exit 2
        ;;
esac
