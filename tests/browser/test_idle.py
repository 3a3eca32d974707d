"""Chromium pages left open in a quiet room keep their one session (shortened timings).

The same check with the real default timings, alongside the third-party clients, is in
tests/thirdparty/test_idle_real_defaults.py.
"""

import time

import pytest

from tests.browser.idle import connection_now, watch_connection
from tests.browser.pages import TRANSPORTS, message_texts, open_chat, wait
from tests.support.chatting import chatter, wait_until
from tests.support.processes import ServeProcess

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# A 4 s client timeout: heartbeats come every second (liveness.py), polls are held 2 s.
TIMEOUT = 4
SILENCE = 6  # longer than the heartbeat interval and both timeouts


def leaves(witness):
    """Nicknames the witness saw leave."""
    return [args[0]["nickname"] for args in witness.events("announce") if args[0]["kind"] == "leave"]


def test_idle_pages_keep_their_session(browser):
    server = ServeProcess("--heartbeat-timeout", str(TIMEOUT), "--close-timeout", str(TIMEOUT))
    try:
        pages = {t: open_chat(browser, server.url, "idle-" + t[:4], t, room="quiet") for t in TRANSPORTS}
        before = {t: watch_connection(page) for t, page in pages.items()}
        assert {t: c["transport"] for t, c in before.items()} == {t: t for t in TRANSPORTS}
        host, port = server.url.rsplit("/", 1)[1].split(":")
        witness = chatter((host, int(port)), "witness", room="quiet")
        quiet_until = time.monotonic() + SILENCE
        # Silence, ended early by any page seen leaving (the witness's greenlets run meanwhile).
        wait_until(lambda: leaves(witness) or time.monotonic() >= quiet_until, timeout=SILENCE + 2)
        assert not leaves(witness)
        assert witness.call("message", {"room": "quiet", "id": "after-silence", "text": "still there?"})["ok"]
        for transport, page in pages.items():
            wait(page, lambda d: message_texts(d)[-1:] == ["still there?"])
            now = connection_now(page)
            kept = {key: before[transport][key] for key in ("session", "transport")}
            assert now == dict(kept, disconnects=0), (transport, now)
        assert not leaves(witness)
        witness.close()
    finally:
        server.stop()
