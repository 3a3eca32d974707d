"""The page defends its own history: a live message that skips sequence numbers makes it fetch
the missing ones first, and a far-behind rejoin follows every page of catch-up.

The server runs in this process, so a test can store messages without delivering them (a
``Room`` stores, the backplane delivers) and so lose them on their way to the page. This
process is not monkey-patched: selenium's blocking calls run in gevent's thread pool while
the server's greenlets go on serving the page.
"""

import gevent
import pytest
from gevent.event import Event

from chatwsgi.errors import ChatError
from tests.browser.pages import open_chat, texts_of, wait
from tests.support.chatting import chatter, wait_until

pytestmark = pytest.mark.browser

TIMELINE = """
return Array.from(document.querySelectorAll('#messages li.message, #messages li.gap')).map(
  function (li) { return li.classList.contains('gap') ? 'gap' : [Number(li.dataset.seq), li.dataset.id]; });
"""
SCROLLED_TO_END = """
var m = document.getElementById('messages');
return m.scrollHeight > m.clientHeight && m.scrollHeight - m.scrollTop - m.clientHeight < 80;
"""


def in_thread(function, *args):
    """Run a blocking call (selenium's) in a thread, so the in-process server serves meanwhile."""
    return gevent.get_hub().threadpool.apply(function, args)


def timeline(driver):
    """[seq, id] of each message shown and 'gap' for each gap line, in order."""
    return driver.execute_script(TIMELINE)


def shown(*seqs):
    """The timeline of messages ``m<seq>`` with these seqs ('gap' for a gap line)."""
    return [seq if seq == "gap" else [seq, "m%d" % seq] for seq in seqs]


def wait_for_timeline(page, expected, timeout=15):
    """Wait until the page shows as many entries as ``expected``; then it must show exactly those."""
    try:
        in_thread(wait, page, lambda d: len(timeline(d)) >= len(expected), timeout)
    finally:
        assert in_thread(timeline, page) == expected


@pytest.fixture
def lobby(app):
    """The lobby's Room: its history, as the server keeps it."""
    return app.service.chat.backplane.rooms["lobby"]


@pytest.fixture
def page(address, browser):
    """A page on the in-process server that has joined the lobby as 'reader'."""
    return in_thread(open_chat, browser, "http://%s:%d" % address, "reader")


@pytest.fixture
def writer(page, address):
    """A client in the lobby that posted messages 1 to 3, which the page shows."""
    client = chatter(address, "writer")
    try:
        for n in (1, 2, 3):
            ack = client.call("message", {"room": "lobby", "id": "m%d" % n, "text": "message %d" % n})
            assert ack["ok"], ack
        wait_for_timeline(page, shown(1, 2, 3))
        yield client
    finally:
        client.close()


def store(app, *seqs):
    """Store messages ``m<seq>`` in the lobby without delivering them; the last one."""
    chat = app.service.chat
    for seq in seqs:
        message, created = chat.backplane.rooms["lobby"].post("writer", "m%d" % seq, "text", chat.clock())
        assert created and message.seq == seq
    return message


def post(app, seq):
    """Store a message and deliver it live, as the backplane does."""
    app.service.deliver_message(store(app, seq))


def test_a_page_fetches_the_messages_a_live_one_skipped(app, page, writer):
    seventh = store(app, 4, 5, 6, 7)
    app.service.deliver_message(seventh)  # 4 to 6 were lost on their way
    post(app, 8)  # these two reach the page while its catch-up is in flight: held, then shown
    post(app, 9)
    wait_for_timeline(page, shown(*range(1, 10)))


def test_a_page_shows_a_gap_when_the_skipped_messages_are_gone(app, lobby, page, writer):
    seventh = store(app, 4, 5, 6, 7)
    while lobby.history[0].seq < 7:  # as retention drops the oldest
        lobby.history.popleft()
    app.service.deliver_message(seventh)
    wait_for_timeline(page, shown(1, 2, 3, "gap", 7))


