"""The page loads earlier messages when its list is scrolled to the top (or its button pressed):
a page of 50 at a time, inserted above the oldest shown, the view kept where it was.

The server runs in this process, so a test can store messages without delivering them and
watch the history requests the page makes. This process is not monkey-patched: selenium's
blocking calls run in gevent's thread pool while the server's greenlets go on serving.
"""

import time

import gevent
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from chatwsgi.errors import ChatError
from tests.browser.conftest import screenshot
from tests.browser.pages import open_chat, texts_of, wait

pytestmark = pytest.mark.browser

TIMELINE = """
var items = document.querySelectorAll('#messages li.message, #messages li.gap, #messages li.start');
return Array.from(items).map(function (li) {
  return li.classList.contains('message') ? [Number(li.dataset.seq), li.dataset.id] : li.className;
});
"""
TO_TOP = """
var list = document.getElementById('messages');
list.scrollTop = 0;
var first = list.querySelector('li.message');
return [Number(first.dataset.seq), first.getBoundingClientRect().top];
"""
TOP_OF = """
var li = document.querySelector('#messages li.message[data-seq="' + arguments[0] + '"]');
return [li.getBoundingClientRect().top, document.getElementById('messages').scrollTop];
"""
# Keep the page's history answers until the test hands them over (an answer that comes late).
HOLD_ANSWERS = """
var socket = window.chat.socket, emit = socket.emit;
window.heldAnswers = [];
socket.emit = function (name, payload, ack) {
  if (name !== 'history') return emit.apply(this, arguments);
  return emit.call(this, name, payload, function (res) {
    window.heldAnswers.push(function () { ack(res); });
  });
};
"""
FIRST_ON_SCREEN = """
var list = document.getElementById('messages'), top = list.getBoundingClientRect().top;
return Number(Array.from(list.querySelectorAll('li.message')).filter(function (li) {
  return li.getBoundingClientRect().bottom > top;
})[0].dataset.seq);
"""
HAND_OVER = """
delete window.chat.socket.emit;
window.heldAnswers.forEach(function (answer) { answer(); });
return window.heldAnswers.length;
"""


def in_thread(function, *args):
    """Run a blocking call (selenium's) in a thread, so the in-process server serves meanwhile."""
    return gevent.get_hub().threadpool.apply(function, args)


def timeline(driver):
    """[seq, id] of each message shown, 'gap' for a gap line, 'start' for the start line, in order."""
    return driver.execute_script(TIMELINE)


def shown(*seqs):
    """The timeline of messages ``m<seq>`` with these seqs."""
    return [[seq, "m%d" % seq] for seq in seqs]


def wait_for_timeline(page, expected, timeout=15):
    """Wait until the page shows as many entries as ``expected``; then it must show exactly those."""
    try:
        in_thread(wait, page, lambda d: len(timeline(d)) >= len(expected), timeout)
    finally:
        assert in_thread(timeline, page) == expected


def store(app, *seqs, room="lobby"):
    """Store messages ``m<seq>`` in ``room`` without delivering them; the last one."""
    chat = app.service.chat
    for seq in seqs:
        message, created = chat.backplane.rooms[room].post("writer", "m%d" % seq, "text", chat.clock())
        assert created and message.seq == seq
    return message


def open_lobby(browser, address):
    """A page on the in-process server that has joined the lobby as 'reader'."""
    return in_thread(open_chat, browser, "http://%s:%d" % address, "reader")


def switch_room(page, room):
    """Join ``room`` through the page's room form."""

    def switch(driver):
        driver.find_element(By.ID, "room-input").send_keys(room, Keys.ENTER)
        wait(driver, lambda d: d.find_element(By.ID, "room-name").text == room)

    in_thread(switch, page)


def leave_room(page, room):
    """Leave ``room`` with its button in the rooms list: the lobby is shown."""

    def leave(driver):
        driver.find_element(By.CSS_SELECTOR, "#rooms li[data-room='%s'] .leave-button" % room).click()
        wait(driver, lambda d: d.find_element(By.ID, "room-name").text == "lobby")

    in_thread(leave, page)


@pytest.fixture
def requests(app, monkeypatch):
    """The ``before`` of each history request the server answers, in order."""
    history, asked = app.service.history, []

    def recorded(member, request):
        asked.append(request["before"])
        return history(member, request)

    monkeypatch.setattr(app.service, "history", recorded)
    return asked


