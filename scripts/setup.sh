#!/usr/bin/env bash
# Set up a fresh machine for ProxyStore: redis-server (Debian package) and a
# virtual environment in .venv with the package (editable) and every extra.
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
        SUDO=""
        [ "$(id -u)" -ne 0 ] && SUDO="sudo"
        echo "setup: installing redis-server with apt-get" >&2
        $SUDO apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
    else
        echo "setup: redis-server not found and apt-get unavailable; Redis tests will be skipped" >&2
    fi
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv" >&2
    "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
fi
stamp=.venv/.proxystore-installed
stale=""
for source in pyproject.toml setup.py proxystore/*.c; do  # the C accelerators rebuild too
    [ -f "$stamp" ] && [ ! "$source" -nt "$stamp" ] || stale=1
done
if [ -n "$stale" ]; then
    echo "setup: installing proxystore[all,dev,docs] into .venv" >&2
    .venv/bin/python -m pip install -q -e '.[all,dev,docs]'
    touch "$stamp"
fi
