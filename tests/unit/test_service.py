"""service.py: ChatService with a LocalHub and sinks that are plain lists."""

import itertools

import pytest

from chatwsgi.chat import Chat
from chatwsgi.errors import ChatError
from chatwsgi.hub import LocalHub
from chatwsgi.protocol import decode_packet
from chatwsgi.service import ENDPOINT, ChatService

TS = 1000.0


class FakeClock:
    def __init__(self, now=50.0):
        self.now = now

    def __call__(self):
        return self.now


def make_service(clock=None, **settings):
    tokens = itertools.count(1)
    chat = Chat(clock=lambda: TS, new_token=lambda: "tok%d" % next(tokens), new_epoch=lambda: "")
    return ChatService(chat=chat, hub=LocalHub(), clock=clock or FakeClock(), **settings)


class Client:
    """One member: its sink is a list of the frames it received."""

    def __init__(self, service, member, nickname=None, *rooms):
        self.service, self.member, self.frames = service, member, []
        service.connect(member, self.frames.append)
        if nickname is not None:
            self.ack = service.nickname(member, {"nickname": nickname})[0]
        for room in rooms:
            service.join(member, {"room": room})

    def events(self):
        """The (name, argument) of every frame received, and forget them."""
        received = []
        for frame in self.frames:
            packet = decode_packet(frame)
            assert (packet["type"], packet["endpoint"]) == ("event", ENDPOINT)
            assert len(packet["args"]) == 1
            received.append((packet["name"], packet["args"][0]))
        self.frames.clear()
        return received


def announce(room, kind, nickname, count, **extra):
    return (
        "announce",
        dict({"room": room, "kind": kind, "nickname": nickname, "count": count, "ts": TS}, **extra),
    )


def refused(code, function, *args):
    with pytest.raises(ChatError) as info:
        function(*args)
    assert info.value.code == code
    return info.value


def test_nickname_ack():
    service = make_service()
    alice = Client(service, "a")
    ack, evicted = service.nickname("a", {"nickname": "  alice "})
    assert ack == {"ok": True, "nickname": "alice", "token": "tok1"}
    assert evicted is None
    assert alice.events() == []


def test_join_announces_to_the_room_including_the_joiner():
    service = make_service()
    alice = Client(service, "a", "alice", "lobby")
    bob = Client(service, "b", "bob")
    outsider = Client(service, "c", "carol", "dev")
    assert alice.events() == [announce("lobby", "join", "alice", 1)]
    ack = service.join("b", {"room": "Lobby"})
    assert ack == {
        "ok": True,
        "roster": ["alice", "bob"],
        "room": "lobby",
        "messages": [],
        "complete": True,
        "epoch": "",
        "more": False,
    }
    assert alice.events() == [announce("lobby", "join", "bob", 2)]
    assert bob.events() == [announce("lobby", "join", "bob", 2)]
    assert outsider.events() == [announce("dev", "join", "carol", 1)]


def test_joining_again_announces_nothing():
    service = make_service()
    alice = Client(service, "a", "alice", "lobby")
    alice.events()
    ack = service.join("a", {"room": "lobby"})
    assert ack["roster"] == ["alice"]
    assert alice.events() == []


def test_join_ack_carries_history_and_catch_up():
    service = make_service()
    alice = Client(service, "a", "alice", "lobby")
    for n in (1, 2, 3):
        service.message("a", {"room": "lobby", "id": "m%d" % n, "text": "t%d" % n})
    Client(service, "b", "bob")
    ack = service.join("b", {"room": "lobby", "after": 2})
    assert ack == {
        "ok": True,
        "roster": ["alice", "bob"],
        "room": "lobby",
        "messages": [{"room": "lobby", "seq": 3, "id": "m3", "author": "alice", "text": "t3", "ts": TS}],
        "complete": True,
        "epoch": "",
        "more": False,
    }
    assert [name for name, _ in alice.events()] == ["announce", "message", "message", "message", "announce"]


def test_a_join_refused_for_a_bad_after_changes_nothing():
    service = make_service()
    alice = Client(service, "a", "alice", "lobby")
    Client(service, "b", "bob")
    alice.events()
    refused("bad_sequence", service.join, "b", {"room": "lobby", "after": "x"})
    assert service.roster("a", {"room": "lobby"})["members"] == ["alice"]
    service.join("b", {"room": "lobby"})
    assert alice.events() == [announce("lobby", "join", "bob", 2)]


