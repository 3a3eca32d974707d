"""Reconnect and catch-up in Chromium: a restarted server, and a dropped connection."""

import pytest

from tests.browser.conftest import screenshot
from tests.browser.pages import (
    announcements,
    message_texts,
    open_chat,
    own_states,
    roster,
    send,
    status_is,
    wait,
)
from tests.support.processes import ServeProcess

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_pages_survive_a_server_restart(browser):
    server = ServeProcess()
    port = server.url.rsplit(":", 1)[1]
    try:
        alice = open_chat(browser, server.url, "alice", "websocket", room="restart")
        bob = open_chat(browser, server.url, "bob", "xhr-polling", room="restart")
        send(alice, "before the restart")
        wait(bob, lambda d: message_texts(d) == ["before the restart"])

        assert server.stop() == 0
        for page in (alice, bob):
            wait(page, status_is("reconnecting"))
        send(alice, "typed while the server was down")
        assert own_states(alice) == ["acked", "pending"]
        screenshot(alice, "reconnecting")

        server = ServeProcess("--port", port)
        for page in (alice, bob):
            wait(page, status_is("connected"), timeout=20)
            wait(page, lambda d: sorted(roster(d)) == ["alice", "bob"], timeout=20)
        wait(alice, lambda d: own_states(d) == ["acked", "acked"], timeout=20)
        wait(bob, lambda d: message_texts(d)[-1:] == ["typed while the server was down"], timeout=20)
        # Everyone came back: no "left" or "joined" lines for that, and never one's own.
        for page in (alice, bob):
            wait(page, lambda d: d.execute_script("return window.chat.heldLeaves()") == 0)
        assert (announcements(alice), announcements(bob)) == (["bob joined"], [])
        assert bob.execute_script("return location.search") == "?transport=xhr-polling&room=restart"
    finally:
        server.stop()


def go_offline(driver, offline):
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd(
        "Network.emulateNetworkConditions",
        {"offline": offline, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
    )


@pytest.mark.parametrize("transport", ["websocket", "xhr-polling", "jsonp-polling"])
def test_a_dropped_page_catches_up(browser, chat_url, transport):
    room = "drop-" + transport
    alice = open_chat(browser, chat_url, "alice-" + transport, "websocket", room=room)
    bob = open_chat(browser, chat_url, "bob-" + transport, transport, room=room)
    send(alice, "seen by both")
    wait(bob, lambda d: message_texts(d) == ["seen by both"])

    go_offline(bob, True)
    # Drop the live connection as a network failure would; reconnecting fails while offline.
    bob.execute_script("window.chat.socket.socket.transport.close()")
    wait(bob, status_is("offline"))  # the browser says it is offline: the page says so too
    away = ["missed %d 🎉" % n for n in range(3)]
    send(alice, *away)
    wait(alice, lambda d: own_states(d) == ["acked"] * 4)

    go_offline(bob, False)
    wait(bob, status_is("connected"), timeout=20)
    wait(bob, lambda d: len(message_texts(d)) >= 4, timeout=20)
    assert message_texts(bob) == ["seen by both"] + away  # each exactly once, in order
    assert bob.execute_script("return document.querySelectorAll('#messages li.gap').length") == 0


@pytest.mark.parametrize("transport", ["websocket", "xhr-polling"])
def test_a_duplicated_tab_takes_the_nickname_and_the_old_one_stays_out(browser, chat_url, transport):
    nickname = "twin-" + transport
    first = open_chat(browser, chat_url, nickname, transport, room="twins")
    saved = first.execute_script(
        "return [sessionStorage.getItem('chatwsgi.nickname'), sessionStorage.getItem('chatwsgi.token')]"
    )
    # A duplicated tab: the same sessionStorage, so the same nickname and reclaim token.
    second = browser()
    second.get(chat_url + "/?transport=%s&room=twins" % transport)
    second.execute_script(
        "sessionStorage.setItem('chatwsgi.nickname', arguments[0]);"
        "sessionStorage.setItem('chatwsgi.token', arguments[1]);",
        *saved,
    )
    second.get(chat_url + "/?transport=%s&room=twins&nick=%s" % (transport, nickname))
    wait(second, status_is("connected"))
    wait(second, lambda d: d.execute_script("return window.chat.state.nickname") == nickname)
    # The server told the first tab its session was ended on purpose: it does not reconnect
    # (and reclaim the nickname back, and so on for ever).
    wait(first, status_is("ended"))
    session = second.execute_script("return window.chat.socket.socket.sessionid")
    send(second, "the twin speaks")
    wait(second, lambda d: own_states(d) == ["acked"])
    assert second.execute_script("return window.chat.socket.socket.sessionid") == session
    assert first.execute_script("return window.chat.socket.socket.connected") is False
    assert roster(second) == [nickname]
