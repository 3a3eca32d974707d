"""`make cluster`'s launcher: redis-server, two nodes and HAProxy up, and all gone after Ctrl-C."""

import json
import signal
import socket
import subprocess
import sys
import time
from urllib.request import Request, urlopen

import pytest

from tests.support.chatting import wait_until
from tests.support.cluster import ROOT, free_port

pytestmark = [pytest.mark.live, pytest.mark.slow]


def three_free_ports():
    """A port whose next two are free as well (the launcher's nodes take them)."""
    for _ in range(50):
        base = free_port()
        if base + 2 < 65536 and all(_free(base + n) for n in (1, 2)):
            return base
    raise RuntimeError("no three free ports in a row")


def _free(port):
    try:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", port))
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


def test_the_cluster_launcher_serves_through_haproxy_and_stops_everything(tmp_path):
    port = three_free_ports()
    launcher = subprocess.Popen(
        [sys.executable, str(ROOT / "deploy" / "cluster.py"), "--port", str(port)]
        + ["--redis-port", str(free_port()), "--data", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        output = b""
        deadline = time.monotonic() + 30
        while b"chatwsgi cluster on" not in output and time.monotonic() < deadline:
            output += launcher.stdout.readline()
        assert b"chatwsgi cluster on http://127.0.0.1:%d" % port in output, output
        nodes = {health(port)[0]["node"] for _ in range(4)}
        assert nodes == {"n1", "n2"}  # round robin over requests without the cookie
        _, cookie = health(port)
        pinned = cookie.split(";")[0]
        assert {health(port, pinned)[0]["node"] for _ in range(4)} == {pinned.split("=")[1]}
    finally:
        launcher.send_signal(signal.SIGINT)
        assert launcher.wait(30) == 0
        launcher.stdout.close()
    wait_until(lambda: not any(_listening(port + n) for n in range(3)), timeout=5)