def test_scrolling_to_the_top_loads_earlier_messages_page_by_page(app, address, browser, requests):
    store(app, *range(1, 131))
    page = open_lobby(browser, address)
    wait_for_timeline(page, shown(*range(116, 131)))  # the last 15, as a join shows

    top_seq, top = in_thread(page.execute_script, TO_TOP)
    assert top_seq == 116
    wait_for_timeline(page, shown(*range(66, 131)))
    now, scroll_top = in_thread(page.execute_script, TOP_OF, 116)
    assert abs(now - top) < 4 and scroll_top > 0  # the message on top stayed where it was

    assert in_thread(texts_of, page, "#messages li.older button[type=button]") == ["Load earlier messages"]
    in_thread(page.execute_script, "document.querySelector('#messages li.older button').click()")
    wait_for_timeline(page, shown(*range(16, 131)))

    in_thread(page.execute_script, TO_TOP)
    wait_for_timeline(page, ["start"] + shown(*range(1, 131)))
    assert in_thread(texts_of, page, "#messages li.start") == ["Start of the conversation"]
    assert in_thread(texts_of, page, "#messages li.older") == []  # nothing more to load
    assert requests == [116, 66, 16]
    in_thread(page.execute_script, TO_TOP)
    in_thread(screenshot, page, "older-history-start")


def test_earlier_messages_load_below_a_gap_line(app, address, browser, requests):
    page = open_lobby(browser, address)
    for seq in (1, 2, 3):
        app.service.deliver_message(store(app, seq))
    wait_for_timeline(page, shown(1, 2, 3))
    # As if the lobby's history had been lost and begun anew (the page's seqs are of the old
    # one): its rejoin after a reconnect shows a gap line, then the last 15 of the new one.
    app.service.chat.backplane.rooms["lobby"].epoch = "another"
    store(app, *range(4, 134))
    in_thread(page.execute_script, "window.chat.socket.socket.transport.close()")
    above = shown(1, 2, 3) + ["gap"]
    wait_for_timeline(page, above + shown(*range(119, 134)))

    # Earlier messages of the new history go between the gap line and its oldest shown
    # (1 to 3, shown already, once).
    for oldest in (69, 19, 4):
        in_thread(page.execute_script, TO_TOP)
        wait_for_timeline(page, above + shown(*range(oldest, 134)))
    assert requests == [119, 69, 19]


def test_a_rate_limited_request_is_made_again_a_second_later(app, address, browser, monkeypatch):
    history, asked = app.service.history, []

    def limited(member, request):
        asked.append((request["before"], time.monotonic()))
        if len(asked) == 1:
            raise ChatError("rate_limited", "Too many queries: wait 1.0 s and try again.")
        return history(member, request)

    monkeypatch.setattr(app.service, "history", limited)
    store(app, *range(1, 131))
    page = open_lobby(browser, address)
    wait_for_timeline(page, shown(*range(116, 131)))
    in_thread(page.execute_script, TO_TOP)
    wait_for_timeline(page, shown(*range(66, 131)))
    assert [before for before, _ in asked] == [116, 116]
    assert asked[1][1] - asked[0][1] >= 0.9


def test_an_answer_for_a_room_left_meanwhile_is_ignored(app, address, browser, requests):
    page = in_thread(open_chat, browser, "http://%s:%d" % address, "reader", "websocket", "reading")
    store(app, *range(1, 131), room="reading")
    leave_room(page, "reading")
    switch_room(page, "reading")  # joined again: its last 15
    wait_for_timeline(page, shown(*range(116, 131)))
    in_thread(page.execute_script, HOLD_ANSWERS)
    in_thread(page.execute_script, TO_TOP)
    in_thread(wait, page, lambda d: d.execute_script("return window.heldAnswers.length") == 1)

    leave_room(page, "reading")
    switch_room(page, "reading")  # joined anew, in a new view
    wait_for_timeline(page, shown(*range(116, 131)))
    assert in_thread(page.execute_script, HAND_OVER) == 1
    assert in_thread(timeline, page) == shown(*range(116, 131))  # the left view's answer: dropped

    in_thread(page.execute_script, TO_TOP)  # the new view loads on its own
    wait_for_timeline(page, shown(*range(66, 131)))
    assert requests == [116, 116]


def test_a_room_shown_again_keeps_what_it_loaded_meanwhile(app, address, browser, requests):
    store(app, *range(1, 131))
    page = open_lobby(browser, address)
    wait_for_timeline(page, shown(*range(116, 131)))
    in_thread(page.execute_script, HOLD_ANSWERS)
    in_thread(page.execute_script, TO_TOP)
    in_thread(wait, page, lambda d: d.execute_script("return window.heldAnswers.length") == 1)

    switch_room(page, "elsewhere")  # only the view changes: the lobby is still joined
    assert in_thread(page.execute_script, HAND_OVER) == 1  # the answer comes while it is not shown
    switch_room(page, "lobby")
    wait_for_timeline(page, shown(*range(66, 131)))
    assert in_thread(page.execute_script, FIRST_ON_SCREEN) > 100  # still by 116, where it was read: not at 66
    assert requests == [116]
