"""The chat driven by Socket.IO 0.9 clients we did not write: npm socket.io-client 0.9.16 (Node)
and PyPI socketIO-client 0.5.7.4, over websocket and xhr-polling, in driver subprocesses
(tests/support/remote.py). Run: ``make thirdparty`` or ``.venv/bin/python -m pytest tests/thirdparty``.
"""

import json
import time

import gevent
import pytest
from gevent.subprocess import check_output
from socketIO_client import BaseNamespace, SocketIO
from socketIO_client.transports import _yield_text_from_framed_data

from chatwsgi import protocol
from tests.support.chatting import chatter
from tests.support.remote import KINDS, THIRDPARTY, TRANSPORTS, ack_summary

pytestmark = pytest.mark.live

# What a chat carries that a client's encoding can get wrong: accents, CJK, emoji (outside the
# BMP, so two UTF-16 units), quotes, a backslash, a newline, U+FFFD (the polling payloads'
# frame separator) and markup.
UNICODE_TEXT = 'Zoë à l\'été: 你好世界 🎉👍🏽 "quoted" \\ back\\slash\nnew line \ufffd </script>'
LONG_TEXT = ('ÀÉÎ 漢字 🚀 "q" \\ \n' * 200)[:2000]  # the longest message allowed
assert len(LONG_TEXT) == 2000


def connect_all(remotes, *specs):
    """Connect clients of (kind, transport) concurrently: drivers take a moment to start."""
    jobs = [gevent.spawn(remotes.connect, kind, transport) for kind, transport in specs]
    gevent.joinall(jobs, raise_error=True)
    return [job.value for job in jobs]


def announced(client, kind, nickname, timeout=10, start=0):
    """The record of an announcement of ``kind`` about ``nickname`` (with its arrival time "t")."""
    return client.wait_for(
        lambda r: (
            r["kind"] == "event"
            and r["name"] == "announce"
            and (r["args"][0]["kind"], r["args"][0]["nickname"]) == (kind, nickname)
        ),
        timeout,
        start,
    )


