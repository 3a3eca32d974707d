"""One test per gevent-socketio defect we fix (ids from shared/LIBRARY-BUGS.md).

Each fails against the library's own behaviour: remove the fix and the test breaks.
"""

import contextlib
import json
import re
import socket as stdlib_socket
import string
import time
from urllib.parse import quote

import gevent
import pytest
from gevent import socket

from chatwsgi import protocol
from chatwsgi.compat import transports
from chatwsgi.compat.socket import ChatSocket, send_error
from chatwsgi.compat.websocket import unmask
from chatwsgi.server import ChatServer
from tests.support.chatting import TRANSPORTS, announced, chatter, wait_until
from tests.support.sioclient import SocketIOClient, WebSocketConnection, http


def event(name, *args, msg_id=None):
    packet = {"type": "event", "name": name, "args": list(args), "endpoint": "/chat"}
    if msg_id is not None:
        packet.update(id=msg_id, ack="data")
    return protocol.encode_packet(packet)


def error_codes(client):
    return [args[0]["code"] for args in client.events("error")]


def test_b1_event_dispatch_works_without_getargspec(address):
    client = chatter(address, "alice")
    assert client.call("rooms", {})["ok"] is True
    client.close()


def test_b2_error_handler_accepts_a_none_endpoint():
    sent = []

    class Sink:
        sessid = "s"

        def send_packet(self, packet):
            sent.append(protocol.encode_packet(packet))

    send_error(Sink(), "invalid_packet", "bad", None, None, False)
    assert sent == ['5:::{"name":"error","args":[{"code":"invalid_packet","message":"bad"}]}']


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_b3_bad_packets_cost_one_packet_not_the_session(address, transport):
    client = chatter(address, "alice", transport)
    client.send("5::/chat:this is not json")
    client.send('5::/chat:{"args":[]}')  # no event name: KeyError 'name' in the library
    client.send(event("nickname", {"nickname": "x"}, "extra", "args", msg_id=90))
    client.send(event("no_such_event", {}))
    client.send("9:::")
    client.send('4::/chat:{"json":')
    wait_until(lambda: len(client.events("error")) >= 6)
    assert error_codes(client) == [
        "invalid_packet",
        "invalid_packet",
        "bad_arguments",
        "unknown_event",
        "invalid_packet",
        "invalid_packet",
    ]
    assert client.call("message", {"room": "lobby", "id": "after", "text": "still here"})["ok"]
    client.close()


@pytest.mark.parametrize("transport", ["xhr-polling", "jsonp-polling"])
def test_b4_b10_polling_responses_are_bytes_with_string_headers(address, transport):
    client = SocketIOClient(address, transport)
    client.handshake()
    reply = http(address, "GET", client.transport_path())
    assert reply.status == 200
    assert reply.headers["content-length"] == str(len(reply.body))
    assert client.unwrap(reply.text) == "1::"


def test_b5_post_bodies_are_read_whole(address):
    alice = chatter(address, "alice", "xhr-polling")
    bob = chatter(address, "bob")
    # JSON may hold raw newlines between tokens; the library read one line of the body.
    packet = '5:7+:/chat:{"name":"message",\n"args":[{"room":"lobby","id":"nl","text":"a"}]}'
    alice.post_body(protocol.encode_payload([packet, event("typing", {"room": "lobby"})]))
    (message,) = bob.wait_event("message")
    assert message["id"] == "nl"
    bob.wait_event("typing")
    alice.close()
    bob.close()


def utf16_units(text):
    return len(text.encode("utf-16-le")) // 2


