"""Idle third-party Socket.IO 0.9 clients stay connected: one session each through a silence
longer than the heartbeat interval and the close timeout (shortened here), then still receive.

Every client x transport is idle at once, so the silence is paid once. ``stay_idle`` is the
check; run it with the real default settings and browser pages too.
"""

import gevent
import pytest

from tests.support.chatting import chatter
from tests.support.remote import KINDS, TRANSPORTS, stay_idle

pytestmark = [pytest.mark.live, pytest.mark.slow]

# A heartbeat interval longer than the close timeout, as 25 s against 20 s once was: the server
# must send heartbeats sooner than asked, or idle 0.9 clients give up on it.
SHORT = {
    "heartbeat_interval": 5,
    "heartbeat_timeout": 4,
    "close_timeout": 4,
    "poll_duration": 2,
    "tend_interval": 0.2,
}
SILENCE = 6  # seconds: longer than the heartbeat interval and the close timeout above


@pytest.fixture
def server_settings():
    return SHORT


def idle_chatters(remotes, specs):
    """Chatters named after their (kind, transport), connected concurrently."""
    jobs = [
        gevent.spawn(remotes.chatter, kind, "%s-%s" % (kind, transport), transport)
        for kind, transport in specs
    ]
    gevent.joinall(jobs, raise_error=True)
    return [job.value for job in jobs]


def test_every_client_and_transport_stays_on_one_session_through_silence(address, server, remotes):
    assert max(SHORT["heartbeat_interval"], SHORT["close_timeout"], server.config["close_timeout"]) < SILENCE
    witness = chatter(address, "witness")
    try:
        clients = idle_chatters(remotes, [(kind, transport) for kind in KINDS for transport in TRANSPORTS])
        # Every client has a live poll or websocket when the message comes: it arrives at once.
        stay_idle(clients, witness, SILENCE, within=1.5)  # a poll hold is 2 s
    finally:
        witness.close()


# socketIO-client gives up on a long poll after 3 s (its TIMEOUT_IN_SECONDS) and polls again; a
# server holding polls longer (heartbeats included) is left with an abandoned poll that must not
# take the next packet.
ABANDONING = dict(SHORT, heartbeat_interval=10, heartbeat_timeout=30, close_timeout=30, poll_duration=8)


@pytest.mark.parametrize("server_settings", [ABANDONING])
def test_pypi_polling_client_loses_nothing_to_the_polls_it_abandons(address, server, remotes):
    assert min(server.config["poll_duration"], server.config["heartbeat_interval"]) > 3
    witness = chatter(address, "witness")
    try:
        (client,) = idle_chatters(remotes, [("pypi", "xhr-polling")])
        # At 4 s the client has a live poll (since 3 s) and has abandoned one the server may
        # still hold: the message goes out on the live poll at once, not after the next timeout.
        stay_idle([client], witness, 4, within=3)  # a poll hold is 8 s
    finally:
        witness.close()