def message_from(client, message_id, timeout=10):
    """The message event with ``message_id`` that ``client`` received."""
    (message,) = client.wait_event("message", lambda args: args[0]["id"] == message_id, timeout)
    return message


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("kind", KINDS)
def test_two_clients_of_one_kind_chat(remotes, request, kind, transport):
    zoe, bob = connect_all(remotes, (kind, transport), (kind, transport))
    assert zoe.transport == bob.transport == transport
    assert zoe.session_id and bob.session_id and zoe.session_id != bob.session_id

    # Nicknames: trimmed, unique case-insensitively; the refusal is an ack and an error event.
    claimed = zoe.call("nickname", {"nickname": "  Zoë "})
    assert (claimed["ok"], claimed["nickname"]) == (True, "Zoë") and claimed["token"]
    zoe.nickname, zoe.token = claimed["nickname"], claimed["token"]
    refused = bob.call("nickname", {"nickname": "ZOË"})
    assert (refused["ok"], refused["code"]) == (False, "nickname_taken")
    (error,) = bob.wait_event("error", lambda args: args[0]["code"] == "nickname_taken")
    assert error["event"] == "nickname"
    assert bob.call("nickname", {"nickname": "Bob"})["nickname"] == "Bob"
    bob.nickname = "Bob"

    # Join: the ack carries the history and the roster.
    first = zoe.call("join", {"room": "lobby"})
    assert (first["roster"], first["messages"], first["complete"]) == (["Zoë"], [], True)
    assert zoe.call("message", {"room": "lobby", "id": "z-1", "text": "first"}) == {
        "ok": True,
        "id": "z-1",
        "seq": 1,
    }
    joined = bob.call("join", {"room": "lobby"})
    assert (joined["room"], joined["roster"], joined["epoch"]) == ("lobby", ["Bob", "Zoë"], first["epoch"])
    assert [(m["seq"], m["author"], m["text"]) for m in joined["messages"]] == [(1, "Zoë", "first")]
    assert announced(zoe, "join", "Bob")["args"][0]["count"] == 2

    # Messages both ways, received exactly by the other (and echoed to the sender).
    exchanges = [(zoe, bob, "z-2", UNICODE_TEXT), (bob, zoe, "b-1", LONG_TEXT)]
    for seq, (sender, receiver, message_id, text) in enumerate(exchanges, start=2):
        ack = sender.call("message", {"room": "lobby", "id": message_id, "text": text})
        assert ack == {"ok": True, "id": message_id, "seq": seq}
        message = message_from(receiver, message_id)
        assert message["text"] == text, (len(message["text"]), len(text))
        assert (message["author"], message["seq"], message["room"]) == (sender.nickname, seq, "lobby")
        assert message_from(sender, message_id)["text"] == text

    # Typing reaches the others; roster and rooms.
    assert zoe.call("typing", {"room": "lobby"}) == {"ok": True}
    assert bob.wait_event("typing") == [{"room": "lobby", "nickname": "Zoë"}]
    assert bob.call("roster", {"room": "lobby"}) == {"ok": True, "room": "lobby", "members": ["Bob", "Zoë"]}
    assert zoe.call("rooms", {}) == {"ok": True, "rooms": [{"name": "lobby", "count": 2}]}
    assert zoe.events("typing") == []  # its own notice would have come before that ack

    # Leave: announced to the others; then back in.
    assert bob.call("leave", {"room": "lobby"}) == {"ok": True, "room": "lobby"}
    assert announced(zoe, "leave", "Bob")["args"][0]["count"] == 1
    mark = len(zoe.records)
    assert bob.call("join", {"room": "lobby"})["ok"]
    announced(zoe, "join", "Bob", start=mark)

    # Disconnect (the client's own, polite): announced to the other within 2 s.
    last_seen = max(args[0]["seq"] for args in zoe.events("message"))
    started = time.perf_counter()
    zoe.disconnect()
    left = announced(bob, "leave", "Zoë", timeout=2)
    assert left["t"] - started < 2.0, "leave announced after %.3f s" % (left["t"] - started)
    request.node.user_properties.append(("leave_announced_ms", round((left["t"] - started) * 1000, 2)))

    # Back with the token (a new session): the nickname, and catch-up from the last seen seq.
    missed = ["missed-%d" % n for n in range(3)]
    for message_id in missed:
        assert bob.call("message", {"room": "lobby", "id": message_id, "text": "while you were away"})["ok"]
    back = remotes.connect(kind, transport)
    assert back.session_id != zoe.session_id
    reclaimed = back.call("nickname", {"nickname": "Zoë", "token": zoe.token})
    assert (reclaimed["ok"], reclaimed["nickname"]) == (True, "Zoë")
    assert back.call("join", {"room": "lobby"})["roster"] == ["Bob", "Zoë"]
    caught = back.call("catch_up", {"room": "lobby", "after": last_seen, "epoch": first["epoch"]})
    assert [m["id"] for m in caught["messages"]] == missed
    assert (caught["complete"], caught["epoch"]) == (True, first["epoch"])
    assert not bob.disconnected and not bob.reconnected
    count, median, p90 = ack_summary(zoe.ack_times + bob.ack_times + back.ack_times, "message")
    # Kept in the test report (e.g. --junitxml with junit_family=legacy) for later comparison.
    request.node.user_properties.append(("message_ack_ms", {"count": count, "median": median, "p90": p90}))


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("kind", KINDS)
def test_batched_join_notices_reach_every_member_in_order(remotes, kind, transport):
    """A busy room's join notices go out in batches (presence.py): a client we did not write
    hears each one once, in order, and a member who joins and speaks at once is announced
    before its message."""
    clients = connect_all(remotes, *[(kind, transport)] * 4)
    for n, client in enumerate(clients):
        assert client.call("nickname", {"nickname": "p%d" % n})["ok"]
    watcher, *joiners = clients
    assert watcher.call("join", {"room": "burst"})["ok"]
    for joiner in joiners:  # each while the room is hot from the notice before
        assert joiner.call("join", {"room": "burst"})["ok"]
    assert joiners[-1].call("message", {"room": "burst", "id": "p-1", "text": "here"})["ok"]
    message_from(watcher, "p-1")
    heard = [
        (r["name"], r["args"][0].get("nickname") or r["args"][0].get("text"))
        for r in watcher.of_kind("event")
        if r["name"] in ("announce", "message")
    ]
    assert heard == [("announce", "p%d" % n) for n in range(4)] + [("message", "here")]


@pytest.mark.parametrize(
    "node_transport, pypi_transport, raw_transport",
    [("websocket", "xhr-polling", "jsonp-polling"), ("xhr-polling", "websocket", "websocket")],
)
def test_node_pypi_and_our_raw_client_chat_together(
    address, remotes, node_transport, pypi_transport, raw_transport
):
    raw = chatter(address, "raw", raw_transport)
    try:
        jobs = [
            gevent.spawn(remotes.chatter, "node", "node", node_transport),
            gevent.spawn(remotes.chatter, "pypi", "pypi", pypi_transport),
        ]
        gevent.joinall(jobs, raise_error=True)
        node, pypi = (job.value for job in jobs)
        assert (node.transport, pypi.transport) == (node_transport, pypi_transport)
        everyone = [node, pypi, raw]
        assert raw.call("roster", {"room": "lobby"})["members"] == ["node", "pypi", "raw"]

        for n, sender in enumerate(everyone):
            name = sender.nickname if sender is not raw else "raw"
            message_id = "%s-%d" % (name, n)
            text = "%s says: %s" % (name, UNICODE_TEXT)
            assert sender.call("message", {"room": "lobby", "id": message_id, "text": text})["ok"]
            for receiver in everyone:
                (message,) = receiver.wait_event("message", lambda args, i=message_id: args[0]["id"] == i)
                assert (message["author"], message["text"]) == (name, text)

        assert pypi.call("typing", {"room": "lobby"}) == {"ok": True}
        for receiver in (node, raw):
            assert receiver.wait_event("typing") == [{"room": "lobby", "nickname": "pypi"}]

        started = time.perf_counter()
        node.disconnect()
        left = announced(pypi, "leave", "node", timeout=2)
        assert left["t"] - started < 2.0
        raw.wait_event("announce", lambda a: (a[0]["kind"], a[0]["nickname"]) == ("leave", "node"), 2)
        assert pypi.call("roster", {"room": "lobby"})["members"] == ["pypi", "raw"]
    finally:
        raw.close()