@pytest.mark.parametrize("transport", ["xhr-polling", "jsonp-polling"])
def test_b6_batches_count_utf16_units_both_ways(address, server, transport):
    alice = chatter(address, "alice", transport)
    bob = chatter(address, "bob", transport)
    texts = ["🎉 party", "𝄞 clef 你好"]
    # Two packets in one POST, framed as the JS client frames them (UTF-16 lengths).
    packets = [
        event("message", {"room": "lobby", "id": "e%d" % n, "text": t}, msg_id=50 + n)
        for n, t in enumerate(texts)
    ]
    body = "".join("\ufffd%d\ufffd%s" % (utf16_units(p), p) for p in packets)
    alice.post_body(body)
    wait_until(lambda: len(bob.events("message")) == 2)
    assert [a[0]["text"] for a in bob.events("message")] == texts
    alice.close()
    bob.close()
    # Server to client: a batch of emoji messages carries UTF-16 lengths.
    watcher = SocketIOClient(address, transport)
    watcher.handshake()
    http(address, "GET", watcher.transport_path())  # establishes the session
    session = server.sockets[watcher.session_id]
    frames = [protocol.event_frame("/chat", "message", {"text": t}) for t in texts]
    for frame in frames:
        session.put_client_msg(frame)
    reply = http(address, "GET", watcher.transport_path())
    expected = "".join("\ufffd%d\ufffd%s" % (utf16_units(f), f) for f in frames)
    assert watcher.unwrap(reply.text) == expected


def test_b7_jsonp_post_is_parsed_and_output_is_json_escaped(address):
    alice = chatter(address, "alice", "jsonp-polling")
    bob = chatter(address, "bob", "jsonp-polling")
    text = "quotes \" ' back\\slash + %41 & = \n newline \u2028 </script><script>alert(1)</script>"
    ack = alice.call("message", {"room": "lobby", "id": "j1", "text": text})
    assert ack["ok"] is True
    (message,) = bob.wait_event("message")
    assert message["text"] == text
    raw = [r for r in bob.raw if '"j1"' in r][0]
    assert json.loads(raw.split(":", 3)[3])["args"][0]["text"] == text
    alice.close()
    bob.close()


def test_b7_jsonp_script_is_valid_javascript_string():
    script = protocol.jsonp_script(2, "a\"b'c\\d\ne\u2028</script>")
    match = re.match(r"^io\.j\[2\]\((.*)\);$", script, re.S)
    assert json.loads(match.group(1)) == "a\"b'c\\d\ne\u2028</script>"
    assert "\n" not in script and "\u2028" not in script and "</script>" not in script.replace("<\\/", "")


@pytest.mark.parametrize("transport", ["htmlfile", "xhr-multipart", "flashsocket", "nonsense"])
def test_b8_b12_unadvertised_transports_get_a_clear_400(address, transport):
    client = SocketIOClient(address, transport)
    client.handshake()
    reply = http(address, "GET", client.transport_path())
    assert reply.status == 400
    assert b"Transport not supported" in reply.body
    assert http(address, "GET", "/healthz").status == 200


def test_b12_plain_get_on_the_websocket_url_is_a_400(address):
    client = SocketIOClient(address, "websocket")
    client.handshake()
    reply = http(address, "GET", client.transport_path())
    assert reply.status == 400
    assert b"websocket upgrade" in reply.body


def test_b9_closed_websocket_ends_the_session_at_once(address, server):
    alice = chatter(address, "alice")
    bob = chatter(address, "bob")
    alice.close()
    announced(bob, "leave", "alice", timeout=1.0)
    wait_until(lambda: alice.session_id not in server.sockets, timeout=1.0)
    bob.call("message", {"room": "lobby", "id": "after", "text": "alone"})
    bob.close()


def test_b10_jsonp_handshake_is_whole(address):
    reply = http(address, "GET", "/socket.io/1/?t=1&jsonp=3")
    match = re.match(
        r'^io\.j\[3\]\("([A-Za-z0-9_-]+):60:3:websocket,xhr-polling,jsonp-polling"\);$', reply.text
    )
    assert match, reply.text
    assert reply.headers["content-type"].startswith("text/javascript")


