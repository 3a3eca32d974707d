"""Idle Chromium pages: what a page's connection looked like, to tell a kept session from a new one."""

WATCH_SCRIPT = """
var s = window.chat.socket;
window.idleWatch = {session: s.socket.sessionid, transport: s.socket.transport.name, disconnects: 0};
s.on('disconnect', function () { window.idleWatch.disconnects += 1; });
return window.idleWatch;
"""


def watch_connection(driver):
    """Start counting the page's disconnects; its session id and transport now."""
    return driver.execute_script(WATCH_SCRIPT)


def connection_now(driver):
    """The page's session id, transport and disconnects since watch_connection."""
    return driver.execute_script(
        "var w = window.idleWatch, s = window.chat.socket.socket;"
        "return {session: s.sessionid, transport: s.transport.name, disconnects: w.disconnects};"
    )