def test_message_reaches_only_that_rooms_members():
    service = make_service()
    alice = Client(service, "a", "alice", "lobby")
    bob = Client(service, "b", "bob", "lobby")
    carol = Client(service, "c", "carol", "dev")
    nobody = Client(service, "d", "dave")
    for client in (alice, bob, carol):
        client.events()
    ack = service.message("a", {"room": "lobby", "id": "m1", "text": "hello 🎉"})
    assert ack == {"ok": True, "id": "m1", "seq": 1}
    expected = [
        ("message", {"room": "lobby", "seq": 1, "id": "m1", "author": "alice", "text": "hello 🎉", "ts": TS})
    ]
    assert alice.events() == expected
    assert bob.events() == expected
    assert carol.events() == []
    assert nobody.events() == []


def test_a_retried_message_id_is_broadcast_once():
    service = make_service()
    alice = Client(service, "a", "alice", "lobby")
    bob = Client(service, "b", "bob", "lobby")
    alice.events()
    bob.events()
    first = service.message("a", {"room": "lobby", "id": "m1", "text": "hi"})
    retry = service.message("a", {"room": "lobby", "id": "m1", "text": "hi"})
    assert first == retry == {"ok": True, "id": "m1", "seq": 1}
    assert [name for name, _ in bob.events()] == ["message"]
    assert service.message("a", {"room": "lobby", "id": "m2", "text": "next"}) == {
        "ok": True,
        "id": "m2",
        "seq": 2,
    }


def test_message_refusals():
    service = make_service()
    alice = Client(service, "a", "alice", "lobby")
    alice.events()
    refused("not_in_room", service.message, "a", {"room": "dev", "id": "m1", "text": "hi"})
    refused("bad_id", service.message, "a", {"room": "lobby", "text": "hi"})
    refused("empty_message", service.message, "a", {"room": "lobby", "id": "m1", "text": "  "})
    refused("bad_room", service.message, "a", {"id": "m1", "text": "hi"})
    assert alice.events() == []


@pytest.mark.parametrize("request_value", ["lobby", ["lobby"], 3, True])
def test_a_non_dict_request_is_a_bad_request(request_value):
    service = make_service()
    Client(service, "a", "alice", "lobby")
    for method in (service.nickname, service.join, service.leave, service.message, service.typing):
        error = refused("bad_request", method, "a", request_value)
        assert error.as_dict() == {
            "code": "bad_request",
            "message": "Send one JSON object as the event's argument.",
        }


def test_a_missing_request_is_an_empty_one():
    service = make_service()
    Client(service, "a")
    refused("bad_nickname", service.nickname, "a", None)
    assert service.rooms("a") == {"ok": True, "rooms": [{"name": "lobby", "count": 0}]}


def test_typing_goes_to_the_others_not_the_sender():
    service = make_service()
    alice = Client(service, "a", "alice", "lobby")
    bob = Client(service, "b", "bob", "lobby")
    carol = Client(service, "c", "carol", "dev")
    for client in (alice, bob, carol):
        client.events()
    assert service.typing("a", {"room": "lobby"}) == {"ok": True}
    assert bob.events() == [("typing", {"room": "lobby", "nickname": "alice"})]
    assert alice.events() == []
    assert carol.events() == []


def test_excess_typing_is_dropped_not_refused():
    clock = FakeClock()
    service = make_service(clock=clock, typing_rate=1.0)
    Client(service, "a", "alice", "lobby")
    bob = Client(service, "b", "bob", "lobby")
    bob.events()
    answers = [service.typing("a", {"room": "lobby"}) for _ in range(3)]
    assert answers == [{"ok": True}, {"ok": True}, {"ok": False, "code": "rate_limited"}]
    assert len(bob.events()) == 2
    clock.now += 1.0
    assert service.typing("a", {"room": "lobby"}) == {"ok": True}


def test_leave_announces_with_the_updated_count():
    service = make_service()
    alice = Client(service, "a", "alice", "lobby")
    bob = Client(service, "b", "bob", "lobby")
    alice.events()
    bob.events()
    assert service.leave("b", {"room": "LOBBY"}) == {"ok": True, "room": "lobby"}
    assert alice.events() == [announce("lobby", "leave", "bob", 1)]
    assert bob.events() == []
    service.message("a", {"room": "lobby", "id": "m1", "text": "still here?"})
    assert bob.events() == []
    assert [name for name, _ in alice.events()] == ["message"]


def test_disconnect_announces_leave_and_frees_the_nickname():
    service = make_service()
    alice = Client(service, "a", "alice", "lobby", "dev")
    bob = Client(service, "b", "bob", "lobby")
    alice.events()
    bob.events()
    service.disconnect("a")
    assert bob.events() == [announce("lobby", "leave", "alice", 1)]
    assert alice.events() == []
    assert service.rooms("b") == {"ok": True, "rooms": [{"name": "lobby", "count": 1}]}
    Client(service, "c")
    ack, evicted = service.nickname("c", {"nickname": "Alice"})
    assert (ack["nickname"], evicted) == ("Alice", None)
    service.message("b", {"room": "lobby", "id": "m1", "text": "hi"})
    assert alice.frames == []


