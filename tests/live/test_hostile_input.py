"""Hostile input from one client: refused with a clear 4xx, no traceback, nobody else hurt.

One test per row of issue 11 (F9, F12-F15, symbolic links, Origin), each against a real
ChatServer; every test also asserts the server reported no traceback and no error.
"""

import gc
import os
import struct
from urllib.parse import quote

import gevent
import pytest
from gevent import socket

from chatwsgi import make_app, make_server
from chatwsgi.protocol import FRAME_MARK
from tests.support.chatting import announced, chatter, storm_until_dropped, wait_until
from tests.support.sioclient import SocketIOClient, WebSocketConnection, http, read_response

pytestmark = pytest.mark.live


def raw_request(address, data, timeout=5):
    """Send raw bytes, read the whole answer (the server closes); an HTTPResponse."""
    sock = socket.create_connection(address, timeout=timeout)
    try:
        sock.sendall(data)
        return read_response(sock)
    finally:
        sock.close()


def said(client, text, timeout=10):
    """Wait until ``client`` received a message with ``text``."""
    return client.wait_event("message", lambda args: args[0]["text"] == text, timeout)


def assert_still_chatting(sender, receiver, text):
    """``sender`` posts ``text`` and ``receiver`` gets it."""
    ack = sender.call("message", {"room": "lobby", "id": text.replace(" ", "-"), "text": text})
    assert ack["ok"], ack
    said(receiver, text)


# --- F9: a session belongs to its transport -----------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "GET"])
@pytest.mark.parametrize("other", ["xhr-polling", "jsonp-polling"])
def test_f9_a_polling_request_with_a_websocket_sessions_id_is_refused(address, faults, method, other):
    alice, bob = chatter(address, "alice"), chatter(address, "bob", "xhr-polling")
    path = "/socket.io/1/%s/%s?i=0" % (other, alice.session_id)
    body = b"5:::" if method == "POST" else b""
    reply = http(address, method, path, body)
    assert reply.status == 409 and b"connected over websocket" in reply.body
    assert "access-control-allow-origin" not in reply.headers
    # The session was not touched: it hears and speaks as before.
    assert_still_chatting(bob, alice, "still hearing")
    assert_still_chatting(alice, bob, "still speaking")
    for client in (alice, bob):
        client.close()


def test_f9_a_disconnect_on_another_transport_leaves_the_session_alone(address, faults):
    alice, bob = chatter(address, "alice"), chatter(address, "bob")
    reply = http(address, "GET", "/socket.io/1/xhr-polling/%s?disconnect=1" % alice.session_id)
    assert reply.status == 409
    assert_still_chatting(bob, alice, "not disconnected")
    for client in (alice, bob):
        client.close()


def test_f9_a_second_websocket_upgrade_on_a_live_session_is_refused(address, faults):
    alice, bob = chatter(address, "alice"), chatter(address, "bob")
    thief = WebSocketConnection(address, "/socket.io/1/websocket/%s" % alice.session_id)
    assert thief.status == 409
    assert thief.sock.recv(4096).endswith(b"already has its websocket: handshake again.\n")
    thief.close()
    assert_still_chatting(bob, alice, "mine alone")
    for client in (alice, bob):
        client.close()


@pytest.mark.parametrize("bound", ["xhr-polling", "jsonp-polling"])
def test_f9_a_polling_session_cannot_be_taken_by_another_transport(address, faults, bound):
    alice, bob = chatter(address, "alice", bound), chatter(address, "bob")
    thief = WebSocketConnection(address, "/socket.io/1/websocket/%s" % alice.session_id)
    assert thief.status == 409
    thief.close()
    other = "jsonp-polling" if bound == "xhr-polling" else "xhr-polling"
    assert http(address, "GET", "/socket.io/1/%s/%s?i=0" % (other, alice.session_id)).status == 409
    assert_still_chatting(bob, alice, "polling on")
    for client in (alice, bob):
        client.close()


def test_f9_a_failed_upgrade_leaves_the_session_free_for_the_fallback_transport(address, faults):
    # The 0.9 client falls back to the next transport with the same session id.
    client = SocketIOClient(address, "xhr-polling")
    client.handshake()
    no_upgrade = http(address, "GET", "/socket.io/1/websocket/%s" % client.session_id)
    assert no_upgrade.status == 400
    client.transport = "xhr-polling"
    client._greenlets.append(gevent.spawn(client._poller))
    client.wait_for(lambda p: p["type"] == "connect")
    client.close()


# --- F12: decode errors are an error event, never a traceback -----------------------------------


def error_codes(client):
    return [args[0] for args in client.events("error")]


@pytest.mark.parametrize("transport", ["xhr-polling", "jsonp-polling"])
def test_f12_a_frame_length_of_5000_digits_is_an_invalid_packet(address, faults, transport):
    alice, bob = chatter(address, "alice", transport), chatter(address, "bob")
    reply = alice.post_body(FRAME_MARK + "9" * 5000 + FRAME_MARK + "2::")
    assert reply.status == 200
    alice.wait_event("error", lambda args: "bad length" in args[0]["message"])
    assert_still_chatting(alice, bob, "after a long length")
    faults.assert_clean()
    for client in (alice, bob):
        client.close()


