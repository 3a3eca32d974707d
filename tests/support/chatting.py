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


def storm_until_dropped(sender, watcher, nickname, text="w" * 2000, limit=20000):
    """Send messages in bursts of 50 until ``nickname`` leaves the lobby's roster (dropped as a
    slow consumer), each burst received by ``watcher``; bounded by ``limit``. How many were sent."""
    sent = 0
    while nickname in sender.call("roster", {"room": "lobby"})["members"] and sent < limit:
        for _ in range(50):
            sender.emit("message", {"room": "lobby", "id": "m%d" % sent, "text": text})
            sent += 1
        wait_until(lambda n=sent: len(watcher.events("message")) >= n - 50, timeout=10)
    return sent