def test_disconnect_without_a_nickname_is_quiet():
    service = make_service()
    bob = Client(service, "b", "bob", "lobby")
    bob.events()
    Client(service, "x")
    service.disconnect("x")
    service.disconnect("never-connected")
    assert bob.events() == []


def test_rate_limited_after_the_burst():
    clock = FakeClock()
    service = make_service(clock=clock, rate=1.0, burst=3)
    Client(service, "a", "alice", "lobby")
    bob = Client(service, "b", "bob", "lobby")
    bob.events()
    seqs = [service.message("a", {"room": "lobby", "id": "m%d" % n, "text": "x"})["seq"] for n in range(3)]
    assert seqs == [1, 2, 3]
    refused("rate_limited", service.message, "a", {"room": "lobby", "id": "m3", "text": "x"})
    assert len(bob.events()) == 3
    # Another member has a bucket of its own.
    assert service.message("b", {"room": "lobby", "id": "b1", "text": "y"})["seq"] == 4
    clock.now += 1.0
    assert service.message("a", {"room": "lobby", "id": "m3", "text": "x"})["seq"] == 5


def test_rename_announces_to_the_members_rooms():
    service = make_service()
    alice = Client(service, "a", "alice", "lobby", "dev")
    bob = Client(service, "b", "bob", "lobby")
    alice.events()
    bob.events()
    ack, _ = service.nickname("a", {"nickname": "ally"})
    assert ack == {"ok": True, "nickname": "ally", "token": "tok3"}
    assert bob.events() == [announce("lobby", "rename", "ally", 2, previous="alice")]
    assert alice.events() == [
        announce("dev", "rename", "ally", 1, previous="alice"),
        announce("lobby", "rename", "ally", 2, previous="alice"),
    ]


def test_reclaiming_a_nickname_returns_the_evicted_member():
    service = make_service()
    old = Client(service, "old", "alice", "lobby")
    bob = Client(service, "b", "bob", "lobby")
    token = old.ack["token"]
    old.events()
    bob.events()
    new = Client(service, "new")
    refused("nickname_taken", service.nickname, "new", {"nickname": "alice", "token": "wrong"})
    ack, evicted = service.nickname("new", {"nickname": "alice", "token": token})
    assert ack == {"ok": True, "nickname": "alice", "token": token}
    assert evicted == "old"
    assert bob.events() == [announce("lobby", "leave", "alice", 1)]
    assert old.events() == []
    service.join("new", {"room": "lobby"})
    assert bob.events() == [announce("lobby", "join", "alice", 2)]
    assert new.events() == [announce("lobby", "join", "alice", 2)]
    assert old.frames == []


def test_catch_up_and_roster_and_rooms():
    service = make_service()
    Client(service, "a", "alice", "lobby", "dev")
    Client(service, "b", "Bob", "lobby")
    service.message("a", {"room": "dev", "id": "m1", "text": "one"})
    assert service.catch_up("a", {"room": "dev", "after": 0}) == {
        "ok": True,
        "room": "dev",
        "messages": [{"room": "dev", "seq": 1, "id": "m1", "author": "alice", "text": "one", "ts": TS}],
        "complete": True,
        "epoch": "",
        "more": False,
    }
    assert service.catch_up("a", {"room": "dev", "after": 1})["messages"] == []
    refused("bad_sequence", service.catch_up, "a", {"room": "dev"})
    assert service.roster("a", {"room": "lobby"}) == {
        "ok": True,
        "room": "lobby",
        "members": ["alice", "Bob"],
    }
    refused("not_in_room", service.roster, "b", {"room": "dev"})
    assert service.history("a", {"room": "dev", "before": 2, "limit": 1}) == {
        "ok": True,
        "room": "dev",
        "messages": [{"room": "dev", "seq": 1, "id": "m1", "author": "alice", "text": "one", "ts": TS}],
        "complete": True,
        "epoch": "",
        "more": False,
    }
    refused("not_in_room", service.history, "b", {"room": "dev", "before": 2})
    refused("bad_sequence", service.history, "a", {"room": "dev"})
    assert service.rooms("b") == {
        "ok": True,
        "rooms": [{"name": "dev", "count": 1}, {"name": "lobby", "count": 2}],
    }


