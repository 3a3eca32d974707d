"""``make cluster``: redis-server, two chat nodes and HAProxy on 127.0.0.1, in the foreground.

Open http://127.0.0.1:8080 (the load balancer) in two browsers: each lands on a node
(see /healthz) and they chat through Redis. Ctrl-C stops everything. Redis keeps its
data in deploy/.data/ (append-only file), so history outlives a restart of the cluster.
"""

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "deploy" / ".data"


def program(name, fallback):
    """The path of a Debian program that may live outside a non-root PATH."""
    return shutil.which(name) or fallback


def start(args, env=None):
    """Start one part in a session of its own: Ctrl-C reaches only this script, which stops
    the parts in order (HAProxy, then the nodes while Redis still answers, then Redis)."""
    print("+", " ".join(str(a) for a in args), flush=True)
    return subprocess.Popen(
        [str(a) for a in args], env=dict(os.environ, **(env or {})), start_new_session=True
    )


def wait_for_port(port, seconds=20.0):
    """Return once 127.0.0.1:``port`` accepts connections (or raise after ``seconds``)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("nothing listens on 127.0.0.1:%d" % port) from None
            time.sleep(0.1)


def parse_args(argv):
    """Ports for the load balancer (its nodes take the next two) and Redis; Redis's data."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080, help="HAProxy's port")
    parser.add_argument("--redis-port", type=int, default=6390)
    parser.add_argument("--data", type=Path, default=DATA, help="Redis's data directory")
    return parser.parse_args(argv)


def main(argv=None):
    """Start the parts, wait for Ctrl-C (or any part to exit), stop them all."""
    args = parse_args(argv)
    args.data.mkdir(parents=True, exist_ok=True)
    redis_url = "redis://127.0.0.1:%d/0" % args.redis_port
    nodes = {"n1": args.port + 1, "n2": args.port + 2}
    parts = [
        start(
            [program("redis-server", "/usr/bin/redis-server"), ROOT / "deploy" / "redis.conf"]
            + ["--port", args.redis_port, "--dir", args.data]
        )
    ]
    wait_for_port(args.redis_port)
    for name, port in nodes.items():
        parts.append(
            start([sys.executable, ROOT / "serve.py", "--port", port, "--redis", redis_url, "--node", name])
        )
    for port in nodes.values():
        wait_for_port(port)  # so HAProxy's first checks find every node up
    lb_env = {"CHATWSGI_LB_BIND": "127.0.0.1:%d" % args.port}
    lb_env.update({"CHATWSGI_NODE%d" % i: "127.0.0.1:%d" % p for i, p in enumerate(nodes.values(), 1)})
    parts.append(
        start([program("haproxy", "/usr/sbin/haproxy"), "-db", "-f", ROOT / "deploy" / "haproxy.cfg"], lb_env)
    )
    wait_for_port(args.port)
    print(
        "chatwsgi cluster on http://127.0.0.1:%d (nodes %s; Ctrl-C stops all)" % (args.port, nodes),
        flush=True,
    )
    try:
        while all(part.poll() is None for part in parts):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    for part in reversed(parts):
        if part.poll() is None:
            part.send_signal(signal.SIGTERM)
        part.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
