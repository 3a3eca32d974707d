"""What the page does for the person using it: composer limits, failed messages, unread markers,
notices said once and cleared when resolved, renames, signing out, offline and stopped servers,
grouped messages with dates and times.

Tests that inject server behaviour run the server in this process (as test_catch_up.py does):
selenium's blocking calls then go through ``in_thread`` so that the server's greenlets serve
meanwhile. The others drive ``serve.py`` subprocesses.
"""

import datetime

import gevent
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from chatwsgi.errors import ChatError
from tests.browser.pages import (
    announcements,
    message_texts,
    open_chat,
    own_states,
    roster,
    send,
    status_is,
    texts_of,
    wait,
)
from tests.browser.pages import (
    settled_screenshot as screenshot,
)
from tests.support.chatting import chatter
from tests.support.processes import ServeProcess

pytestmark = pytest.mark.browser


@pytest.fixture
def app_settings():
    """The in-process server: a writer may post a dozen messages at once."""
    return {"rate": 100, "burst": 100}


def in_thread(function, *args):
    """Run a blocking call (selenium's) in a thread, so the in-process server serves meanwhile."""
    return gevent.get_hub().threadpool.apply(function, args)


def notices(driver):
    """[code, text] of each notice shown."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#notices li')).map("
        "function (li) { return [li.dataset.code, li.querySelector('.text').textContent]; })"
    )


def typed(driver, text):
    """Put ``text`` in the composer as typing would (the page hears an input event)."""
    driver.execute_script(
        "var box = document.getElementById('message-input'); box.value = arguments[0];"
        "box.dispatchEvent(new Event('input'));",
        text,
    )


def composer(driver):
    return driver.find_element(By.ID, "message-input").get_attribute("value")


def send_button_enabled(driver):
    return driver.find_element(By.ID, "send").is_enabled()


# ---------- the composer ----------


def test_send_is_disabled_over_the_limit_and_the_text_stays(browser, chat_url):
    page = open_chat(browser, chat_url, "wordy", room="limits")
    typed(page, "x" * 2001)
    assert not send_button_enabled(page)
    counter = page.find_element(By.ID, "counter")
    assert "over" in counter.get_attribute("class") and counter.text.startswith("2001 / 2000")
    page.find_element(By.ID, "message-input").send_keys(Keys.ENTER)  # Enter does not send it either
    page.execute_script("document.getElementById('composer').requestSubmit()")
    assert composer(page) == "x" * 2001 and own_states(page) == []
    screenshot(page, "behaviour-over-limit")

    page.find_element(By.ID, "message-input").send_keys(Keys.BACKSPACE)
    wait(page, send_button_enabled)
    page.find_element(By.ID, "send").click()
    wait(page, lambda d: own_states(d) == ["acked"])
    assert composer(page) == "" and message_texts(page) == ["x" * 2000]


def test_whitespace_is_not_sent_and_is_cleared(browser, chat_url):
    page = open_chat(browser, chat_url, "spacey", room="spaces")
    box = page.find_element(By.ID, "message-input")
    box.send_keys("   ")
    assert not send_button_enabled(page)
    box.send_keys(Keys.ENTER)
    wait(page, lambda d: composer(d) == "")
    send(page, " \n\t ", "real text")
    wait(page, lambda d: own_states(d) == ["acked"])
    assert message_texts(page) == ["real text"]


# ---------- failed messages ----------


@pytest.fixture
def refusing(app, monkeypatch):
    """Make the server refuse messages whose text starts with 'refuse'."""
    message = app.service.message

    def refuse(member, request):
        if str(request.get("text", "")).startswith("refuse"):
            raise ChatError("server_error", "The server could not store it.")
        return message(member, request)

    monkeypatch.setattr(app.service, "message", refuse)


def failed_actions(driver):
    """[text, reason, action labels] of each failed message."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#messages li.message.failed')).map(function (li) {"
        "  var labels = Array.from(li.querySelectorAll('.actions button')).map(function (b) {"
        "    return b.textContent; });"
        "  return [li.querySelector('.text').textContent, li.querySelector('.reason').textContent, labels];"
        "});"
    )


def click_action(driver, text, action):
    driver.execute_script(
        "var text = arguments[0], action = arguments[1];"
        "var li = Array.from(document.querySelectorAll('#messages li.message.failed')).filter("
        "function (li) { return li.querySelector('.text').textContent === text; })[0];"
        "li.querySelector('.actions button.' + action).click();",
        text,
        action,
    )


