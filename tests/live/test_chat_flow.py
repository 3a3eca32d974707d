"""A real ChatServer on 127.0.0.1 driven by raw protocol clients over every transport."""

import time

import pytest

from tests.support.chatting import TRANSPORTS, announced, chatter, wait_until
from tests.support.sioclient import SocketIOClient


def test_handshake_format(address):
    client = SocketIOClient(address)
    sid, heartbeat, close, transports = client.handshake()
    assert len(sid) >= 24
    assert (heartbeat, close) == (60, 3)
    assert transports == ["websocket", "xhr-polling", "jsonp-polling"]


@pytest.mark.parametrize("sender", TRANSPORTS)
@pytest.mark.parametrize("receiver", TRANSPORTS)
def test_two_clients_chat_across_transports(address, clients, sender, receiver):
    bob = chatter(address, "bob", receiver)
    alice = chatter(address, "alice", sender)
    clients += [alice, bob]
    text = 'héllo 你好 🎉 "quoted" \\ back\nline </script>'
    ack = alice.call("message", {"room": "lobby", "id": "a-1", "text": text})
    assert ack == {"ok": True, "id": "a-1", "seq": 1}
    (message,) = bob.wait_event("message")
    assert message["text"] == text
    assert (message["author"], message["id"], message["seq"], message["room"]) == ("alice", "a-1", 1, "lobby")
    assert abs(message["ts"] - time.time()) < 5


def test_sender_gets_broadcast_before_its_ack(address, clients):
    alice = chatter(address, "alice")
    clients.append(alice)
    start = len(alice.packets)
    alice.call("message", {"room": "lobby", "id": "x1", "text": "hi"})
    kinds = [(p["type"], p.get("name")) for p in alice.packets[start:]]
    assert kinds.index(("event", "message")) < kinds.index(("ack", None))


@pytest.mark.parametrize("app_settings", [{"rate": 1000, "burst": 1000}])
def test_history_of_fifteen_on_join(address, clients):
    alice = chatter(address, "alice")
    clients.append(alice)
    for n in range(20):
        assert alice.call("message", {"room": "lobby", "id": "m%d" % n, "text": "n%d" % n})["ok"]
    bob = chatter(address, "bob")
    clients.append(bob)
    history = bob.joined["messages"]
    assert [m["seq"] for m in history] == list(range(6, 21))
    assert [m["text"] for m in history] == ["n%d" % n for n in range(5, 20)]
    assert bob.joined["complete"] is True


def test_announcements_and_roster(address, clients):
    alice = chatter(address, "alice")
    bob = chatter(address, "bob")
    clients += [alice, bob]
    assert bob.joined["roster"] == ["alice", "bob"]
    notice = announced(alice, "join", "bob")
    assert (notice["room"], notice["count"]) == ("lobby", 2)
    assert bob.call("leave", {"room": "lobby"}) == {"ok": True, "room": "lobby"}
    assert announced(alice, "leave", "bob")["count"] == 1
    assert alice.call("roster", {"room": "lobby"})["members"] == ["alice"]
    assert alice.call("rooms", {})["rooms"] == [{"name": "lobby", "count": 1}]


def test_rooms_are_separate(address, clients):
    alice = chatter(address, "alice", room="kitchen")
    bob = chatter(address, "bob", room="garden")
    carol = chatter(address, "carol", room="kitchen")
    clients += [alice, bob, carol]
    alice.call("message", {"room": "kitchen", "id": "k1", "text": "tea?"})
    carol.wait_event("message")
    bob.call("message", {"room": "garden", "id": "g1", "text": "roses"})
    assert [a[0]["text"] for a in carol.events("message")] == ["tea?"]
    assert bob.call("rooms", {})["rooms"] == [
        {"name": "garden", "count": 1},
        {"name": "kitchen", "count": 2},
        {"name": "lobby", "count": 0},
    ]


def test_rename_is_announced(address, clients):
    alice = chatter(address, "alice")
    bob = chatter(address, "bob")
    clients += [alice, bob]
    assert alice.call("nickname", {"nickname": "Alicia"})["nickname"] == "Alicia"
    notice = announced(bob, "rename", "Alicia")
    assert notice["previous"] == "alice"