def test_b11_refusals_are_written_with_a_length(address):
    reply = http(address, "GET", "/socket.io/1/xhr-polling/no-such-session")
    assert reply.status == 400
    assert reply.headers["content-length"] == str(len(reply.body)) != "0"
    assert b"handshake again" in reply.body


def test_b13_session_ids_are_unguessable(address):
    ids = [SocketIOClient(address).handshake()[0] for _ in range(200)]
    assert len(set(ids)) == 200
    allowed = set(string.ascii_letters + string.digits + "-_")
    assert all(len(i) == 24 and set(i) <= allowed for i in ids)
    # random.random() ids were all digits; these use the whole URL-safe alphabet.
    assert len(set("".join(ids))) > 50


def test_b14_sessions_that_never_connect_are_reaped(address, server):
    for _ in range(50):
        SocketIOClient(address).handshake()
    assert len(server.sockets) >= 50
    timeout = server.config["handshake_timeout"]
    wait_until(lambda: len(server.sockets) == 0, timeout=timeout + 3)


def test_b15_closed_websocket_prints_nothing(address, capfd):
    alice = chatter(address, "alice")
    bob = chatter(address, "bob")
    alice.close()
    announced(bob, "leave", "alice")
    for n in range(5):  # sends to the dead socket must not print either
        bob.call("message", {"room": "lobby", "id": "d%d" % n, "text": "x"})
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err
    assert out == ""
    bob.close()


def test_b16_an_oversized_frame_is_refused_and_the_session_lives(address, server):
    alice = chatter(address, "alice")
    limit = server.config["max_packet_bytes"]
    alice.ws.send_frame(b"5::/chat:" + b"x" * limit)
    alice.wait_event("error", lambda a: a[0]["code"] == "frame_too_large")
    assert alice.call("message", {"room": "lobby", "id": "ok", "text": "fine"})["ok"]
    alice.close()


def test_b16_a_frame_over_the_body_limit_closes_with_1009(address, server):
    client = SocketIOClient(address).connect()
    huge = server.config["max_body_bytes"] + 1
    client.ws.send_frame(b"", length=huge)  # announce 1 MiB + 1 without sending it
    wait_until(lambda: client.closed, timeout=5)
    client.close()
    assert client.close_code == 1009
    assert http(address, "GET", "/healthz").status == 200


def test_b16_unmask_matches_the_definition():
    payload, mask = bytes(range(256)) * 3 + b"xyz", b"\x01\x80\xfe\x33"
    assert unmask(payload, mask) == bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert unmask(b"", mask) == b""


def test_b17_accepted_sockets_have_nodelay(server):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = socket.create_connection(listener.getsockname())
    accepted, peer = listener.accept()
    handling = gevent.spawn(server.handle, accepted, peer)  # waits for a request line
    wait_until(lambda: handling.started)
    gevent.sleep(0)
    assert accepted.getsockopt(stdlib_socket.IPPROTO_TCP, stdlib_socket.TCP_NODELAY) == 1
    client.close()  # the handler reads EOF and returns
    handling.join(timeout=5)
    listener.close()


def test_b18_packets_of_a_failed_poll_write_go_out_on_the_next_poll(address, server, monkeypatch):
    # A hangup is normally noticed before a packet is taken (test_polling.py); without that
    # watch the poll takes the packet and its write fails, which is what B18 is about.
    monkeypatch.setattr(transports, "HangupWatch", lambda connection: contextlib.nullcontext())
    alice = chatter(address, "alice", room="lobby")
    watcher = SocketIOClient(address, "xhr-polling")
    watcher.handshake()
    http(address, "GET", watcher.transport_path())  # establishes the session
    session = server.sockets[watcher.session_id]
    poll = socket.create_connection(address)
    poll.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % watcher.transport_path()).encode())
    wait_until(lambda: session.polls_open == 1)
    # Reset the connection (RST) so the server's write fails.
    poll.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    poll.close()
    session.put_client_msg(protocol.event_frame("/chat", "message", {"text": "keep me"}))
    wait_until(lambda: session.polls_open == 0)
    reply = http(address, "GET", watcher.transport_path())
    assert "keep me" in reply.text
    alice.close()


