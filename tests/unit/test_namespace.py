"""ChatNamespace driven with raw packets through a real ChatSocket, with no network at all."""

import pytest

from chatwsgi import protocol
from chatwsgi.compat.socket import ChatSocket
from chatwsgi.namespace import ChatNamespace
from chatwsgi.server import pop_session_config
from chatwsgi.service import ChatService
from tests.support.chatting import wait_until


class NoServer:
    """Stands in for the server: a session only needs its ``sockets`` table."""

    def __init__(self):
        self.sockets = {}


@pytest.fixture
def service():
    return ChatService()


def session(service, server=None):
    """A connected session with the chat namespace opened."""
    server = server or NoServer()
    chat_session = ChatSocket(server, pop_session_config({"poll_duration": 0.05})[1])
    server.sockets[chat_session.sessid] = chat_session
    chat_session.state = chat_session.STATE_CONNECTED
    chat_session._set_namespaces({"/chat": ChatNamespace})
    chat_session._set_request(service)
    chat_session._set_environ({"socketio": chat_session})
    chat_session.handle_raw("1::/chat")
    assert drain(chat_session) == ["1::/chat"]
    chat_session.server_ref = server  # keep the weakly referenced server alive
    return chat_session


def drain(chat_session):
    out = []
    while chat_session.client_queue.qsize():
        out.append(chat_session.client_queue.get_nowait())
    return out


def call(chat_session, name, *args, msg_id=1):
    """Feed one event packet asking for an ack; the decoded packets sent back."""
    packet = {
        "type": "event",
        "name": name,
        "args": list(args),
        "endpoint": "/chat",
        "id": msg_id,
        "ack": "data",
    }
    chat_session.handle_raw(protocol.encode_packet(packet))
    return [protocol.decode_packet(text) for text in drain(chat_session)]


def in_lobby(service, nickname):
    """A session with ``nickname`` that has joined the lobby."""
    chat_session = session(service)
    call(chat_session, "nickname", {"nickname": nickname})
    call(chat_session, "join", {"room": "lobby"})
    return chat_session


def test_nickname_is_acked(service):
    alice = session(service)
    (ack,) = call(alice, "nickname", {"nickname": "  alice "})
    assert ack["type"] == "ack" and ack["ackId"] == 1
    assert ack["args"][0]["nickname"] == "alice" and ack["args"][0]["ok"] is True


def test_refusal_is_an_error_event_and_a_failed_ack(service):
    alice = session(service)
    error, ack = call(alice, "nickname", {"nickname": ""})
    assert error["name"] == "error" and error["args"][0]["code"] == "bad_nickname"
    assert error["args"][0]["event"] == "nickname"
    assert ack["args"][0]["ok"] is False and ack["args"][0]["code"] == "bad_nickname"


def test_message_is_broadcast_then_acked(service):
    alice, bob = in_lobby(service, "alice"), in_lobby(service, "bob")
    drain(alice)
    broadcast, ack = call(alice, "message", {"room": "lobby", "id": "m1", "text": "hi"}, msg_id=7)
    assert broadcast["name"] == "message" and broadcast["args"][0]["text"] == "hi"
    assert ack["ackId"] == 7 and ack["args"] == [{"ok": True, "id": "m1", "seq": 1}]
    (seen,) = [protocol.decode_packet(t) for t in drain(bob) if '"message"' in t]
    assert seen["args"][0]["seq"] == 1


@pytest.mark.parametrize(
    "raw, code",
    [
        ("5::/chat:[1,2", "invalid_packet"),
        ('5:3+:/chat:{"name":"join","args":[{},{},{}]}', "bad_arguments"),
        ('5::/chat:{"name":"drop_tables","args":[]}', "unknown_event"),
        ('5::/chat:{"name":"<script>","args":[]}', "unallowed_event_name"),
        ("5::/nowhere:{}", "invalid_packet"),
        ('5::/nowhere:{"name":"x"}', "no_such_namespace"),
    ],
)
def test_bad_packets_are_refused_and_the_session_goes_on(service, raw, code):
    alice = session(service)
    alice.handle_raw(raw)
    errors = [protocol.decode_packet(t) for t in drain(alice)]
    assert [e["args"][0]["code"] for e in errors if e.get("name") == "error"] == [code]
    (ack,) = call(alice, "rooms", {})
    assert ack["args"][0]["ok"] is True


def test_a_failing_handler_costs_one_packet(service, monkeypatch, caplog):
    alice = session(service)

    def explode(member, request=None):
        raise RuntimeError("boom")

    monkeypatch.setattr(service, "rooms", explode)
    (error,) = call(alice, "rooms", {})
    assert error["args"][0]["code"] == "server_error"
    assert "boom" in caplog.text
    monkeypatch.undo()
    (ack,) = call(alice, "rooms", {})
    assert ack["args"][0]["ok"] is True


def test_reclaiming_a_nickname_ends_the_stale_session(service):
    server = NoServer()
    old, new = session(service, server), session(service, server)
    (ack,) = call(old, "nickname", {"nickname": "alice"})
    token = ack["args"][0]["token"]
    call(new, "nickname", {"nickname": "alice", "token": token})
    assert drain(old)[-1] == "0::"  # told, so it does not reconnect and reclaim it back
    wait_until(lambda: old.sessid not in server.sockets)
    assert service.chat.nickname_of(new.sessid) == "alice"


def test_disconnect_leaves_the_chat_once(service):
    alice, bob = in_lobby(service, "alice"), in_lobby(service, "bob")
    drain(bob)
    alice.handle_raw("0::/chat")
    alice.kill(detach=True)
    leaves = [t for t in drain(bob) if '"kind":"leave"' in t]
    assert len(leaves) == 1
    assert service.chat.room_list() == [{"name": "lobby", "count": 1}]
