"""Liveness on a real server: what the handshake advertises and when heartbeats really come."""

import pytest

from chatwsgi import make_server
from chatwsgi.liveness import MARGIN
from tests.support.chatting import chatter, wait_until
from tests.support.sioclient import SocketIOClient


def test_the_default_server_advertises_the_reference_timeouts(app):
    server = make_server(app, port=0)
    server.start()
    try:
        client = SocketIOClient(server.address[:2])
        _, heartbeat_timeout, close_timeout, transports = client.handshake()
        assert (heartbeat_timeout, close_timeout) == (60, 60)
        assert transports == ["websocket", "xhr-polling", "jsonp-polling"]
        assert server.config["heartbeat_interval"] == 25
        assert server.config["poll_duration"] == 20
    finally:
        server.stop(timeout=1)


@pytest.fixture
def server_settings():
    # A 4 s client timeout, a tender visiting each session every 1 s: heartbeats must come
    # at most 2 s apart although 25 s is asked for.
    return {"heartbeat_interval": 25, "heartbeat_timeout": 4, "close_timeout": 4, "tend_interval": 0.2}


@pytest.mark.parametrize("transport", ["websocket", "xhr-polling"])
def test_heartbeats_come_well_inside_the_advertised_timeout(address, transport):
    client = chatter(address, "alice", transport, room=None)
    start = len(client.packets)

    def heartbeat_times():
        packets = zip(client.packets[start:], client.arrived[start:], strict=False)
        return [at for packet, at in packets if packet["type"] == "heartbeat"]

    wait_until(lambda: len(heartbeat_times()) >= 5, timeout=15)
    times = heartbeat_times()
    gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    assert max(gaps) <= 4 * MARGIN + 1, gaps  # 2 s promised, 4 s the client waits, 25 s asked
    assert not client.closed
    client.close()