@pytest.mark.parametrize(
    "d", ['"\\ufffd3\\ufffd\\ud800"', '"\\ud800"', '"\\ufffd1\\ufffd\\udfff\\ufffd1\\ufffda"']
)
def test_f12_a_jsonp_body_with_a_lone_surrogate_is_an_invalid_packet(address, faults, d):
    alice, bob = chatter(address, "alice", "jsonp-polling"), chatter(address, "bob")
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    reply = http(address, "POST", alice.transport_path(), ("d=" + quote(d)).encode(), form)
    assert reply.status == 200
    alice.wait_event("error", lambda args: "lone surrogate" in args[0]["message"])
    assert_still_chatting(alice, bob, "after a surrogate")
    faults.assert_clean()
    for client in (alice, bob):
        client.close()


# --- F13: paths that are not UTF-8 ---------------------------------------------------------------


@pytest.mark.parametrize("path", ["/%ff", "/%c3", "/chat%ff.js", "/%00", "/a%00b.txt", "/%ed%a0%80"])
def test_f13_a_path_that_is_not_utf8_text_is_a_400(address, faults, path):
    reply = http(address, "GET", path)
    assert reply.status == 400 and reply.body == b"The path is not valid UTF-8 text.\n"
    faults.assert_clean()


def test_f13_socketio_and_health_urls_with_bad_bytes_are_clear_4xx(address, faults):
    assert http(address, "GET", "/socket.io/1/%ff/x").status == 400
    assert http(address, "GET", "/socket.io/1/xhr-polling/%ff").status == 400
    assert http(address, "GET", "/socket.io/1/?t=%ff&jsonp=%ff").status == 200


# --- F14: an Origin header that is not header text -----------------------------------------------


@pytest.mark.parametrize(
    "origin",
    [b"http://127.0.0.1\r\n x", b"http://evil.example\r\n\tmore", b"http://a b", b"http://\x01evil"],
)
def test_f14_a_folded_or_broken_origin_is_refused_and_never_echoed(address, faults, origin):
    host = b"Host: %s:%d\r\n" % (address[0].encode(), address[1])
    request = (
        b"GET /socket.io/1/ HTTP/1.1\r\n" + host + b"Origin: " + origin + b"\r\nConnection: close\r\n\r\n"
    )
    reply = raw_request(address, request)
    assert reply.status == 403 and b"Origin" in reply.body
    assert not any(name.startswith("access-control") for name in reply.headers)
    faults.assert_clean()


# --- F15: a consumer dropped while its backlog was being flushed --------------------------------


STORM_APP = {"rate": 1e6, "burst": 10**6, "rates": {"query": (1e6, 10**6)}}
STORM_SERVER = {"max_backlog_bytes": 64 * 1024, "max_packet_rate": 1e6, "max_packet_burst": 10**6}


@pytest.mark.parametrize("app_settings", [STORM_APP])
@pytest.mark.parametrize("server_settings", [STORM_SERVER])
def test_f15_a_client_dropped_mid_flush_leaves_no_traceback(server, address, faults):
    stalled = chatter(address, "stalled")
    stalled.ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    gevent.killall(stalled._greenlets)  # it never reads again: the server's backlog grows
    watcher, sender = chatter(address, "watcher"), chatter(address, "sender")
    storm_until_dropped(sender, watcher, "stalled")
    assert announced(watcher, "leave", "stalled")
    assert any("backlog passed the limit" in warning for warning in faults.warnings())
    assert_still_chatting(sender, watcher, "storm over")
    faults.assert_clean()
    for client in (stalled, watcher, sender):
        client.close()


# --- static files: no symbolic link out of static/ -----------------------------------------------


@pytest.fixture
def linked_static(tmp_path):
    """A static folder holding links to a file and a folder outside it, and one inside."""
    static = tmp_path / "static"
    static.mkdir()
    (static / "index.html").write_text("page")
    (static / "inside.txt").write_text("inside")
    (tmp_path / "secret.txt").write_text("secret")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "index.html").write_text("outside index")
    (tmp_path / "outside" / "key.txt").write_text("outside key")
    os.symlink(tmp_path / "secret.txt", static / "secret.txt")
    os.symlink(tmp_path / "outside", static / "outside")
    os.symlink("/etc/hostname", static / "hostname")
    os.symlink(static / "inside.txt", static / "alias.txt")
    return static


@pytest.fixture
def linked_address(linked_static):
    server = make_server(make_app(static_dir=linked_static), port=0)
    server.start()
    yield server.address[:2]
    server.stop(timeout=1)


@pytest.mark.parametrize(
    "path",
    [
        "/secret.txt",
        "/outside/key.txt",
        "/outside/",
        "/outside",
        "/hostname",
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "/../outside/key.txt",
        "/../outside/",
        "/outside/../../secret.txt",
        "/../outside/index.html",
    ],
)
def test_symbolic_links_out_of_static_are_not_followed(linked_address, faults, path):
    reply = http(linked_address, "GET", path)
    assert reply.status == 403 and reply.body == b"That path is outside the static files.\n"


