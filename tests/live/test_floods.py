"""One flooding connection costs its own service, not everyone else's (issue 11: F1, F3, F5-F8)."""

import logging

import gevent
import pytest

from chatwsgi import protocol
from tests.support.chatting import announced, chatter, wait_until
from tests.support.sioclient import SocketIOClient, http

BACKLOG = 64 * 1024


@pytest.fixture
def server_settings():
    return {"max_backlog_bytes": BACKLOG, "close_timeout": 30}


def event(name, request, msg_id):
    packet = {"type": "event", "name": name, "args": [request], "endpoint": "/chat", "id": msg_id}
    return protocol.encode_packet(dict(packet, ack="data"))


def error_codes(client):
    return [args[0]["code"] for args in client.events("error")]


def test_a_heartbeat_flood_is_disconnected_logged_once_and_others_chat_on(address, server, caplog):
    witness = chatter(address, "witness")
    flooder = chatter(address, "flooder")
    with caplog.at_level(logging.WARNING, logger="chatwsgi.compat.socket"):
        flooder.ws.sock.sendall(b"".join(_masked("2::") for _ in range(5000)))
        wait_until(lambda: flooder.closed, timeout=10)
        announced(witness, "leave", "flooder")
    (logged,) = flooders_logged(caplog)
    assert "127.0.0.1" in logged and "packets" in logged, logged
    assert witness.call("message", {"room": "lobby", "id": "w1", "text": "still here"})["ok"]
    flooder.close()
    witness.close()


def test_heartbeats_one_frame_per_write_are_counted_as_a_flood_too(address, server):
    # Each lone heartbeat is taken in the loop's callback (delivery.EventReader): that path
    # spends the session's packet tokens like any other.
    witness = chatter(address, "witness")
    flooder = chatter(address, "flooder")
    frame = _masked("2::")
    for _ in range(2000):
        if flooder.closed:
            break
        flooder.ws.sock.sendall(frame)
        gevent.sleep(0.0005)
    wait_until(lambda: flooder.closed, timeout=10)
    announced(witness, "leave", "flooder")
    flooder.close()
    witness.close()


def _masked(text):
    """One masked client text frame (a zero mask leaves the bytes as they are)."""
    payload = text.encode()
    return bytes([0x81, 0x80 | len(payload)]) + b"\x00\x00\x00\x00" + payload


@pytest.mark.parametrize("server_settings", [{"max_packet_rate": 1e-9, "max_packet_burst": 10**6}])
def test_a_busy_connection_yields_to_the_others(address, server):
    witness = chatter(address, "witness", room=None)
    flooder = chatter(address, "flooder", room=None)
    session = server.sockets[flooder.session_id]
    sent = 20000
    flooder.ws.sock.sendall(b"".join(_masked("2::") for _ in range(sent)))
    wait_until(lambda: session.packet_limit.tokens < 10**6 - 100)  # the flood is being read
    assert witness.call("rooms", {})["ok"]
    handled = 10**6 - session.packet_limit.tokens
    # Without the per-turn budget the reader handled all 20,000 before anyone else's packet.
    assert handled < sent / 2, handled
    wait_until(lambda: session.packet_limit.tokens <= 10**6 - sent - 3, timeout=20)
    flooder.close()
    witness.close()


def test_reopening_the_namespace_does_not_refill_the_limits(address):
    alice = chatter(address, "alice")
    acks = [alice.call("message", {"room": "lobby", "id": "m%d" % n, "text": "x"}) for n in range(10)]
    assert all(ack["ok"] for ack in acks)
    alice.send("1::/chat")
    alice.wait_for(
        lambda p: p["type"] == "connect" and p["endpoint"] == "/chat", start=len(alice.packets) - 1
    )
    refusal = alice.call("message", {"room": "lobby", "id": "m10", "text": "x"})
    assert refusal["code"] == "rate_limited"
    alice.close()


def flooders_logged(caplog):
    return [r.getMessage() for r in caplog.records if "disconnected" in r.getMessage()]


