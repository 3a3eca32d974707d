"""Long polling as third-party clients do it: disconnect forms, abandoned polls, jsonp framing."""

import time

import pytest
from gevent import socket

from chatwsgi import protocol
from tests.support.chatting import announced, chatter, wait_until
from tests.support.sioclient import SocketIOClient, http


@pytest.fixture
def server_settings():
    # Polls held long and a long close timeout: only the behaviour under test can end a
    # poll or a session quickly.
    return {"poll_duration": 10, "close_timeout": 30, "heartbeat_timeout": 30}


@pytest.mark.parametrize(
    "query",
    [
        "disconnect=1",  # the JS client
        "t=1733100000000&disconnect=True",  # PyPI socketIO-client 0.5.7.4
        "disconnect",
    ],
)
@pytest.mark.parametrize("transport", ["xhr-polling", "jsonp-polling"])
def test_a_disconnect_anywhere_in_the_query_ends_the_session_at_once(address, server, transport, query):
    witness = chatter(address, "witness")
    alice = chatter(address, "alice", transport)
    started = time.monotonic()
    path = alice.transport_path(query)
    reply = http(address, "GET", path)
    assert reply.status == 200
    announced(witness, "leave", "alice", timeout=2)
    assert time.monotonic() - started < 2
    assert alice.session_id not in server.sockets
    alice.close()
    witness.close()


def hold_poll(address, client):
    """A raw long poll of ``client``'s session, left waiting; its socket."""
    poll = socket.create_connection(address)
    poll.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % client.transport_path("t=1")).encode())
    return poll


@pytest.mark.parametrize("transport", ["xhr-polling", "jsonp-polling"])
def test_an_abandoned_poll_takes_no_packets(address, server, transport):
    client = SocketIOClient(address, transport)
    client.handshake()
    http(address, "GET", client.transport_path())  # establishes the session
    session = server.sockets[client.session_id]
    abandoned = hold_poll(address, client)
    wait_until(lambda: session.polls_open == 1)
    abandoned.close()  # the client gave up on it, as socketIO-client does after a while
    wait_until(lambda: session.polls_open == 0, timeout=2)
    live = hold_poll(address, client)
    wait_until(lambda: session.polls_open == 1)
    started = time.monotonic()
    session.put_client_msg(protocol.event_frame("/chat", "message", {"text": "for the live poll"}))
    live.settimeout(5)
    answer = live.recv(65536)
    assert b"for the live poll" in answer
    assert time.monotonic() - started < 5  # not the poll duration (10 s) it waited before
    live.close()


def test_jsonp_payloads_carry_frame_marks_as_themselves(address, server):
    client = SocketIOClient(address, "jsonp-polling")
    client.handshake()
    http(address, "GET", client.transport_path())  # establishes the session
    session = server.sockets[client.session_id]
    session.put_client_msg("2::")
    session.put_client_msg(protocol.event_frame("/chat", "message", {"text": "x"}))
    reply = http(address, "GET", client.transport_path())
    assert reply.text.startswith('io.j[0]("\ufffd3\ufffd2::\ufffd')
    assert "\\ufffd" not in reply.text
    assert protocol.decode_payload(client.unwrap(reply.text)) == [
        "2::",
        protocol.event_frame("/chat", "message", {"text": "x"}),
    ]
