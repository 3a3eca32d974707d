"""`make cluster`'s launcher: redis-server, two nodes and HAProxy up; all gone after SIGINT,
SIGTERM or SIGHUP, or after one part dies (named); a busy port refused before anything starts."""

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.request import Request, urlopen

import pytest

from tests.support.chatting import chatter, wait_until
from tests.support.cluster import ROOT, free_port, free_ports_in_a_row

pytestmark = [pytest.mark.live, pytest.mark.slow]

LAUNCHER = ROOT / "deploy" / "cluster.py"


def three_free_ports():
    """A port whose next two are free as well (the launcher's nodes take them)."""
    return free_ports_in_a_row(3)


def held_port(busy):
    """(a listening socket on the ``busy`` part's port, every part's port). The ports were
    free when chosen; another process may take one before the bind, so choose again then."""
    for _ in range(10):
        port = three_free_ports()
        ports = {"haproxy": port, "n1": port + 1, "n2": port + 2, "redis": redis_port_beside(port)}
        holder = socket.socket()
        try:
            holder.bind(("127.0.0.1", ports[busy]))
        except OSError:
            holder.close()
            continue
        holder.listen()
        return holder, ports
    raise RuntimeError("no port to hold")


def redis_port_beside(port):
    """A free port for Redis that is none of the three from ``port``."""
    while True:
        candidate = free_port()
        if candidate not in range(port, port + 3):
            return candidate