def test_a_failed_message_can_be_retried_edited_or_deleted(app, address, browser, refusing, monkeypatch):
    page = in_thread(open_chat, browser, "http://%s:%d" % address, "failer")
    in_thread(send, page, "refuse me once", "refuse to edit", "refuse to delete")
    in_thread(wait, page, lambda d: own_states(d) == ["failed"] * 3)
    reason = "The server could not store it."
    texts = ["refuse me once", "refuse to edit", "refuse to delete"]
    assert in_thread(failed_actions, page) == [[text, reason, ["Retry", "Edit", "Delete"]] for text in texts]
    assert in_thread(notices, page) == []  # said on the message itself, once
    in_thread(screenshot, page, "behaviour-failed-message")

    monkeypatch.undo()  # the server takes them now
    in_thread(click_action, page, "refuse me once", "retry")
    in_thread(wait, page, lambda d: own_states(d) == ["failed", "failed", "acked"])

    in_thread(click_action, page, "refuse to edit", "edit")
    in_thread(wait, page, lambda d: composer(d) == "refuse to edit")
    in_thread(click_action, page, "refuse to delete", "delete")
    in_thread(wait, page, lambda d: own_states(d) == ["acked"])
    assert in_thread(message_texts, page) == ["refuse me once"]
    assert app.service.chat.backplane.rooms["lobby"].last_seq == 1  # only the retried one was stored


# ---------- new messages while scrolled up ----------

SCROLL_UP = "var m = document.getElementById('messages'); m.scrollTop = 0; return m.scrollTop"
JUMP = "return [document.getElementById('jump').hidden, document.getElementById('jump').textContent]"


def set_hidden(driver, hidden):
    """Pretend the tab is hidden (or shown again), as switching tabs would."""
    driver.execute_script(
        "Object.defineProperty(document, 'hidden', {configurable: true, value: arguments[0]});"
        "document.dispatchEvent(new Event('visibilitychange'));",
        hidden,
    )


def test_new_messages_while_scrolled_up_show_a_marker_a_jump_button_and_a_title_count(app, address, browser):
    page = in_thread(open_chat, browser, "http://%s:%d" % address, "reader")
    writer = chatter(address, "writer")
    try:
        lines = "\n".join("line %d" % n for n in range(6))
        for n in range(12):
            request = {"room": "lobby", "id": "a%d" % n, "text": "%d\n%s" % (n, lines)}
            assert writer.call("message", request)["ok"]
        in_thread(wait, page, lambda d: len(message_texts(d)) == 12)
        assert in_thread(page.execute_script, JUMP)[0] is True  # at the end: nothing to jump to
        in_thread(page.execute_script, SCROLL_UP)
        in_thread(wait, page, lambda d: d.execute_script(JUMP) == [False, "Jump to latest ↓"])

        for n in (12, 13):
            assert writer.call("message", {"room": "lobby", "id": "a%d" % n, "text": "new %d" % n})["ok"]
        in_thread(wait, page, lambda d: d.execute_script(JUMP) == [False, "2 new messages ↓"])
        assert in_thread(lambda: page.title) == "(2) chatwsgi"
        marked = "return document.querySelector('#messages li.unread-marker + li.message .text').textContent"
        assert in_thread(page.execute_script, marked) == "new 12"
        in_thread(screenshot, page, "behaviour-new-messages-marker")

        in_thread(lambda: page.find_element(By.ID, "jump").click())
        in_thread(wait, page, lambda d: d.title == "chatwsgi" and d.execute_script(JUMP)[0] is True)

        in_thread(set_hidden, page, True)  # another tab in front: at the end, but unseen
        assert writer.call("message", {"room": "lobby", "id": "a14", "text": "while away"})["ok"]
        in_thread(wait, page, lambda d: d.title == "(1) chatwsgi")
        in_thread(set_hidden, page, False)
        in_thread(wait, page, lambda d: d.title == "chatwsgi")
    finally:
        writer.close()


# ---------- notices: once per refusal, gone when resolved ----------