def test_typing_reaches_others_only(address, clients):
    alice = chatter(address, "alice")
    bob = chatter(address, "bob")
    clients += [alice, bob]
    assert alice.call("typing", {"room": "lobby"}) == {"ok": True}
    (notice,) = bob.wait_event("typing")
    assert notice == {"room": "lobby", "nickname": "alice"}
    assert alice.events("typing") == []


def test_retried_message_id_is_stored_once(address, clients):
    alice = chatter(address, "alice")
    bob = chatter(address, "bob")
    clients += [alice, bob]
    first = alice.call("message", {"room": "lobby", "id": "same", "text": "once"})
    again = alice.call("message", {"room": "lobby", "id": "same", "text": "once"})
    assert first == again == {"ok": True, "id": "same", "seq": 1}
    bob.wait_event("message")
    probe = alice.call("message", {"room": "lobby", "id": "next", "text": "two"})
    assert probe["seq"] == 2
    bob.wait_event("message", lambda a: a[0]["id"] == "next")
    assert [a[0]["id"] for a in bob.events("message")] == ["same", "next"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_catch_up_after_a_dropped_connection(address, clients, transport):
    alice = chatter(address, "alice", transport)
    bob = chatter(address, "bob")
    clients.append(bob)
    alice.call("message", {"room": "lobby", "id": "before", "text": "seen"})
    last_seen = alice.wait_event("message")[0]["seq"]
    alice.close()  # the tab's network drops; the server has not noticed yet on polling
    for n in range(3):
        bob.call("message", {"room": "lobby", "id": "away%d" % n, "text": "while away %d" % n})
    back = SocketIOClient(address, transport).connect()
    clients.append(back)
    # A polling session may still hold the nickname (until the close timeout): the token reclaims it.
    reclaim = back.call("nickname", {"nickname": "alice", "token": alice.token})
    assert (reclaim["ok"], reclaim["nickname"]) == (True, "alice")
    rejoined = back.call("join", {"room": "lobby", "after": last_seen})
    assert [m["text"] for m in rejoined["messages"]] == ["while away %d" % n for n in range(3)]
    assert rejoined["complete"] is True
    again = back.call("catch_up", {"room": "lobby", "after": last_seen + 2})
    assert [m["id"] for m in again["messages"]] == ["away2"]


def test_nickname_reclaim_needs_the_token(address, clients):
    alice = chatter(address, "alice")
    mallory = SocketIOClient(address).connect()
    clients += [alice, mallory]
    refused = mallory.call("nickname", {"nickname": "ALICE", "token": "guess"})
    assert refused["ok"] is False and refused["code"] == "nickname_taken"
    (error,) = mallory.wait_event("error")
    assert error["code"] == "nickname_taken" and error["event"] == "nickname"


def test_websocket_disconnect_is_announced_within_a_second(address, clients):
    alice = chatter(address, "alice")
    bob = chatter(address, "bob")
    clients.append(bob)
    started = time.monotonic()
    alice.close()
    announced(bob, "leave", "alice", timeout=1.0)
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("transport", ["xhr-polling", "jsonp-polling"])
def test_polling_disconnect_is_announced_within_the_close_timeout(address, server, clients, transport):
    alice = chatter(address, "alice", transport)
    bob = chatter(address, "bob")
    clients.append(bob)
    alice.close()
    started = time.monotonic()
    close_timeout = server.config["close_timeout"]
    announced(bob, "leave", "alice", timeout=close_timeout + 2)
    waited = time.monotonic() - started
    assert waited <= close_timeout + 1.5
    wait_until(lambda: len(server.sockets) == 1)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_size_cap_and_rate_limit_keep_the_session(address, clients, transport):
    alice = chatter(address, "alice", transport)
    clients.append(alice)
    exact = alice.call("message", {"room": "lobby", "id": "cap", "text": "x" * 2000})
    assert exact["ok"] is True
    too_long = alice.call("message", {"room": "lobby", "id": "long", "text": "x" * 2001})
    assert (too_long["ok"], too_long["code"], too_long["id"]) == (False, "too_long", "long")
    error = alice.wait_event("error", lambda a: a[0]["code"] == "too_long")[0]
    assert "2000" in error["message"]
    codes = [
        alice.call("message", {"room": "lobby", "id": "r%d" % n, "text": "spam"}).get("code")
        for n in range(12)
    ]
    assert "rate_limited" in codes
    assert alice.wait_event("error", lambda a: a[0]["code"] == "rate_limited")
    assert alice.call("rooms", {})["ok"] is True