def test_a_failed_catch_up_shows_the_held_message_and_the_next_one_retries(app, page, writer, monkeypatch):
    def unavailable(member, request):
        raise ChatError("unavailable", "The chat's store is briefly unavailable.")

    monkeypatch.setattr(app.service, "catch_up", unavailable)
    app.service.deliver_message(store(app, 4, 5, 6, 7))
    wait_for_timeline(page, shown(1, 2, 3, 7))
    assert in_thread(texts_of, page, '#notices li[data-code="unavailable"]')  # it did ask

    monkeypatch.undo()
    post(app, 8)  # still one past a gap: the page asks again, and misses nothing
    wait_for_timeline(page, shown(1, 2, 3, 7, 4, 5, 6, 8))


def test_a_catch_up_cut_by_a_disconnect_shows_the_held_message_and_the_rejoin_fills_in(
    app, lobby, page, writer, monkeypatch
):
    asked, answer = Event(), Event()

    def stuck(member, request):
        asked.set()
        answer.wait(10)  # until the page has closed its connection, so it never reads this
        # A wrong answer (nothing missing): a page that took it would never fetch 4 to 6.
        return {"ok": True, "room": "lobby", "messages": [], "complete": True, "epoch": lobby.epoch}

    monkeypatch.setattr(app.service, "catch_up", stuck)
    try:
        app.service.deliver_message(store(app, 4, 5, 6, 7))
        wait_until(asked.is_set)
        in_thread(page.execute_script, "window.chat.socket.socket.transport.close()")
        answer.set()
        # The rejoin after the reconnect asks for everything after 3 (7 is shown already).
        wait_for_timeline(page, shown(1, 2, 3, 7, 4, 5, 6))
    finally:
        answer.set()


def test_a_page_that_rejoins_far_behind_fetches_every_page(app, page):
    post(app, 1)
    wait_for_timeline(page, shown(1))
    store(app, *range(2, 1203))  # three pages of catch-up: 500, 500 and 201
    in_thread(page.execute_script, "window.chat.socket.socket.transport.close()")
    wait_for_timeline(page, shown(*range(1, 1203)), timeout=30)
    assert in_thread(page.execute_script, SCROLLED_TO_END)  # it follows the newest, as before


def test_a_page_held_back_by_the_query_limit_goes_on_fetching(app, page, monkeypatch):
    catch_up, refused = app.service.catch_up, []

    def limited(member, request):
        if not refused:
            refused.append(request["after"])
            raise ChatError("rate_limited", "Too many queries: wait 1.0 s and try again.")
        return catch_up(member, request)

    monkeypatch.setattr(app.service, "catch_up", limited)
    post(app, 1)
    wait_for_timeline(page, shown(1))
    store(app, *range(2, 602))  # the join's page, then one catch-up: refused once, then asked again
    in_thread(page.execute_script, "window.chat.socket.socket.transport.close()")
    wait_for_timeline(page, shown(*range(1, 602)))
    assert refused == [501]


def test_a_room_not_shown_catches_up_too(app, address, browser):
    page = in_thread(open_chat, browser, "http://%s:%d" % address, "reader", "websocket", "side")
    show_lobby = "document.querySelector('#rooms li[data-room=lobby] .room-button').click()"
    in_thread(page.execute_script, show_lobby)
    in_thread(wait, page, lambda d: d.execute_script("return window.chat.state.room") == "lobby")
    chat, side = app.service.chat, app.service.chat.backplane.rooms["side"]
    stored = [side.post("writer", "m%d" % seq, "text", chat.clock())[0] for seq in (1, 2, 3, 4)]
    app.service.deliver_message(stored[0])
    app.service.deliver_message(stored[3])  # 2 and 3 were lost on their way: fetched, though not shown
    last_seq = "return window.chat.state.lastSeq.side"
    in_thread(wait, page, lambda d: d.execute_script(last_seq) == 4)
    assert in_thread(texts_of, page, "#rooms li[data-room=side] .unread") == ["4"]
    in_thread(page.execute_script, show_lobby.replace("lobby", "side"))
    wait_for_timeline(page, shown(1, 2, 3, 4))