@pytest.mark.parametrize(
    ("flood", "what"),
    [
        (lambda n: ("join", {"room": "lobby"}) if n % 2 else ("leave", {"room": "lobby"}), "joins"),
        (lambda n: ("nickname", {"nickname": "name%d" % n}), "nickname changes"),
        (lambda n: ("roster", {"room": "lobby"}), "queries"),
        (lambda n: ("typing", {"room": "lobby"}), "typing"),
        (lambda n: ("message", {"room": "lobby", "id": "f%d" % n, "text": "spam"}), "messages"),
    ],
    ids=["join-leave", "rename", "roster", "typing", "message"],
)
def test_an_event_flood_is_disconnected_and_the_room_barely_notices(address, caplog, flood, what):
    witness = chatter(address, "witness")
    flooder = chatter(address, "flooder")
    start = len(witness.packets)
    with caplog.at_level(logging.WARNING, logger="chatwsgi.compat.socket"):
        flooder.ws.sock.sendall(b"".join(_masked_event(*flood(n), n + 1) for n in range(300)))
        wait_until(lambda: flooder.closed, timeout=10)
        witness.wait_event("announce", lambda args: args[0]["kind"] == "leave")
    (logged,) = flooders_logged(caplog)
    assert "127.0.0.1" in logged and what in logged, logged
    # The others saw a burst's worth of it at most, not 300.
    frames = [p for p in witness.packets[start:] if p["type"] == "event" and p["name"] != "announce"]
    assert len(frames) <= 10, [p["name"] for p in frames]
    assert witness.call("message", {"room": "lobby", "id": "w1", "text": "fine"})["ok"]
    flooder.close()
    witness.close()


def test_a_flooder_is_told_why_before_it_is_disconnected(address):
    flooder = chatter(address, "flooder")
    # 20 queries allowed, then 40 refused (told to wait), and the next one is a flood. Sent
    # all at once, so the server has read everything when it closes (unread data would
    # make its close a reset, and the client could lose what it had not read yet).
    flooder.ws.sock.sendall(b"".join(_masked_event("rooms", {}, n + 1) for n in range(61)))
    wait_until(lambda: flooder.closed, timeout=10)
    codes = error_codes(flooder)
    assert codes == ["rate_limited"] * 40 + ["flood"], codes
    (flood,) = [args[0] for args in flooder.events("error") if args[0]["code"] == "flood"]
    assert flood["message"] == "Far too many queries: disconnected."
    assert "0::" in flooder.raw[-3:]  # told it was disconnected on purpose: no reconnecting
    flooder.close()


def _masked_event(name, request, msg_id):
    text = event(name, request, msg_id).encode()
    header = (
        bytes([0x81, 0x80 | len(text)])
        if len(text) < 126
        else bytes([0x81, 0x80 | 126]) + len(text).to_bytes(2, "big")
    )
    return header + b"\x00\x00\x00\x00" + text


@pytest.mark.parametrize("transport", ["websocket", "xhr-polling"])
def test_events_before_the_namespace_opens_claim_nothing(address, server, transport):
    ghost = SocketIOClient(address, transport, endpoint="").connect()
    for n in range(30):
        ghost.send(event("nickname", {"nickname": "squat%d" % n}, n + 1))
    ghost.send(event("join", {"room": "lobby"}, 99))
    wait_until(lambda: len(ghost.events("error")) >= 31)
    assert set(error_codes(ghost)) == {"not_connected"}
    assert server.application.service.chat.members == {}
    alice = chatter(address, "alice")
    assert alice.call("nickname", {"nickname": "squat1"})["ok"]
    ghost.close()
    alice.close()


@pytest.mark.parametrize("transport", ["xhr-polling", "jsonp-polling"])
def test_a_polling_client_that_never_polls_is_dropped_past_its_backlog(address, server, transport):
    witness = chatter(address, "witness")
    sleeper = chatter(address, "sleeper", transport)
    sleeper.close()  # stops polling; the session lives on until close_timeout (30 s here)
    session = server.sockets[sleeper.session_id]
    senders = [chatter(address, "sender%d" % n) for n in range(8)]
    text = "z" * 2000
    for round_ in range(8):
        for n, sender in enumerate(senders):
            sender.emit("message", {"room": "lobby", "id": "r%d-%d" % (round_, n), "text": text})
        if sleeper.session_id not in server.sockets:
            break
        wait_until(lambda r=round_: len(witness.events("message")) >= 8 * (r + 1))
    announced(witness, "leave", "sleeper", timeout=5)
    assert session.queued_bytes <= BACKLOG + 2 * 2200
    for client in senders + [witness]:
        client.close()