# A polling session killed without a word lingers until the close timeout: long enough here that
# the reconnected client finds its nickname still held, and only the token gets it back.
@pytest.mark.parametrize("server_settings", [{"close_timeout": 10}])
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("kind", KINDS)
def test_a_killed_client_reclaims_its_nickname_with_the_token(address, remotes, kind, transport):
    witness = chatter(address, "witness")
    try:
        zoe = remotes.chatter(kind, "Zoë", transport)
        assert zoe.call("message", {"room": "lobby", "id": "z-1", "text": "before"})["ok"]
        last_seen = message_from(zoe, "z-1")["seq"]
        zoe.close()  # killed: no disconnect packet, no close frame from the client
        for n in range(2):
            assert witness.call("message", {"room": "lobby", "id": "w-%d" % n, "text": "away"})["ok"]
        back = remotes.connect(kind, transport)
        if transport == "xhr-polling":
            # The server cannot yet know the killed poller is gone: the nickname is still held.
            refused = back.call("nickname", {"nickname": "Zoë"})
            assert (refused["ok"], refused["code"]) == (False, "nickname_taken")
        reclaimed = back.call("nickname", {"nickname": "zoë", "token": zoe.token})
        assert (reclaimed["ok"], reclaimed["nickname"]) == (True, "zoë")
        rejoined = back.call("join", {"room": "lobby", "after": last_seen, "epoch": zoe.joined["epoch"]})
        assert [m["id"] for m in rejoined["messages"]] == ["w-0", "w-1"]
        assert rejoined["roster"] == ["witness", "zoë"]
    finally:
        witness.close()


def test_npm_client_transports_option_does_not_force_a_transport(address):
    """Documents socket.io-client 0.9.16 under Node: ``io.connect(url, {transports: [...]})``
    does not force a transport, so node_client.js replaces ``io.transports`` instead."""
    script = """
        var io = require(process.argv[1]);
        var chat = io.connect(process.argv[2], {transports: ['xhr-polling'], 'force new connection': true});
        chat.on('connect', function () {
            console.log(JSON.stringify({used: chat.socket.transport.name, list: io.transports}));
            process.exit(0);
        });
        setTimeout(function () { process.exit(1); }, 10000);
    """
    module = str(THIRDPARTY / "node_modules" / "socket.io-client")
    url = "http://%s:%d/chat" % address
    seen = json.loads(check_output(["node", "-e", script, module, url], timeout=15))
    # The option was merged index by index into the shared list, which each transport module
    # had already extended with its own name; the server's order then puts websocket first.
    assert seen == {
        "used": "websocket",
        "list": ["xhr-polling", "xhr-polling", "websocket", "xhr-polling"],
    }


def test_pypi_client_stock_namespace_fails_on_an_event_named_error():
    """Documents socketIO-client 0.5.7.4: an event called "error" (the chat's refusal event) is
    handed to on_error(reason, advice), meant for error packets; the stock method raises and
    ends the client's wait() loop. pypi_client.py's namespace takes both shapes."""
    namespace = BaseNamespace(None, "/chat")
    packet = ("5", "", "/chat", json.dumps({"name": "error", "args": [{"code": "nickname_taken"}]}))
    with pytest.raises(TypeError, match="advice"):
        SocketIO._on_event(None, packet, namespace._find_event_callback)


# The client logs the dropped packet with Logger.warn, deprecated since Python 3.3.
@pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning")
def test_pypi_client_reads_batched_polling_payloads_only_because_our_json_is_ascii():
    """Documents socketIO-client 0.5.7.4: it checks the lengths in a batched polling payload in
    code points, where Socket.IO 0.9 counts UTF-16 units, so it drops a packet that holds a
    character outside the BMP. The chat's JSON escapes every non-ASCII character: none is lost."""
    raw = "5::/chat:%s" % json.dumps({"name": "message", "args": [{"text": "🎉"}]}, ensure_ascii=False)
    assert list(_yield_text_from_framed_data(protocol.encode_payload([raw, "8::"]))) == ["8::"]
    ours = protocol.event_frame("/chat", "message", {"text": UNICODE_TEXT})
    assert ours.isascii()
    assert list(_yield_text_from_framed_data(protocol.encode_payload([ours, "8::"]))) == [ours, "8::"]