def _free(port):
    """Whether a server could listen on the port now (SO_REUSEADDR, as servers bind)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
            probe.listen()
            return True
        except OSError:
            return False


def _listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def health(port, cookie=None):
    request = Request("http://127.0.0.1:%d/healthz" % port, headers={"Cookie": cookie} if cookie else {})
    with urlopen(request, timeout=5) as reply:
        return json.load(reply), reply.headers.get("Set-Cookie", "")


def live_processes():
    """(pid, parent pid, start time, command line) of every process not a zombie."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            state, parent, started = _stat(int(entry))
            command = Path("/proc", entry, "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # gone meanwhile
        if state != "Z":
            yield int(entry), parent, started, command


def children_of(pid):
    """The live processes whose parent is ``pid``: {pid: (start time, command line)}."""
    found = live_processes()
    return {child: (started, command) for child, parent, started, command in found if parent == pid}


def _stat(pid):
    """(state, parent pid, start time) of a process, from /proc/<pid>/stat."""
    fields = Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()
    return fields[0], int(fields[1]), fields[19]


def alive(pid, started):
    """Whether the process ``pid`` that started at ``started`` still runs (not a zombie)."""
    try:
        state, _, start = _stat(pid)
    except OSError:
        return False
    return start == started and state != "Z"


class Launcher:
    """``python deploy/cluster.py`` on its own ports; its output read with deadlines."""

    def __init__(self, data, port=None, redis_port=None, fanout="redis"):
        self.port = port or three_free_ports()
        self.redis_port = redis_port or redis_port_beside(self.port)
        self.ports = {
            "haproxy": self.port,
            "n1": self.port + 1,
            "n2": self.port + 2,
            "redis": self.redis_port,
        }
        bus = ["--fanout", fanout]
        if fanout == "zmq":
            self.ports["forwarder"] = free_ports_in_a_row(2)
            self.ports["forwarder's subscribers"] = self.ports["forwarder"] + 1
            bus += ["--forwarder-port", str(self.ports["forwarder"])]
        self.process = subprocess.Popen(
            [sys.executable, str(LAUNCHER), "--port", str(self.port)]
            + ["--redis-port", str(self.redis_port), "--data", str(data), *bus],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.output = b""

    def text(self):
        return self.output.decode("utf-8", "replace")

    def read_until(self, wanted, timeout=30):
        """Read output until it holds ``wanted`` (raise with the output after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while wanted not in self.text():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("no %r within %d s in:\n%s" % (wanted, timeout, self.text()))
            if select.select([self.process.stdout], [], [], min(remaining, 0.5))[0]:
                chunk = os.read(self.process.stdout.fileno(), 65536)
                if not chunk:
                    raise AssertionError("output ended without %r:\n%s" % (wanted, self.text()))
                self.output += chunk

    def up(self):
        """Wait for the banner; the parts' processes, by name."""
        self.read_until("chatwsgi cluster on http://127.0.0.1:%d" % self.port)
        children = children_of(self.process.pid)
        by_name = {}
        for pid, (started, command) in children.items():
            name = next((n for n, marker in NAMES.items() if marker in command), command)
            by_name[name] = (pid, started)
        assert set(by_name) == {"redis", "n1", "n2", "haproxy"} | ({"forwarder"} & set(self.ports)), children
        return by_name

    def finish(self, timeout=30):
        """Wait for the launcher to exit; read the rest of its output; its exit code."""
        code = self.process.wait(timeout)
        rest = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and select.select([self.process.stdout], [], [], 1)[0]:
            chunk = os.read(self.process.stdout.fileno(), 65536)
            if not chunk:
                break
            rest += chunk
        self.output += rest
        return code

    def close(self):
        """Kill the launcher if a failed test left it running (its children then stay: the
        test failed already), and close its pipe."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()


# How each part's command line is recognised.
NAMES = {"redis": "redis-server", "n1": "--node n1", "n2": "--node n2", "haproxy": "haproxy"}
NAMES["forwarder"] = "chatwsgi.forwarder"


@pytest.fixture
def launchers():
    """Launchers started by the test, closed after it."""
    started = []
    yield started
    for launcher in started:
        launcher.close()


def assert_all_gone(launcher, parts):
    """No part's process is left and every port is free again (within a deadline)."""
    wait_until(lambda: not any(alive(pid, started) for pid, started in parts.values()), timeout=10)
    wait_until(lambda: all(_free(port) for port in launcher.ports.values()), timeout=10)


def test_the_cluster_launcher_serves_through_haproxy_and_stops_everything(tmp_path, launchers):
    launcher = Launcher(tmp_path)
    launchers.append(launcher)
    parts = launcher.up()
    nodes = {health(launcher.port)[0]["node"] for _ in range(4)}
    assert nodes == {"n1", "n2"}  # round robin over requests without the cookie
    _, cookie = health(launcher.port)
    pinned = cookie.split(";")[0]
    assert {health(launcher.port, pinned)[0]["node"] for _ in range(4)} == {pinned.split("=")[1]}

    # A second `make cluster` on the same ports is refused and leaves the first one alone.
    second = Launcher(tmp_path / "second", launcher.port, launcher.redis_port)
    launchers.append(second)
    assert second.finish() == 1
    for name, port in launcher.ports.items():
        assert "port %d is busy: %s cannot listen there" % (port, name) in second.text()
    assert "+ " not in second.text()  # nothing started
    assert {health(launcher.port)[0]["node"] for _ in range(4)} == {"n1", "n2"}

    launcher.process.send_signal(signal.SIGINT)
    assert launcher.finish() == 0
    assert "SIGINT: stopping every part" in launcher.text()
    assert_all_gone(launcher, parts)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_stop_every_part_and_free_every_port(tmp_path, launchers, signum):
    launcher = Launcher(tmp_path)
    launchers.append(launcher)
    parts = launcher.up()
    assert len(processes_of(launcher)) == 3  # redis-server, n1, n2 (HAProxy's command line names no port)
    launcher.process.send_signal(signum)
    assert launcher.finish() == 0
    assert "%s: stopping every part" % signum.name in launcher.text()
    assert "every part stopped" in launcher.text()
    assert_all_gone(launcher, parts)


@pytest.mark.parametrize("busy", ["redis", "n1", "n2", "haproxy"])
def test_a_busy_port_is_refused_naming_it_before_anything_starts(tmp_path, launchers, busy):
    holder, ports = held_port(busy)
    with holder:
        launcher = Launcher(tmp_path / "data", ports["haproxy"], ports["redis"])
        launchers.append(launcher)
        assert launcher.finish() == 1
    text = launcher.text()
    assert "port %d is busy: %s cannot listen there" % (ports[busy], busy) in text
    assert text.count("is busy") == 1
    assert "+ " not in text  # no part was started
    assert not (tmp_path / "data").exists()
    assert not any(_listening(p) for name, p in ports.items() if name != busy)


def test_a_redis_port_among_the_nodes_ports_is_refused(tmp_path, launchers):
    port = three_free_ports()
    launcher = Launcher(tmp_path / "data", port, port + 1)
    launchers.append(launcher)
    assert launcher.finish() == 2
    assert "the parts need 4 different ports" in launcher.text()
    assert "+ " not in launcher.text()


@pytest.mark.parametrize("victim", ["n1", "redis"])
def test_a_part_that_dies_is_named_and_the_others_are_stopped(tmp_path, launchers, victim):
    launcher = Launcher(tmp_path)
    launchers.append(launcher)
    parts = launcher.up()
    os.kill(parts[victim][0], signal.SIGKILL)
    assert launcher.finish() == 1
    said = "%s (port %d) exited (killed by SIGKILL): stopping the others" % (victim, launcher.ports[victim])
    assert said in launcher.text()
    assert "every part stopped" in launcher.text()
    assert_all_gone(launcher, parts)


def processes_of(launcher):
    """Live processes started for this launcher's ports (by their command lines), wherever
    they are now (an orphan's parent is no longer the launcher)."""
    marks = ["redis-server 127.0.0.1:%d" % launcher.redis_port]
    marks += ["--port %d --redis" % launcher.ports[name] for name in ("n1", "n2")]
    return [command for _, _, _, command in live_processes() if any(mark in command for mark in marks)]


def test_a_signal_during_start_up_stops_what_started_and_starts_nothing_more(tmp_path, launchers):
    launcher = Launcher(tmp_path)
    launchers.append(launcher)
    launcher.read_until("--node n1")  # Redis listens; node n1 is starting
    launcher.process.send_signal(signal.SIGTERM)
    assert launcher.finish() == 0
    assert "SIGTERM: stopping every part" in launcher.text()
    assert "haproxy -db" not in launcher.text()  # never started
    assert "chatwsgi cluster on" not in launcher.text()
    wait_until(lambda: processes_of(launcher) == [], timeout=10)
    wait_until(lambda: all(_free(port) for port in launcher.ports.values()), timeout=10)


def test_fanout_zmq_chats_through_a_forwarder_it_starts_and_stops(tmp_path, launchers):
    launcher = Launcher(tmp_path, fanout="zmq")
    launchers.append(launcher)
    parts = launcher.up()
    assert "zmq forwarder port %d" % launcher.ports["forwarder"] in launcher.text()
    address = ("127.0.0.1", launcher.port)
    ann, bob = chatter(address, "ann"), chatter(address, "bob")
    try:
        assert ann.cookie != bob.cookie  # one on each node
        assert ann.call("message", {"room": "lobby", "id": "m1", "text": "across"})["ok"]
        wait_until(lambda: [a[0]["text"] for a in bob.events("message")] == ["across"])
    finally:
        ann.close()
        bob.close()
    os.kill(parts["forwarder"][0], signal.SIGKILL)
    assert launcher.finish() == 1
    said = "forwarder (port %d) exited (killed by SIGKILL)" % launcher.ports["forwarder"]
    assert said in launcher.text() and "every part stopped" in launcher.text()
    assert_all_gone(launcher, parts)
