"""``make cluster``: redis-server, two chat nodes and HAProxy on 127.0.0.1, in the foreground.

Open http://127.0.0.1:8080 (the load balancer) in two browsers: each lands on a node
(see /healthz) and they chat through Redis. Ctrl-C (or SIGTERM, SIGHUP) stops everything;
so does any part exiting, after the launcher says which one. A busy port is refused before
anything starts. Redis keeps its data in deploy/.data/ (append-only file), so history
outlives a restart of the cluster. With ``--fanout zmq`` (``make cluster FANOUT=zmq``) a
ZeroMQ forwarder (``python -m chatwsgi.forwarder``) carries the live frames between the
nodes instead of Redis pub/sub.
"""

import argparse
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "deploy" / ".data"
NODES = ("n1", "n2")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
START_SECONDS = 20.0  # for each part to listen
STOP_SECONDS = 10.0  # for each stage of the stop, then SIGKILL


class Stopped(Exception):
    """A stop signal came, or a part exited: the reason is the message; ``code`` the exit code."""

    def __init__(self, reason, code):
        super().__init__(reason)
        self.code = code


def program(name, fallback):
    """The path of a Debian program that may live outside a non-root PATH."""
    return shutil.which(name) or fallback


def port_is_free(port):
    """Whether a server could listen on 127.0.0.1:``port`` now. SO_REUSEADDR as our servers
    set it, so a connection lingering in TIME_WAIT does not count, a listener does."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
            probe.listen()
        except OSError:
            return False
        return True


def exit_status(code):
    """An exit code as a person reads it ('exit code 1', 'killed by SIGKILL')."""
    if code is not None and code < 0:
        return "killed by %s" % signal.Signals(-code).name
    return "exit code %s" % code


class Part:
    """One process of the cluster: its name, the port it listens on, the process once started."""

    def __init__(self, name, port, args, env=None, more_ports=()):
        self.name, self.port, self.args, self.env = name, port, [str(a) for a in args], env or {}
        self.ports = (port, *more_ports)  # every port it listens on
        self.process = None

    def __str__(self):
        return "%s (port %d)" % (self.name, self.port)

    def start(self):
        """Start it in a session of its own: Ctrl-C in the terminal reaches only the launcher,
        which stops the parts in order."""
        print("+", " ".join(self.args), flush=True)
        self.process = subprocess.Popen(self.args, env=dict(os.environ, **self.env), start_new_session=True)

    def listening(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False


class Launcher:
    """Starts the parts in order, watches them, and stops them all on a signal or a death.

    Signals and children's deaths (SIGCHLD) wake the launcher through a pipe
    (``signal.set_wakeup_fd``), so it reacts at once and never starts a part after a stop
    was asked for.
    """

    def __init__(self, parts):
        self.parts = parts
        self.stop_signal = None
        self._wakeup_read, self._wakeup_write = os.pipe()
        os.set_blocking(self._wakeup_read, False)
        os.set_blocking(self._wakeup_write, False)
        signal.set_wakeup_fd(self._wakeup_write, warn_on_full_buffer=False)
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._asked_to_stop)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # only to wake the launcher

    def _asked_to_stop(self, signum, frame):
        if self.stop_signal is None:
            self.stop_signal = signal.Signals(signum).name

    def busy_ports(self):
        """Lines naming each part whose port something else holds."""
        return [
            "port %d is busy: %s cannot listen there" % (port, part.name)
            for part in self.parts
            for port in part.ports
            if not port_is_free(port)
        ]

    def check(self):
        """Raise Stopped if a stop was asked for or a started part has exited."""
        if self.stop_signal:
            raise Stopped("%s: stopping every part" % self.stop_signal, 0)
        for part in self.parts:
            if part.process is not None and part.process.poll() is not None:
                raise Stopped(
                    "%s exited (%s): stopping the others" % (part, exit_status(part.process.returncode)), 1
                )

    def wait(self, seconds):
        """Sleep up to ``seconds``, waking at once on a signal; then check."""
        select.select([self._wakeup_read], [], [], seconds)
        try:
            while os.read(self._wakeup_read, 4096):
                pass
        except BlockingIOError:
            pass
        self.check()

    def start(self, part):
        """Start ``part`` and return once it listens (Stopped if anything dies meanwhile)."""
        self.check()
        try:
            part.start()
        except OSError as error:
            raise Stopped("could not start %s: %s: stopping the others" % (part, error), 1) from None
        deadline = time.monotonic() + START_SECONDS
        while not part.listening():
            if time.monotonic() > deadline:
                raise Stopped("%s did not listen within %d s: stopping the others" % (part, START_SECONDS), 1)
            self.wait(0.1)

    def stop(self):
        """Stop HAProxy first, then the nodes while Redis still answers, then Redis (and the
        forwarder)."""
        stages = [
            [p for p in self.parts if p.name == "haproxy"],
            [p for p in self.parts if p.name in NODES],
            [p for p in self.parts if p.name in ("redis", "forwarder")],
        ]
        for stage in stages:
            started = [part for part in stage if part.process is not None]
            for part in started:
                if part.process.poll() is None:
                    part.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + STOP_SECONDS
            for part in started:
                try:
                    part.process.wait(max(deadline - time.monotonic(), 0))
                except subprocess.TimeoutExpired:
                    print("%s did not stop within %d s: killing it" % (part, STOP_SECONDS), file=sys.stderr)
                    part.process.kill()
                    part.process.wait()
        if any(part.process is not None for part in self.parts):
            print("cluster.py: every part stopped", file=sys.stderr, flush=True)

    def close(self):
        """Stop listening for signals through the pipe; close it."""
        signal.set_wakeup_fd(-1)
        os.close(self._wakeup_read)
        os.close(self._wakeup_write)


def parse_args(argv):
    """Ports for the load balancer (its nodes take the next two) and Redis; Redis's data."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="The nodes listen on --port + 1 and --port + 2; every port must be free.",
    )
    parser.add_argument("--port", type=int, default=8080, help="HAProxy's port (default: %(default)s)")
    parser.add_argument("--redis-port", type=int, default=6390, help="Redis's port (default: %(default)s)")
    parser.add_argument(
        "--data", type=Path, default=DATA, help="Redis's data directory (default: %(default)s)"
    )
    parser.add_argument(
        "--fanout",
        choices=("redis", "zmq"),
        default="redis",
        help="the live frames' bus: Redis pub/sub, or a ZeroMQ forwarder (default: %(default)s)",
    )
    parser.add_argument(
        "--forwarder-port",
        type=int,
        default=6392,
        help="with --fanout zmq: the forwarder's publishers' port, its subscribers' the next "
        "(default: %(default)s)",
    )
    return parser.parse_args(argv)


