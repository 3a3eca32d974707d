"""Small helpers for live chat tests: a client that has a nickname and sits in a room."""

import time

import gevent

from tests.support.sioclient import SocketIOClient

TRANSPORTS = ["websocket", "xhr-polling", "jsonp-polling"]


def chatter(address, nickname, transport="websocket", room="lobby", **client_options):
    """A connected client with ``nickname`` that has joined ``room``."""
    client = SocketIOClient(address, transport, **client_options).connect()
    ack = client.call("nickname", {"nickname": nickname})
    assert ack["ok"], ack
    client.token = ack["token"]
    if room:
        client.joined = client.call("join", {"room": room})
        assert client.joined["ok"], client.joined
    return client


def announced(client, kind, nickname, timeout=10):
    """Wait for an announcement of ``kind`` about ``nickname``; return it."""
    (notice,) = client.wait_event(
        "announce", lambda args: args[0]["kind"] == kind and args[0]["nickname"] == nickname, timeout
    )
    return notice


def wait_until(condition, timeout=10, interval=0.02):
    """Poll ``condition`` (cooperatively) until true or the deadline passes."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met within %.1f s" % timeout)
        gevent.sleep(interval)
