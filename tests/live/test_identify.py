"""``ChatMiddleware(identify=...)``: the host app names the chat's users (no web framework here).

The fake ``identify`` reads a ``user`` cookie, as a real one reads the site's session cookie.
"""

import logging
from http.cookies import SimpleCookie

import pytest

from chatwsgi import protocol
from chatwsgi.errors import ChatError
from chatwsgi.service import ChatService
from tests.support.chatting import TRANSPORTS, wait_until
from tests.support.sioclient import SocketIOClient

pytestmark = pytest.mark.live


@pytest.fixture
def asked():
    """The environ of every call of ``identify``."""
    return []


@pytest.fixture
def app_settings(asked):
    def identify(environ):
        asked.append(dict(environ))
        cookie = SimpleCookie(environ.get("HTTP_COOKIE", ""))
        if "broken" in cookie:
            raise RuntimeError("the user store is down")
        return cookie["user"].value if "user" in cookie else None

    return {"identify": identify}


def visit(address, clients, cookie=None, transport="websocket"):
    """A client whose requests carry ``cookie`` (the site's), connected to /chat."""
    client = SocketIOClient(address, transport)
    client.cookie = cookie
    clients.append(client.connect())
    return client


def named(client):
    """The name the server gave the client in its ``nickname`` event."""
    (event,) = client.wait_event("nickname")
    return event["nickname"]


def refused(client):
    """The connect refusal the client was told, after which its session ended."""
    (error,) = client.wait_event("error", lambda args: args[0].get("event") == "connect")
    wait_until(lambda: client.closed)
    assert protocol.DISCONNECT in client.raw  # told on purpose: the page does not reconnect
    return error


# --- a signed-in user ------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_signed_in_user_chats_under_the_name_identify_gives(address, clients, faults, asked, transport):
    alice = visit(address, clients, "user=alice", transport)
    bob = visit(address, clients, "user=bob")
    assert (named(alice), named(bob)) == ("alice", "bob")
    assert alice.call("join", {"room": "lobby"})["ok"]
    assert bob.call("join", {"room": "lobby"})["roster"] == ["alice", "bob"]
    assert alice.call("message", {"room": "lobby", "id": "a1", "text": "hi"})["ok"]
    (message,) = bob.wait_event("message")
    assert (message["author"], message["text"]) == ("alice", "hi")
    # Once per session, with the environ of its first transport request (the site's cookie in it).
    environ = next(e for e in asked if e["HTTP_COOKIE"] == "user=alice")
    assert environ["PATH_INFO"] == "/socket.io/1/%s/%s" % (transport, alice.session_id)
    assert [e["HTTP_COOKIE"] for e in asked] == ["user=alice", "user=bob"]


def test_a_nickname_event_cannot_pick_another_name(address, clients, faults):
    alice = visit(address, clients, "user=alice")
    named(alice)
    assert alice.call("join", {"room": "lobby"})["ok"]
    for request in ({"nickname": "mallory"}, {"nickname": "alice"}, {"nickname": "bob", "token": "x"}):
        ack = alice.call("nickname", request)
        assert (ack["ok"], ack["code"], ack["event"]) == (False, "nickname_fixed", "nickname")
    assert alice.wait_event("error")[0]["code"] == "nickname_fixed"
    assert alice.call("roster", {"room": "lobby"})["members"] == ["alice"]


# --- refused -----------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_not_signed_in_is_refused_and_the_session_ends(server, address, clients, faults, transport):
    stranger = visit(address, clients, None, transport)
    error = refused(stranger)
    assert error["code"] == "not_signed_in" and error["message"]
    assert stranger.events("nickname") == []
    wait_until(lambda: stranger.session_id not in server.sockets)
    watcher = visit(address, clients, "user=watcher")
    named(watcher)
    assert watcher.call("rooms", {})["rooms"] == [{"name": "lobby", "count": 0}]


def test_a_failing_identify_refuses_without_telling_the_client_why(address, clients, caplog):
    with caplog.at_level(logging.ERROR, logger="chatwsgi.app"):
        client = visit(address, clients, "broken=1")
        error = refused(client)
    assert error["code"] == "server_error"
    assert not any("Traceback" in text or "user store" in text for text in client.raw)
    (record,) = [r for r in caplog.records if r.name == "chatwsgi.app"]
    assert record.exc_info[0] is RuntimeError  # logged with its traceback, on the server only


@pytest.mark.parametrize("cookie", ['user="%s"' % ("x" * 33), 'user="tab\\011name"'])
def test_a_name_that_is_no_nickname_is_refused(address, clients, faults, cookie):
    assert refused(visit(address, clients, cookie))["code"] == "bad_nickname"


def test_users_whose_names_differ_in_case_only_are_one_nickname(address, clients, faults):
    first = visit(address, clients, "user=Alice")
    assert named(first) == "Alice"
    assert refused(visit(address, clients, "user=alice"))["code"] == "nickname_taken"
    assert first.call("join", {"room": "lobby"})["ok"]  # the first one keeps its name and session


# --- the same user twice -------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_second_tab_of_the_same_user_takes_the_name_over(server, address, clients, faults, transport):
    old_tab = visit(address, clients, "user=alice", transport)
    named(old_tab)
    assert old_tab.call("join", {"room": "lobby"})["ok"]
    bob = visit(address, clients, "user=bob")
    named(bob)
    assert bob.call("join", {"room": "lobby"})["ok"]
    new_tab = visit(address, clients, "user=alice")
    assert named(new_tab) == "alice"
    wait_until(lambda: old_tab.closed)
    assert protocol.DISCONNECT in old_tab.raw  # booted: its page says so and does not reconnect
    wait_until(lambda: old_tab.session_id not in server.sockets)
    assert new_tab.call("join", {"room": "lobby"})["roster"] == ["alice", "bob"]
    assert new_tab.call("message", {"room": "lobby", "id": "n1", "text": "moved"})["ok"]
    assert bob.wait_event("message")[0]["author"] == "alice"


def test_reopening_the_namespace_names_the_session_again(address, clients, faults):
    alice = visit(address, clients, "user=alice")
    named(alice)
    alice.send("0::/chat")
    alice.send("1::/chat")
    wait_until(lambda: len(alice.events("nickname")) == 2)
    assert alice.events("nickname")[1] == [{"nickname": "alice"}]
    assert alice.call("join", {"room": "lobby"})["roster"] == ["alice"]


# --- the pure part ---------------------------------------------------------------------------------


def test_assign_refuses_no_user_and_evicts_the_same_users_older_connection():
    service = ChatService()
    closed = []
    for member in ("tab1", "tab2", "nobody"):
        service.connect(member, lambda frame: None, lambda m=member: closed.append(m))
    with pytest.raises(ChatError) as refusal:
        service.assign("nobody", None)
    assert refusal.value.code == "not_signed_in"
    assert service.assign("tab1", "alice") == {"nickname": "alice"}
    assert service.assign("tab2", "alice") == {"nickname": "alice"}
    assert closed == ["tab1"]
    assert service.chat.nickname_of("tab2") == "alice"