def test_files_and_links_inside_static_are_served(linked_address, faults):
    assert http(linked_address, "GET", "/").body == b"page"
    assert http(linked_address, "GET", "/inside.txt").body == b"inside"
    assert http(linked_address, "GET", "/alias.txt").body == b"inside"
    missing = http(linked_address, "GET", "/missing.txt")
    assert missing.status == 404 and missing.body == b"No such file.\n"  # no filesystem path in it


@pytest.mark.parametrize(
    ("method", "headers", "status"),
    [
        ("HEAD", {}, 200),
        ("GET", {"If-Modified-Since": "Wed, 01 Jan 2100 00:00:00 GMT"}, 304),
        ("GET", {"Range": "bytes=999999-"}, 416),
        ("GET", {"Range": "bytes=0-1"}, 206),
    ],
)
@pytest.mark.parametrize("path", ["/", "/socket.io.js"])
def test_a_static_answer_without_a_body_closes_its_file(address, faults, method, headers, status, path):
    # WebOb left the file to the garbage collector (a ResourceWarning, an error here).
    assert http(address, method, path, headers=headers).status == status
    gc.collect()


# --- Origin: the scheme counts, and refusals echo nothing ----------------------------------------


def test_an_https_origin_on_a_plain_http_server_is_refused(address, faults):
    origin = "https://%s:%d" % address
    handshake = http(address, "GET", "/socket.io/1/", headers={"Origin": origin})
    assert handshake.status == 403
    assert http(address, "GET", "/socket.io/1/", headers={"Origin": "http://%s:%d" % address}).status == 200


def test_a_refusal_for_a_foreign_origin_echoes_no_origin(address, faults):
    client = SocketIOClient(address, "xhr-polling")
    client.handshake()
    for path in ("/socket.io/1/", client.transport_path(), "/socket.io/1/nope"):
        reply = http(address, "GET", path, headers={"Origin": "http://evil.example"})
        assert reply.status == 403
        assert not any(name.startswith("access-control") for name in reply.headers), reply.headers


def test_an_allowed_origin_is_echoed_on_answers_and_refusals(address, faults):
    origin = "http://%s:%d" % address
    ok = http(address, "GET", "/socket.io/1/", headers={"Origin": origin})
    unknown = http(address, "GET", "/socket.io/1/xhr-polling/nope", headers={"Origin": origin})
    for reply in (ok, unknown):
        assert reply.headers["access-control-allow-origin"] == origin
        assert reply.headers["access-control-allow-credentials"] == "true"
    assert unknown.status == 400


# --- malformed HTTP: a clear 400, never a traceback ----------------------------------------------


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: nope\r\n\r\n",
        b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % n for n in range(150)) + b"\r\n",
        b"GET / HTTP/1.1\r\nX: " + b"y" * 70000 + b"\r\n\r\n",
    ],
)
def test_malformed_http_is_a_clear_400(address, faults, request_bytes):
    reply = raw_request(address, request_bytes)
    assert reply.status == 400 and reply.body == b"Malformed HTTP request.\n"


def test_a_malformed_chunked_body_is_a_clear_400_and_costs_nothing_else(address, faults):
    alice, bob = chatter(address, "alice", "xhr-polling"), chatter(address, "bob")
    head = "POST %s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" % alice.transport_path()
    reply = raw_request(address, head.encode() + b"zz\r\n2::\r\n0\r\n\r\n")
    assert reply.status == 400 and reply.body == b"Malformed request body.\n"
    assert_still_chatting(alice, bob, "chunks aside")
    for client in (alice, bob):
        client.close()


def test_a_request_line_too_long_is_a_clear_414(address, faults):
    reply = raw_request(address, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n")
    assert reply.status == 414 and reply.body == b"The request line is too long.\n"


@pytest.mark.parametrize("first_byte", [0x89, 0x8A, 0x88, 0x09, 0x83, 0x87, 0x8B, 0x8F])
def test_a_control_or_unknown_frame_declaring_a_huge_length_is_refused_before_reading(
    address, faults, first_byte
):
    # Found by the fuzz test: a reserved opcode (3-7) escaped the size cap, so one declaring
    # 2**40 bytes was read whole: MemoryError, session stuck. Control frames stay refused.
    alice, bob = chatter(address, "alice"), chatter(address, "bob")
    alice.ws.sock.sendall(struct.pack("!BBQ", first_byte, 0x80 | 127, 2**40) + os.urandom(4))
    wait_until(lambda: alice.closed)
    assert announced(bob, "leave", "alice")
    faults.assert_clean()
    for client in (alice, bob):
        client.close()


def test_a_websocket_frame_that_is_not_utf8_ends_only_that_session(address, faults):
    alice, bob, carol = chatter(address, "alice"), chatter(address, "bob"), chatter(address, "carol")
    alice.ws.send_frame(b"5:::\xff\xfe")
    wait_until(lambda: alice.closed)
    assert announced(bob, "leave", "alice")
    assert_still_chatting(bob, carol, "alice is gone")
    for client in (alice, bob, carol):
        client.close()