def cluster_parts(args):
    """redis-server, the forwarder (with --fanout zmq), nodes n1 and n2, HAProxy: in the order
    they start."""
    redis_url = "redis://127.0.0.1:%d/0" % args.redis_port
    nodes = {name: args.port + n for n, name in enumerate(NODES, 1)}
    redis_server = program("redis-server", "/usr/bin/redis-server")
    parts = [
        Part(
            "redis",
            args.redis_port,
            [redis_server, ROOT / "deploy" / "redis.conf", "--port", args.redis_port, "--dir", args.data],
        )
    ]
    fanout = []
    if args.fanout == "zmq":
        forward = [sys.executable, "-m", "chatwsgi.forwarder", "--port", args.forwarder_port]
        parts.append(Part("forwarder", args.forwarder_port, forward, more_ports=[args.forwarder_port + 1]))
        fanout = ["--fanout", "zmq://127.0.0.1:%d" % args.forwarder_port]
    for name, port in nodes.items():
        serve = [sys.executable, ROOT / "serve.py", "--port", port, "--redis", redis_url, "--node", name]
        parts.append(Part(name, port, serve + fanout))
    lb_env = {"CHATWSGI_LB_BIND": "127.0.0.1:%d" % args.port}
    lb_env.update({"CHATWSGI_NODE%d" % i: "127.0.0.1:%d" % p for i, p in enumerate(nodes.values(), 1)})
    haproxy = [program("haproxy", "/usr/sbin/haproxy"), "-db", "-f", ROOT / "deploy" / "haproxy.cfg"]
    parts.append(Part("haproxy", args.port, haproxy, lb_env))
    return parts


def main(argv=None):
    """Check the ports, start the parts, wait for a stop signal or a death, stop them all."""
    args = parse_args(argv)
    parts = cluster_parts(args)
    ports = [port for part in parts for port in part.ports]
    if len(set(ports)) < len(ports):
        print("cluster.py: the parts need %d different ports, not %s" % (len(ports), ports), file=sys.stderr)
        return 2
    launcher = Launcher(parts)
    try:
        return run(launcher, args)
    finally:
        launcher.stop()
        launcher.close()


def run(launcher, args):
    """Start every part (after checking every port), then watch them; the exit code."""
    busy = launcher.busy_ports()
    if busy:
        print("cluster.py: nothing started:\n  " + "\n  ".join(busy), file=sys.stderr)
        print(
            "Stop what holds it (a cluster still running?) or choose other ports: make cluster "
            "PORT=9080, or .venv/bin/python deploy/cluster.py --port 9080 --redis-port 6391.",
            file=sys.stderr,
        )
        return 1
    args.data.mkdir(parents=True, exist_ok=True)
    try:
        for part in launcher.parts:  # Redis first; HAProxy last, so its first checks find every node up
            launcher.start(part)
        nodes = ", ".join(str(part) for part in launcher.parts if part.name in NODES)
        bus = "" if args.fanout == "redis" else "; zmq forwarder port %d" % args.forwarder_port
        print(
            "chatwsgi cluster on http://127.0.0.1:%d (nodes %s; redis port %d%s; Ctrl-C stops all)"
            % (args.port, nodes, args.redis_port, bus),
            flush=True,
        )
        while True:
            launcher.wait(None)
    except Stopped as stopped:
        print("cluster.py: %s" % stopped, file=sys.stderr, flush=True)
        return stopped.code


if __name__ == "__main__":
    sys.exit(main())
