"""``make cluster``: redis-server, two chat nodes and HAProxy on 127.0.0.1, in the foreground.

Open http://127.0.0.1:8080 (the load balancer) in two browsers: each lands on a node
(see /healthz) and they chat through Redis. Ctrl-C stops everything. Redis keeps its
data in deploy/.data/ (append-only file), so history outlives a restart of the cluster.
"""

import argparse
import os
import shutil
import signal
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
    """Start one part in the foreground process group of this script."""
    print("+", " ".join(str(a) for a in args), flush=True)
    return subprocess.Popen([str(a) for a in args], env=dict(os.environ, **(env or {})))


def parse_args(argv):
    """Ports for the load balancer, its two nodes and Redis."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080, help="HAProxy's port")
    parser.add_argument("--redis-port", type=int, default=6390)
    return parser.parse_args(argv)


def main(argv=None):
    """Start the parts, wait for Ctrl-C (or any part to exit), stop them all."""
    args = parse_args(argv)
    DATA.mkdir(parents=True, exist_ok=True)
    redis_url = "redis://127.0.0.1:%d/0" % args.redis_port
    nodes = {"n1": args.port + 1, "n2": args.port + 2}
    parts = [
        start(
            [program("redis-server", "/usr/bin/redis-server"), "--bind", "127.0.0.1"]
            + ["--port", args.redis_port, "--dir", DATA, "--appendonly", "yes", "--save", ""]
        )
    ]
    time.sleep(0.5)  # a human-facing launcher: a node that starts first retries Redis anyway
    for name, port in nodes.items():
        parts.append(
            start([sys.executable, ROOT / "serve.py", "--port", port, "--redis", redis_url, "--node", name])
        )
    lb_env = {"CHATWSGI_LB_BIND": "127.0.0.1:%d" % args.port}
    lb_env.update({"CHATWSGI_NODE%d" % i: "127.0.0.1:%d" % p for i, p in enumerate(nodes.values(), 1)})
    parts.append(
        start([program("haproxy", "/usr/sbin/haproxy"), "-db", "-f", ROOT / "deploy" / "haproxy.cfg"], lb_env)
    )
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
    for part in parts:
        part.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
