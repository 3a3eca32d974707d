"""``python serve.py`` as a user runs it: answers, shuts down cleanly on SIGTERM."""

import json
import socket
import subprocess
import sys
import time
from urllib.request import urlopen

import pytest

from tests.support.processes import ROOT, ServeProcess

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
