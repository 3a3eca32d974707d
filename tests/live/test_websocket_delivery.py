"""Websocket delivery: one greenlet per session, and a client that stops reading is dropped
while the others keep getting everything."""

import logging

import gevent
import pytest

from tests.support.chatting import TRANSPORTS, announced, chatter, wait_until

pytestmark = pytest.mark.live

BACKLOG = 64 * 1024


@pytest.fixture
def app_settings():
    return {"rate": 1e6, "burst": 10**6}


@pytest.fixture
def server_settings():
    return {"max_backlog_bytes": BACKLOG}


def test_a_client_that_stops_reading_is_dropped_and_stalls_no_one(server, address, caplog):
    stalled = chatter(address, "stalled")
    gevent.killall(stalled._greenlets)  # it never reads again; its TCP window fills up
    watcher, sender = chatter(address, "watcher"), chatter(address, "sender")
    text = "w" * 2000
    sent = 0
    with caplog.at_level(logging.WARNING, logger="chatwsgi.compat.socket"):
        # Kernel buffers on loopback hold a few MB before the server's backlog starts; bounded.
        while "stalled" in sender.call("roster", {"room": "lobby"})["members"] and sent < 20000:
            for _ in range(50):
                sender.emit("message", {"room": "lobby", "id": "m%d" % sent, "text": text})
                sent += 1
            wait_until(lambda n=sent: len(watcher.events("message")) >= n - 50, timeout=10)
        assert announced(watcher, "leave", "stalled")
        wait_until(lambda: len(watcher.events("message")) == sent, timeout=10)
    assert sent < 20000
    print("stalled client dropped after %d messages of %d bytes" % (sent, len(text)))
    assert any("backlog passed the limit" in r.getMessage() for r in caplog.records)
    assert server.connection_count()["websocket"] == 2
    for client in (stalled, watcher, sender):
        client.close()


def test_a_websocket_session_runs_in_its_connection_s_greenlet_alone(server, address):
    clients = [chatter(address, "user%d" % n, TRANSPORTS[n % 3]) for n in range(9)]
    assert clients[0].call("message", {"room": "lobby", "id": "hello", "text": "hi"})["ok"]
    wait_until(lambda: all(c.events("message") for c in clients))
    sessions = list(server.sockets.values())
    websockets = [s for s in sessions if s.is_websocket]
    assert len(websockets) == 3 and len(sessions) == 9
    # No receiver loop, sender loop or app greenlet: the reader dispatches, the writer writes.
    assert all(s.jobs == [] and s.wsgi_app_greenlet is None and s.writer.flusher is None for s in websockets)
    # Polling sessions keep their receiver loop and app greenlet.
    assert all(len(s.jobs) == 1 and s.wsgi_app_greenlet is not None for s in sessions if not s.is_websocket)
    for client in clients:
        client.close()