@pytest.mark.parametrize("transport", ["xhr-polling", "jsonp-polling"])
def test_a_polling_flood_is_disconnected_and_its_session_ends_whole(address, server, transport, caplog):
    witness = chatter(address, "witness")
    flooder = chatter(address, "flooder", transport)
    with caplog.at_level(logging.WARNING, logger="chatwsgi.compat.socket"):
        flooder.send_payload([event("roster", {"room": "lobby"}, n + 1) for n in range(300)])
        announced(witness, "leave", "flooder")
        wait_until(lambda: flooder.session_id not in server.sockets)
    (logged,) = flooders_logged(caplog)
    assert "packets" in logged or "queries" in logged, logged
    reply = http(address, "GET", flooder.transport_path())
    assert reply.status == 400  # the session is gone, not half-killed
    assert server.application.service.chat.members.keys() == {witness.session_id}
    flooder.close()
    witness.close()


def _masked_frame(opcode, payload=b"", fin=True):
    return bytes([(0x80 if fin else 0) | opcode, 0x80 | len(payload)]) + b"\x00\x00\x00\x00" + payload


@pytest.mark.parametrize(
    "frames",
    [
        lambda: _masked_frame(0x9, b"ping"),  # pings, each answered
        lambda: _masked_frame(0xA),  # unsolicited pongs
    ],
    ids=["ping", "pong"],
)
def test_a_control_frame_flood_is_disconnected(address, server, caplog, frames):
    witness = chatter(address, "witness")
    flooder = chatter(address, "flooder")
    with caplog.at_level(logging.WARNING, logger="chatwsgi.compat.socket"):
        flooder.ws.sock.sendall(b"".join(frames() for _ in range(20000)))
        wait_until(lambda: flooder.closed, timeout=10)
        announced(witness, "leave", "flooder")
    (logged,) = flooders_logged(caplog)
    assert "frames" in logged, logged
    assert witness.call("message", {"room": "lobby", "id": "w1", "text": "fine"})["ok"]
    flooder.close()
    witness.close()


def test_a_message_in_endless_empty_fragments_is_disconnected(address, server):
    flooder = chatter(address, "flooder")
    start = _masked_frame(0x1, b"5", fin=False)
    flooder.ws.sock.sendall(start + b"".join(_masked_frame(0x0, fin=False) for _ in range(20000)))
    wait_until(lambda: flooder.closed, timeout=10)
    wait_until(lambda: flooder.session_id not in server.sockets)
    flooder.close()


def test_a_ping_is_answered_in_turn_with_the_sessions_frames(address):
    alice = chatter(address, "alice")
    alice.ws.sock.sendall(_masked_frame(0x9, b"are you there"))
    assert alice.call("rooms", {})["ok"]  # the stream still parses: the pong was a whole frame
    alice.close()


@pytest.mark.parametrize("server_settings", [{"max_backlog_bytes": 1500, "close_timeout": 30}])
@pytest.mark.parametrize("transport", ["xhr-polling", "jsonp-polling"])
def test_a_poller_dropped_by_its_own_message_cuts_no_broadcast_short(address, server, transport):
    poller = SocketIOClient(address, transport)
    poller.handshake()
    http(address, "GET", poller.transport_path())  # connected, then never polls again
    poller.send("1::/chat")
    poller.send(event("nickname", {"nickname": "poller"}, 1))
    poller.send(event("join", {"room": "lobby"}, 2))
    witness = chatter(address, "witness")  # after the poller in the room's delivery order
    posted = 0
    while poller.session_id in server.sockets and posted < 40:
        posted += 1
        poller.send(event("message", {"room": "lobby", "id": "p%d" % posted, "text": "x" * 20}, 10 + posted))
    announced(witness, "leave", "poller")
    stored = witness.call("catch_up", {"room": "lobby", "after": 0})["messages"]
    received = [args[0]["id"] for args in witness.events("message")]
    assert received == [m["id"] for m in stored]  # every stored message reached the witness
    witness.close()


@pytest.mark.parametrize("transport", ["xhr-polling", "jsonp-polling"])
def test_a_polling_client_booted_between_polls_hears_it_on_its_next_poll(address, server, transport):
    alice = chatter(address, "alice", transport)
    token = alice.token
    alice.close()  # stops polling (a poll it held may still be waiting: let it end)
    session = server.sockets[alice.session_id]
    wait_until(lambda: session.polls_open == 0, timeout=5)
    again = chatter(address, "bob", "websocket", room=None)
    assert again.call("nickname", {"nickname": "alice", "token": token})["ok"]  # a reclaim: booted
    reply = http(address, "GET", alice.transport_path())
    assert protocol.DISCONNECT in alice.unwrap(reply.text)
    wait_until(lambda: alice.session_id not in server.sockets)
    again.close()
