"""``python serve.py`` as a user runs it: answers, shuts down cleanly on SIGTERM, explains its flags,
says at once when its Redis is unreachable."""

import json
import re
import socket
import subprocess
import sys
import time
from urllib.request import urlopen

import pytest

from tests.support.cluster import RedisServer
from tests.support.processes import ROOT, URL_RE, ServeProcess

pytestmark = pytest.mark.slow


def address_of(url):
    host, port = url.rsplit("/", 1)[-1].split(":")
    return host, int(port)


def fetch(url):
    with urlopen(url, timeout=10) as reply:  # the test process is not monkey-patched: plain blocking I/O
        return reply.status, reply.headers, reply.read()


def test_serve_answers_page_health_and_client():
    server = ServeProcess()
    try:
        status, _, body = fetch(server.url + "/")
        assert status == 200 and b"chatwsgi" in body
        status, _, body = fetch(server.url + "/healthz")
        assert status == 200 and json.loads(body)["status"] == "ok"
        status, headers, body = fetch(server.url + "/socket.io.js")
        assert status == 200 and b"0.9.10" in body
    finally:
        assert server.stop() == 0


def test_sigterm_tells_clients_and_exits_within_five_seconds():
    server = ServeProcess("--history", "4")
    host, port = address_of(server.url)
    # A raw websocket client on blocking sockets (this test has no gevent server in-process).
    sock = socket.create_connection((host, port), timeout=10)
    sock.sendall(b"GET /socket.io/1/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    sid = b"".join(iter(lambda: sock.recv(4096), b"")).split(b"\r\n\r\n", 1)[1].split(b":")[0].decode()
    sock.close()
    ws = socket.create_connection((host, port), timeout=10)
    ws.sendall(
        (
            "GET /socket.io/1/websocket/%s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n" % sid
        ).encode()
    )
    # A masked text frame '1::/chat' (a zero mask leaves the bytes as they are).
    ws.sendall(bytes([0x81, 0x80 | 8]) + b"\x00\x00\x00\x00" + b"1::/chat")
    received = b""
    deadline = time.monotonic() + 10
    while b"1::/chat" not in received and time.monotonic() < deadline:
        received += ws.recv(4096)
    assert b"1::/chat" in received
    started = time.monotonic()
    code = server.stop(timeout=10)
    elapsed = time.monotonic() - started
    while True:
        try:
            chunk = ws.recv(4096)
        except OSError:
            break
        if not chunk:
            break
        received += chunk
    ws.close()
    assert code == 0
    assert elapsed < 5.0
    assert b'"name":"shutdown"' in received
    assert b"chatwsgi stopping" in server.output


def usage_error(*flags):
    """What serve.py says when it refuses ``flags`` (a usage error, exit 2, no traceback)."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "serve.py"), *flags], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    return result.stderr


def test_bad_flags_get_a_usage_error_not_a_traceback():
    refusal = usage_error("--transports", "htmlfile")
    assert "--transports takes some of websocket,xhr-polling,jsonp-polling, not htmlfile" in refusal


@pytest.mark.parametrize(
    "flags, said",
    [
        (["--fanout", "zmq://127.0.0.1"], "a fan-out bus is zmq://HOST:PORT, not 'zmq://127.0.0.1'"),
        (["--fanout", "amqp://127.0.0.1:5560"], "--fanout takes redis or zmq://HOST:PORT"),
        (["--fanout", "zmq://127.0.0.1:5560"], "needs --redis (Redis keeps the sequence numbers)"),
    ],
)
def test_a_fanout_bus_that_cannot_work_is_refused(flags, said):
    assert said in usage_error(*flags)


def test_liveness_flags_and_environment_reach_the_handshake():
    server = ServeProcess("--heartbeat-timeout", "30", env={"CHATWSGI_CLOSE_TIMEOUT": "12"})
    try:
        status, _, body = fetch(server.url + "/socket.io/1/")
        assert status == 200
        assert body.decode().split(":")[1:3] == ["30", "12"]
    finally:
        assert server.stop() == 0


def test_liveness_settings_that_cannot_work_are_refused():
    assert "too rarely for a client timeout of 1 s" in usage_error("--close-timeout", "1")


def test_help_describes_every_flag_with_its_default():
    result = subprocess.run(
        [sys.executable, str(ROOT / "serve.py"), "--help"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0 and result.stderr == ""
    usage, _, rest = result.stdout.partition("\n\n")
    description, _, rest = rest.partition("\n\n")
    assert "real-time chat server" in description
    assert "CHATWSGI_" in rest.rsplit("\n\n", 1)[1]  # the epilog: flags from the environment
    flags = re.findall(r"\[(--[a-z-]+)", usage)
    assert {"--host", "--port", "--redis", "--node", "--heartbeat-interval"} <= set(flags)
    # Each flag's entry: "  --flag METAVAR   help text (default: ...)", wrapped over lines.
    heading, *entries = re.split(r"\n  (?=-)", rest.rsplit("\n\n", 1)[0])
    assert heading == "options:"
    described = {entry.split()[0]: " ".join(entry.split()[2:]) for entry in entries}
    for flag in flags:
        assert "(default: " in described[flag], (flag, described[flag])
        assert len(described[flag]) > len("(default: x)") + 10, (flag, described[flag])


class StartingServe(ServeProcess):
    """serve.py as ServeProcess starts it, without waiting for it to serve."""

    def __init__(self, *args):
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "serve.py"), "--port", "0", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.output = b""
        self.url = None

    def served(self):
        """Wait until it serves; its URL."""
        self.url = self.wait_for_output(URL_RE).group(1)
        return self.url


def test_an_unreachable_redis_is_said_at_once_the_node_serves_and_picks_it_up_later(tmp_path):
    redis_server = RedisServer(tmp_path)  # started to own a port, stopped until later
    redis_server.stop()
    url = re.escape(redis_server.url)
    started = time.monotonic()
    # start() waits up to the node ttl for Redis; the warning must come before that, at once.
    server = StartingServe("--redis", redis_server.url, "--node", "n1", "--node-ttl", "5")
    try:
        server.wait_for_output(re.compile(r"WARNING \S+: backplane %s down: .*Connection refused" % url))
        said_down = time.monotonic()
        assert said_down - started < 3.0  # python's start included; the ttl is 5 s
        status, _, body = fetch(server.served() + "/healthz")
        assert status == 200
        assert json.loads(body)["backplane"] == "down"
        redis_server.start()
        server.wait_for_output(re.compile(r"WARNING \S+: backplane %s up as node n1" % url), timeout=15)
        said_up = time.monotonic()
        assert json.loads(fetch(server.url + "/healthz")[2])["backplane"] == "up"
        downs = server.output.decode().count(" down: ")
        # Retried about every second by two greenlets, said once per 10 s.
        assert 1 <= downs <= 1 + int((said_up - said_down) // 10)
    finally:
        try:
            assert server.stop() == 0
        finally:
            redis_server.stop()