def test_b19_no_flash_policy_server(app):
    server = ChatServer(("127.0.0.1", 0), app)
    assert server.policy_server is None


def test_b20_invalid_payloads_are_not_printed(address, capfd):
    client = chatter(address, "alice", "xhr-polling")
    client.send("5::/chat:{not json at all")
    client.send("6:::99+[1]")  # an ack for no callback
    wait_until(lambda: len(client.events("error")) >= 1)
    assert client.call("rooms", {})["ok"]
    out, err = capfd.readouterr()
    assert out == ""
    client.close()


def test_handshake_without_trailing_slash(address):
    reply = http(address, "GET", "/socket.io/1")
    assert reply.status == 200
    assert reply.text.count(":") == 3


def test_unknown_session_id_is_refused_on_every_transport(address):
    for transport in TRANSPORTS:
        reply = http(address, "GET", "/socket.io/1/%s/%s" % (transport, "A" * 24))
        assert reply.status == 400


def test_session_tender_sends_heartbeats(app):
    server = ChatServer(("127.0.0.1", 0), app, heartbeat_interval=1)
    session = server.get_socket()
    session.connection_established, session.state = True, session.STATE_CONNECTED
    now = time.monotonic()
    server.tend(now + 0.5)
    assert session.client_queue.qsize() == 0
    server.tend(now + 1.5)
    assert session.client_queue.get_nowait() == "2::"
    assert isinstance(session, ChatSocket)


def test_the_tender_visits_each_session_once_per_round_of_slices(app):
    server = ChatServer(("127.0.0.1", 0), app, heartbeat_interval=1)
    sessions = [server.get_socket() for _ in range(50)]
    for session in sessions:
        session.connection_established, session.state = True, session.STATE_CONNECTED
    now = time.monotonic() + 2
    server.tend(now, 0, 5)
    first = sum(session.client_queue.qsize() for session in sessions)
    assert 0 < first < 50
    for turn in range(1, 5):
        server.tend(now, turn, 5)
    assert [session.client_queue.qsize() for session in sessions] == [1] * 50


def test_jsonp_post_with_a_bad_body_keeps_the_session(address):
    client = chatter(address, "alice", "jsonp-polling")
    data = ("d=" + quote("[not a string]")).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    reply = http(address, "POST", client.transport_path(), data, headers)
    assert reply.status == 200
    client.wait_event("error", lambda a: a[0]["code"] == "invalid_packet")
    assert client.call("rooms", {})["ok"]
    client.close()


def test_websocket_binary_frames_are_refused(address):
    client = chatter(address, "alice")
    client.ws.send_frame(b"\x00\x01binary", opcode=2)
    client.wait_event("error", lambda a: a[0]["code"] == "invalid_packet")
    assert client.call("rooms", {})["ok"]
    client.close()


def test_websocket_close_frame_from_the_server_on_invalid_utf8(address):
    client = SocketIOClient(address).connect()
    client.ws.send_frame(b"\xff\xfe")
    wait_until(lambda: client.closed, timeout=5)
    client.close()
    assert client.close_code == 1007


def test_many_websocket_clients_at_once(address):
    clients = [SocketIOClient(address, "websocket") for _ in range(30)]
    gevent.joinall([gevent.spawn(c.connect) for c in clients], raise_error=True)
    assert all(c.packets for c in clients)
    for c in clients:
        c.close()


def test_websocket_upgrade_refused_for_foreign_origin(address):
    client = SocketIOClient(address)
    client.handshake()
    ws = WebSocketConnection(address, client.transport_path(), origin="http://evil.example")
    assert ws.status == 403
    ws.sock.close()