def test_shutdown_frames_reach_every_sink():
    service = make_service()
    clients = [Client(service, "a", "alice", "lobby"), Client(service, "b", "bob"), Client(service, "c")]
    for client in clients:
        client.events()
    service.shutdown("Back soon.")
    for client in clients:
        assert client.events() == [("shutdown", {"message": "Back soon."})]
    service.disconnect("b")
    service.shutdown("Again.")
    assert clients[1].frames == []
    assert [len(clients[0].frames), len(clients[2].frames)] == [1, 1]


def test_frames_use_the_services_endpoint():
    service = make_service(endpoint="/other")
    frames = []
    service.connect("a", frames.append)
    service.shutdown("bye")
    assert frames == ['5::/other:{"name":"shutdown","args":[{"message":"bye"}]}']


def test_rooms_above_the_announce_limit_stop_announcing_joins_and_leaves():
    service = make_service(announce_limit=2)
    sinks = {}
    for member in ("a", "b", "c"):
        sinks[member] = []
        service.connect(member, sinks[member].append)
        service.nickname(member, {"nickname": member})
        service.join(member, {"room": "big"})
    kinds = [decode_packet(f)["args"][0]["nickname"] for f in sinks["a"] if '"announce"' in f]
    assert kinds == ["a", "b"]  # c made it three: over the limit, not announced
    service.leave("c", {"room": "big"})  # back to two: announced again
    assert '"kind":"leave"' in sinks["a"][-1]
    service.message("a", {"room": "big", "id": "m", "text": "still delivered"})
    assert all('"still delivered"' in sinks[m][-1] for m in ("a", "b"))


@pytest.mark.parametrize(
    ("method", "request_body"),
    [
        ("nickname", {"nickname": "squatter"}),
        ("join", {"room": "lobby"}),
        ("leave", {"room": "lobby"}),
        ("message", {"room": "lobby", "id": "m1", "text": "hi"}),
        ("typing", {"room": "lobby"}),
        ("catch_up", {"room": "lobby", "after": 0}),
        ("roster", {"room": "lobby"}),
        ("rooms", {}),
    ],
)
def test_nothing_before_the_namespace_is_connected(method, request_body):
    service = make_service()
    refused("not_connected", getattr(service, method), "ghost", request_body)
    # Nothing was claimed that a disconnect would have to release.
    assert service.chat.members == {}
    assert service.backplane._nicknames == {}
    assert service._limits == {} and service._sinks == {}


def test_connecting_again_keeps_the_limits_it_had():
    clock = FakeClock()
    service = make_service(clock=clock, rate=1.0, burst=2)
    alice = Client(service, "a", "alice", "lobby")
    for n in range(2):
        service.message("a", {"room": "lobby", "id": "m%d" % n, "text": "x"})
    service.connect("a", alice.frames.append)  # 1::/chat sent again
    refused("rate_limited", service.message, "a", {"room": "lobby", "id": "m2", "text": "x"})
    # The session hands its own limits back after closing and reopening the namespace.
    limits = service._limits["a"]
    service.disconnect("a")
    service.connect("a", alice.frames.append, limits=limits)
    service.nickname("a", {"nickname": "alice"})
    service.join("a", {"room": "lobby"})
    refused("rate_limited", service.message, "a", {"room": "lobby", "id": "m2", "text": "x"})


@pytest.mark.parametrize(
    ("kind", "call"),
    [
        ("room", lambda s, n: s.join("a", {"room": "r%d" % (n % 5)})),
        ("room", lambda s, n: s.leave("a", {"room": "lobby"})),
        ("nickname", lambda s, n: s.nickname("a", {"nickname": "alice%d" % n})),
        ("query", lambda s, n: s.rooms("a", {})),
        ("query", lambda s, n: s.roster("a", {"room": "lobby"})),
        ("query", lambda s, n: s.catch_up("a", {"room": "lobby", "after": 0})),
    ],
)
def test_every_event_is_limited_and_a_flood_is_told_so(kind, call):
    service = make_service()  # a clock that never moves: no token comes back
    Client(service, "a", "alice", "lobby")
    rate, burst = service.rates[kind]
    outcomes = []
    for n in range(burst * 4):
        try:
            call(service, n)
            outcomes.append("ok")
        except ChatError as refusal:
            outcomes.append(refusal.code)
            if refusal.code == "flood":
                break
    assert outcomes[-1] == "flood"
    assert outcomes.count("rate_limited") == 2 * burst


def test_the_middleware_refuses_history_for_a_backplane_it_did_not_make():
    from chatwsgi.app import ChatMiddleware
    from chatwsgi.backplane import LocalBackplane

    with pytest.raises(ValueError):
        ChatMiddleware(None, history=30, backplane=LocalBackplane())
    middleware = ChatMiddleware(None, backplane=LocalBackplane(history_size=30))
    assert middleware.service.backplane.retention.shown == 30