def test_a_taken_nickname_is_said_inline_only_and_nothing_stays_once_in(browser, chat_url):
    open_chat(browser, chat_url, "Taken-n")
    page = browser()
    page.get(chat_url + "/")
    wait(page, status_is("connected"))
    field = page.find_element(By.ID, "nick-input")
    field.send_keys("taken-n", Keys.ENTER)
    error = page.find_element(By.ID, "nick-error")
    wait(page, lambda d: error.get_attribute("data-code") == "nickname_taken")
    assert notices(page) == []  # the form says it: no banner as well
    field.clear()
    field.send_keys("free-n", Keys.ENTER)
    wait(page, lambda d: d.execute_script("return window.chat.state.room") == "lobby")
    assert notices(page) == [] and error.text == ""


def test_one_notice_per_refusal_and_server_errors_without_a_request_still_shown(
    app, address, browser, monkeypatch
):
    host = "http://%s:%d" % address
    other = chatter(address, "other", room="closed")
    try:
        join = app.service.join

        def closed(member, request):
            if request.get("room") == "closed":
                raise ChatError("server_error", "That room is closed today.")
            return join(member, request)

        monkeypatch.setattr(app.service, "join", closed)
        page = in_thread(open_chat, browser, host, "knocker")
        in_thread(lambda: page.find_element(By.ID, "room-input").click())  # a focus refreshes the list
        pick = "#rooms li[data-room=closed] .room-button"
        in_thread(wait, page, lambda d: d.find_elements(By.CSS_SELECTOR, pick))
        in_thread(lambda: page.find_element(By.CSS_SELECTOR, pick).click())
        in_thread(wait, page, lambda d: notices(d) == [["server_error", "That room is closed today."]])

        # An error the server sends on its own (no request of the page's is waiting): shown.
        in_thread(page.execute_script, "window.chat.socket.emit('join', {room: 'Not a room!'})")
        in_thread(wait, page, lambda d: len(notices(d)) == 2)
        assert in_thread(notices, page)[1][0] == "bad_room"
        in_thread(screenshot, page, "behaviour-one-notice-per-refusal")
    finally:
        other.close()


# ---------- rename and sign out ----------


def test_a_rename_is_seen_by_others(browser, chat_url):
    alice = open_chat(browser, chat_url, "alice-rn", room="renames")
    bob = open_chat(browser, chat_url, "bob-rn", room="renames")
    wait(alice, lambda d: sorted(roster(d)) == ["alice-rn", "bob-rn"])
    alice.find_element(By.ID, "rename").click()
    field = alice.find_element(By.ID, "rename-input")
    wait(alice, lambda d: field.is_displayed())
    assert field.get_attribute("value") == "alice-rn"
    field.clear()
    field.send_keys("bob-rn", Keys.ENTER)  # taken: said in the dialog
    error = alice.find_element(By.ID, "rename-error")
    wait(alice, lambda d: error.text)
    assert notices(alice) == []
    screenshot(alice, "behaviour-rename-taken")
    field.clear()
    field.send_keys("alice-renamed", Keys.ENTER)
    wait(alice, lambda d: not field.is_displayed())
    wait(bob, lambda d: "alice-rn is now alice-renamed" in announcements(d))
    wait(bob, lambda d: sorted(roster(d)) == ["alice-renamed", "bob-rn"])
    assert alice.find_element(By.ID, "me").text == "alice-renamed"
    assert alice.execute_script("return sessionStorage.getItem('chatwsgi.nickname')") == "alice-renamed"
    send(alice, "new name, same me")
    wait(bob, lambda d: message_texts(d) == ["new name, same me"])


def test_signing_out_frees_the_nickname_and_goes_back_to_the_form(browser, chat_url):
    alice = open_chat(browser, chat_url, "alice-so", room="sign-outs")
    bob = open_chat(browser, chat_url, "bob-so", room="sign-outs")
    wait(bob, lambda d: sorted(roster(d)) == ["alice-so", "bob-so"])
    alice.find_element(By.ID, "sign-out").click()
    wait(alice, lambda d: d.find_element(By.ID, "nick-form").is_displayed())
    wait(alice, status_is("connected"))
    assert alice.find_element(By.ID, "nick-input").get_attribute("value") == ""
    assert alice.execute_script("return [sessionStorage.length, location.search]") == [
        0,
        "?transport=websocket",
    ]
    wait(bob, lambda d: roster(d) == ["bob-so"], timeout=5)  # ended at once, not after a timeout
    alice.find_element(By.ID, "nick-input").send_keys("alice-so", Keys.ENTER)  # the nickname is free
    wait(alice, lambda d: d.execute_script("return window.chat.state.room") == "lobby")


