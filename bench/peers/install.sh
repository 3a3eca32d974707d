#!/usr/bin/env bash
# Installs the peer servers the chatwsgi benchmark is compared against:
#   bench/peers/pysio-venv  python-socketio + gevent + gevent-websocket (own venv:
#                           the `socketio` import name collides in the main venv)
#   bench/peers/node        socket.io@4 (npm)
#   bench/peers/versions.json  exact installed versions
# Run from the repo root: bash bench/peers/install.sh   (idempotent; stamp files)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PEERS="$ROOT/bench/peers"
VENV="$PEERS/pysio-venv"
NODE_DIR="$PEERS/node"
VERSIONS="$PEERS/versions.json"

PY_STAMP="$VENV/.installed.stamp"
NODE_STAMP="$NODE_DIR/.installed.stamp"

# 1. python-socketio peer in its own venv
if [[ ! -f "$PY_STAMP" || ! -x "$VENV/bin/python" ]]; then
    echo "install.sh: creating $VENV" >&2
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade \
        python-socketio gevent gevent-websocket
    "$VENV/bin/python" -c 'import socketio, engineio, gevent, geventwebsocket'
    date -u +%FT%TZ > "$PY_STAMP"
fi

# 2. node socket.io@4 peer
if [[ ! -f "$NODE_STAMP" || ! -f "$NODE_DIR/node_modules/socket.io/package.json" ]]; then
    echo "install.sh: installing socket.io@4 into $NODE_DIR" >&2
    mkdir -p "$NODE_DIR"
    npm install --prefix "$NODE_DIR" socket.io@4 --no-audit --no-fund --loglevel=error >&2
    date -u +%FT%TZ > "$NODE_STAMP"
fi

# 3. versions.json (rewritten when missing or older than a stamp)
if [[ ! -f "$VERSIONS" || "$PY_STAMP" -nt "$VERSIONS" || "$NODE_STAMP" -nt "$VERSIONS" ]]; then
    SIO_VERSION="$(node -p "require('$NODE_DIR/node_modules/socket.io/package.json').version")"
    NODE_VERSION="$(node -p 'process.versions.node')"
    "$VENV/bin/python" - "$VERSIONS" "$SIO_VERSION" "$NODE_VERSION" <<'PY'
import json, sys
from importlib.metadata import version
out, sio, node = sys.argv[1:4]
data = {name: version(name) for name in
        ("python-socketio", "python-engineio", "gevent", "gevent-websocket")}
data["socket.io"] = sio
data["node"] = node
with open(out + ".tmp", "w") as f:
    json.dump(data, f, indent=2)
    f.write("\n")
import os
os.replace(out + ".tmp", out)
PY
fi

cat "$VERSIONS"
