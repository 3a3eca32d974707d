"""With the real default timings, every client we know stays on one session through a silence
longer than the heartbeat interval (25 s) and both timeouts (60 s), then still receives.

Chromium pages on every transport, the npm and PyPI 0.9 clients on websocket and xhr-polling,
all idle at once against ``python serve.py`` as a user starts it: the 65 s are paid once.
"""

import gevent
import pytest

from tests.browser.idle import IdlePage
from tests.browser.pages import TRANSPORTS, open_chat
from tests.support.chatting import chatter
from tests.support.processes import ServeProcess
from tests.support.remote import KINDS, RemoteClients, stay_idle

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SILENCE = 65  # > heartbeat interval 25 s, > heartbeat and close timeouts 60 s (the defaults)


def test_every_client_keeps_its_session_through_a_minute_of_silence(browser):
    server = ServeProcess()
    host, port = server.url.rsplit("/", 1)[1].split(":")
    address = (host, int(port))
    remotes = RemoteClients(address)
    witness = None
    try:
        handshake = chatter(address, "probe", room=None)
        assert handshake.handshake()[1:3] == (60, 60)  # the real defaults, advertised
        handshake.close()
        pages = [
            IdlePage(open_chat(browser, server.url, "page-" + t, t, room="lobby"), "page-" + t)
            for t in TRANSPORTS
        ]
        jobs = [
            gevent.spawn(remotes.chatter, kind, "%s-%s" % (kind, transport), transport)
            for kind in KINDS
            for transport in ("websocket", "xhr-polling")
        ]
        gevent.joinall(jobs, raise_error=True)
        witness = chatter(address, "witness")
        arrivals = stay_idle(pages + [job.value for job in jobs], witness, SILENCE, within=5)
        print("arrival after %d s of silence, s: %s" % (SILENCE, arrivals))
    finally:
        if witness is not None:
            witness.close()
        remotes.close()
        server.stop()