# ---------- offline, and a server that stops ----------


def go_offline(driver, offline):
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd(
        "Network.emulateNetworkConditions",
        {"offline": offline, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
    )


ROSTER_STATE = """
var state = document.getElementById('roster-state');
return [document.getElementById('roster').classList.contains('offline'), state.hidden, state.textContent];
"""


def test_the_member_list_says_it_is_out_of_date_while_offline(browser, chat_url):
    alice = open_chat(browser, chat_url, "alice-off", room="offline-roster")
    bob = open_chat(browser, chat_url, "bob-off", room="offline-roster")
    wait(alice, lambda d: sorted(roster(d)) == ["alice-off", "bob-off"])
    assert alice.execute_script(ROSTER_STATE)[:2] == [False, True]

    go_offline(alice, True)
    alice.execute_script("window.chat.socket.socket.transport.close()")
    wait(alice, status_is("offline"))
    assert alice.execute_script(ROSTER_STATE) == [True, False, "Offline: last known members"]
    assert sorted(roster(alice)) == ["alice-off", "bob-off"]  # still there, greyed: what we last knew
    screenshot(alice, "behaviour-offline-roster")

    go_offline(alice, False)
    wait(alice, status_is("connected"), timeout=20)
    wait(alice, lambda d: d.execute_script(ROSTER_STATE)[:2] == [False, True], timeout=20)
    wait(bob, lambda d: sorted(roster(d)) == ["alice-off", "bob-off"])


def test_a_stopped_server_is_said_so_with_attempts_then_reconnects_or_gives_up(browser, tmp_path):
    data = str(tmp_path / "chat.sqlite3")  # durable history: the restarted server has every message
    server = ServeProcess("--data", data)
    port = server.url.rsplit(":", 1)[1]
    try:
        page = open_chat(browser, server.url, "survivor", room="stops")
        send(page, "kept on disk")
        wait(page, lambda d: own_states(d) == ["acked"])

        server.stop()
        wait(page, lambda d: "(attempt 2)" in texts_of(d, "#notices li[data-code=shutdown] .text")[0])
        text = texts_of(page, "#notices li[data-code=shutdown] .text")[0]
        assert text.startswith("The server stopped; trying to reconnect (attempt") and "restart" not in text
        assert "Reconnecting (attempt" in page.find_element(By.ID, "status").text
        screenshot(page, "behaviour-server-stopped")

        server = ServeProcess("--data", data, "--port", port)
        wait(page, status_is("connected"), timeout=20)
        wait(page, lambda d: roster(d) == ["survivor"], timeout=20)
        assert notices(page) == []
        assert message_texts(page) == ["kept on disk"]
        assert texts_of(page, "#messages li.gap") == []  # nothing is missing: no "no longer available"

        # Give up quickly this time: two attempts, half a second apart.
        page.execute_script(
            "var o = window.chat.socket.socket.options;"
            "o['max reconnection attempts'] = 2; o['reconnection limit'] = 500; o['connect timeout'] = 1000;"
        )
        server.stop()
        wait(page, lambda d: [c for c, _ in notices(d)] == ["reconnect_failed"], timeout=20)
        assert notices(page) == [["reconnect_failed", "Could not reconnect. Reload to try again."]]
        assert page.find_element(By.ID, "status").text == "Could not reconnect"
        screenshot(page, "behaviour-could-not-reconnect")

        server = ServeProcess("--data", data, "--port", port)
        page.find_element(
            By.CSS_SELECTOR, "#notices li[data-code=reconnect_failed] button.notice-action"
        ).click()
        wait(page, lambda d: d.execute_script("return window.chat.state.room") == "stops", timeout=20)
        assert message_texts(page) == ["kept on disk"]
    finally:
        server.stop()


# ---------- history that overlaps what is shown ----------


def test_no_gap_line_when_the_new_history_holds_what_is_shown(app, address, browser):
    page = in_thread(open_chat, browser, "http://%s:%d" % address, "reader")
    writer = chatter(address, "writer")
    try:
        for n in (1, 2, 3):
            assert writer.call("message", {"room": "lobby", "id": "m%d" % n, "text": "message %d" % n})["ok"]
        in_thread(wait, page, lambda d: len(message_texts(d)) == 3)
        # A new epoch over the same messages (as a store restored under a new name): the rejoin's
        # answer is incomplete, but it overlaps what is shown, so nothing can be missing.
        app.service.chat.backplane.rooms["lobby"].epoch = "restored"
        in_thread(page.execute_script, "window.chat.socket.socket.transport.close()")
        in_thread(
            wait, page, lambda d: d.execute_script("return window.chat.state.epoch.lobby") == "restored"
        )
        assert writer.call("message", {"room": "lobby", "id": "m4", "text": "message 4"})["ok"]
        in_thread(wait, page, lambda d: len(message_texts(d)) == 4)
        assert in_thread(message_texts, page) == ["message %d" % n for n in (1, 2, 3, 4)]
        assert in_thread(texts_of, page, "#messages li.gap") == []
    finally:
        writer.close()


# ---------- grouping, dates, times ----------


def at(days_ago, hour, minute, second=0):
    """A timestamp, in local time, ``days_ago`` days before today."""
    day = datetime.date.today() - datetime.timedelta(days=days_ago)
    return datetime.datetime.combine(day, datetime.time(hour, minute, second)).timestamp()


ITEMS = """
return Array.from(document.querySelectorAll('#messages > li')).map(function (li) {
  if (li.classList.contains('day')) return 'day ' + li.textContent;
  if (li.classList.contains('announce')) return 'announce ' + li.querySelector('.text').textContent;
  var meta = li.querySelector('.meta');
  return [li.querySelector('.text').textContent, li.classList.contains('grouped'),
          getComputedStyle(meta).display !== 'none', li.title];
});
"""


def test_messages_are_grouped_by_author_with_dates_and_full_times_on_hover(app, address, browser):
    lobby = app.service.chat.backplane.rooms["lobby"]
    for author, text, ts in [
        ("ann", "yesterday one", at(1, 12, 0)),
        ("ann", "yesterday two", at(1, 12, 1)),  # a minute later: same group
        ("ann", "yesterday three", at(1, 12, 10)),  # nine minutes later: a new group
        ("bob", "today one", at(0, 12, 0)),
        ("bob", "today two", at(0, 12, 0, 30)),
    ]:
        lobby.post(author, text.replace(" ", "-"), text, ts)
    page = in_thread(open_chat, browser, "http://%s:%d" % address, "reader")
    other = chatter(address, "joiner")
    try:
        in_thread(wait, page, lambda d: "joiner joined" in announcements(d))
        items = in_thread(page.execute_script, ITEMS)
    finally:
        other.close()
    yesterday = datetime.date.today() - datetime.timedelta(days=1)
    assert items[0].startswith("day ") and str(yesterday.day) in items[0]
    assert [item[:3] for item in items[1:4]] == [
        ["yesterday one", False, True],
        ["yesterday two", True, False],
        ["yesterday three", False, True],
    ]
    assert items[4].startswith("day ") and items[4] != items[0]
    assert [item[:3] for item in items[5:7]] == [["today one", False, True], ["today two", True, False]]
    assert items[7] == "announce joiner joined"
    titles = [item[3] for item in items[1:4]]
    assert all(
        str(yesterday.year) in title and "12:0" in title for title in titles[:2]
    )  # the full date and time
    times = in_thread(texts_of, page, "#messages li.announce time")
    assert len(times) == 1 and times[0][2] == ":"  # join lines have their time
    in_thread(screenshot, page, "behaviour-grouped-with-dates")


def test_joined_rooms_are_listed_whatever_the_server_lists(app, address, browser, monkeypatch):
    def other_only(member, request=None):  # as a list of rooms with members could lag behind
        return {"ok": True, "rooms": [{"name": "other", "count": 7}]}

    monkeypatch.setattr(app.service, "rooms", other_only)
    page = in_thread(open_chat, browser, "http://%s:%d" % address, "lister", "websocket", "quiet-room")
    in_thread(lambda: page.find_element(By.ID, "room-input").click())  # a focus asks for the list again
    listed = "return Array.from(document.querySelectorAll('#rooms li'), (li) => li.dataset.room)"
    in_thread(wait, page, lambda d: "other" in d.execute_script(listed))
    assert in_thread(page.execute_script, listed) == ["lobby", "quiet-room", "other"]  # joined ones first
    assert in_thread(texts_of, page, "#rooms li .count") == ["1", "1", "7"]
