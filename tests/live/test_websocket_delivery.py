"""Websocket delivery: one greenlet per session, and a client that stops reading is dropped
while the others keep getting everything."""

import gc
import logging

import gevent
import pytest

from chatwsgi.delivery import EventReader
from chatwsgi.limits import TokenBucket
from tests.support.chatting import TRANSPORTS, announced, chatter, storm_until_dropped, wait_until

pytestmark = pytest.mark.live

BACKLOG = 64 * 1024


@pytest.fixture
def app_settings():
    return {"rate": 1e6, "burst": 10**6, "rates": {"query": (1e6, 10**6)}}


@pytest.fixture
def server_settings():
    return {"max_backlog_bytes": BACKLOG, "max_packet_rate": 1e6, "max_packet_burst": 10**6}


def test_a_client_that_stops_reading_is_dropped_and_stalls_no_one(server, address, caplog):
    stalled = chatter(address, "stalled")
    gevent.killall(stalled._greenlets)  # it never reads again; its TCP window fills up
    watcher, sender = chatter(address, "watcher"), chatter(address, "sender")
    with caplog.at_level(logging.WARNING, logger="chatwsgi.compat.socket"):
        # Kernel buffers on loopback hold a few MB before the server's backlog starts; bounded.
        sent = storm_until_dropped(sender, watcher, "stalled")
        assert announced(watcher, "leave", "stalled")
        wait_until(lambda: len(watcher.events("message")) == sent, timeout=10)
    assert sent < 20000
    print("stalled client dropped after %d messages of 2000 bytes" % sent)
    assert any("backlog passed the limit" in r.getMessage() for r in caplog.records)
    assert server.connection_count()["websocket"] == 2
    for client in (stalled, watcher, sender):
        client.close()


def live_greenlets():
    return sum(1 for o in gc.get_objects() if issubclass(type(o), gevent.Greenlet) and not o.dead)


def test_an_idle_websocket_session_holds_no_greenlet(server, address):
    before = live_greenlets()
    clients = [chatter(address, "user%d" % n) for n in range(20)]
    polling = [chatter(address, "poller%d" % n, TRANSPORTS[1 + n % 2]) for n in range(2)]
    assert clients[0].call("message", {"room": "lobby", "id": "hello", "text": "hi"})["ok"]
    wait_until(lambda: all(c.events("message") for c in clients + polling))
    websockets = [s for s in server.sockets.values() if s.is_websocket]
    assert len(websockets) == 20
    # No handler, receiver, sender or app greenlet: an io watcher wakes a reader when data comes.
    assert all(s.jobs == [] and s.wsgi_app_greenlet is None and s.writer.flusher is None for s in websockets)
    assert all(s.reader.watcher.active for s in websockets)
    # Each client here has its own reader greenlet; the server adds none per websocket
    # session (polling sessions keep a receiver loop, an app greenlet and their requests).
    grown = live_greenlets() - before
    assert grown <= len(clients) + 4 * len(polling) + 2, grown
    for client in clients + polling:
        client.close()


def test_a_lone_heartbeat_is_taken_without_a_greenlet(server, address, monkeypatch):
    drained = []
    drain = EventReader._drain
    monkeypatch.setattr(EventReader, "_drain", lambda reader: drained.append(1) or drain(reader))
    client = chatter(address, "beating")
    (session,) = server.sockets.values()
    session.packet_limit = TokenBucket(rate=1e-9, burst=100)  # no refill: a token spent shows
    before, seen = len(drained), session.last_seen
    client.send("2::")
    wait_until(lambda: session.last_seen > seen)
    assert len(drained) == before and session.packet_limit.tokens == 99
    assert session.reader.watcher.active  # watching for the next packet
    assert client.call("message", {"room": "lobby", "id": "after", "text": "still read"})["ok"]
    assert len(drained) > before  # anything else is read by the reader's greenlet
    client.close()
