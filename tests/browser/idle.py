"""Idle Chromium pages: what a page's connection looked like, to tell a kept session from a new one."""

import time

from tests.support.chatting import wait_until

WATCH_SCRIPT = """
var s = window.chat.socket;
window.idleWatch = {session: s.socket.sessionid, transport: s.socket.transport.name, disconnects: 0,
                    messages: []};
s.on('disconnect', function () { window.idleWatch.disconnects += 1; });
s.on('message', function (m) { window.idleWatch.messages.push(m); });
return window.idleWatch;
"""


def watch_connection(driver):
    """Start counting the page's disconnects and keeping its messages; its session id and
    transport now."""
    return driver.execute_script(WATCH_SCRIPT)


def connection_now(driver):
    """The page's session id, transport and disconnects since watch_connection."""
    return driver.execute_script(
        "var w = window.idleWatch, s = window.chat.socket.socket;"
        "return {session: s.sessionid, transport: s.transport.name, disconnects: w.disconnects};"
    )


class IdlePage:
    """A watched page as tests.support.remote.stay_idle sees a client: a nickname, its current
    session, whether it saw a disconnect, and the messages it received."""

    def __init__(self, driver, nickname):
        self.driver, self.nickname = driver, nickname
        watch_connection(driver)

    @property
    def session_id(self):
        return connection_now(self.driver)["session"]

    @property
    def disconnected(self):
        return connection_now(self.driver)["disconnects"] > 0

    def wait_event(self, name, predicate=lambda args: True, timeout=10):
        """The args of the first message event matching ``predicate`` (only messages are kept)."""
        assert name == "message"
        found = []

        def seen():
            messages = self.driver.execute_script("return window.idleWatch.messages")
            found[:] = [[m] for m in messages if predicate([m])]
            return found

        wait_until(seen, timeout=max(timeout, 0.1))
        return found[0]

    def __repr__(self):
        return "<page %s at %.0f>" % (self.nickname, time.monotonic())
