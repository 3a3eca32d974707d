"""The page as a multi-room client: a member of every room joined until leaving it, each room with
its own view and unread count; switching rooms only changes the view; a reload comes back.

Every test uses rooms and nicknames of its own: the module shares one ``serve.py``.
"""

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from tests.browser.pages import (
    announcements,
    message_texts,
    open_chat,
    own_states,
    roster,
    send,
    texts_of,
    wait,
)
from tests.browser.pages import (
    settled_screenshot as screenshot,
)

pytestmark = pytest.mark.browser


ROOMS = """
return Array.from(document.querySelectorAll('#rooms li[data-room]')).map(function (li) {
  var unread = li.querySelector('.unread'), leave = li.querySelector('.leave-button');
  return {room: li.dataset.room, joined: li.classList.contains('joined'),
          active: li.classList.contains('active'), unread: unread.hidden ? '' : unread.textContent,
          leave: !leave.hidden};
});
"""


def rooms(driver):
    """Each room in the list: its name, whether we are a member, shown, its unread badge, its leave button."""
    return {r["room"]: r for r in driver.execute_script(ROOMS)}


def joined_rooms(driver):
    return sorted(name for name, r in rooms(driver).items() if r["joined"])


def shown_room(driver):
    return driver.find_element(By.ID, "room-name").text


def view(driver, room):
    """Show ``room`` by picking it in the rooms list."""
    wait(driver, lambda d: room in rooms(d))
    driver.find_element(By.CSS_SELECTOR, "#rooms li[data-room='%s'] .room-button" % room).click()
    wait(driver, lambda d: shown_room(d) == room)


def join(driver, room):
    """Join ``room`` through the room form; it is shown once the server took it."""
    field = driver.find_element(By.ID, "room-input")
    field.send_keys(room, Keys.ENTER)
    wait(driver, lambda d: shown_room(d) == room.strip().lower())
    wait(driver, lambda d: field.get_attribute("value") == "")


def leave(driver, room):
    driver.find_element(By.CSS_SELECTOR, "#rooms li[data-room='%s'] .leave-button" % room).click()


def no_leave_lines_held(driver):
    return driver.execute_script("return window.chat.heldLeaves()") == 0


def test_unread_counts_per_room_across_two_pages(browser, chat_url):
    alice = open_chat(browser, chat_url, "alice-mr", room="dev-mr")
    bob = open_chat(browser, chat_url, "bob-mr", room="dev-mr")
    wait(alice, lambda d: sorted(roster(d)) == ["alice-mr", "bob-mr"])
    view(alice, "lobby")  # only the view: still a member of dev-mr
    assert joined_rooms(alice) == ["dev-mr", "lobby"]

    send(bob, "news from dev")
    wait(alice, lambda d: rooms(d)["dev-mr"]["unread"] == "1")
    assert alice.title == "(1) chatwsgi"
    assert "news from dev" not in message_texts(alice)
    screenshot(alice, "multiroom-unread-badge")

    view(alice, "dev-mr")
    wait(alice, lambda d: message_texts(d) == ["news from dev"])
    assert rooms(alice)["dev-mr"]["unread"] == ""
    wait(alice, lambda d: d.title == "chatwsgi")

    # Bob saw no "left": Alice's message, sent after both switches, comes after any announce.
    send(alice, "back in dev")
    wait(bob, lambda d: message_texts(d)[-1:] == ["back in dev"])
    assert no_leave_lines_held(bob)
    assert not [line for line in announcements(bob) if "left" in line]
    assert sorted(roster(bob)) == ["alice-mr", "bob-mr"]


def test_rooms_not_shown_receive_and_keep_their_views(browser, chat_url):
    alice = open_chat(browser, chat_url, "alice-kv", room="kv-one")
    join(alice, "kv-two")
    bob = open_chat(browser, chat_url, "bob-kv", room="kv-one")
    send(bob, "one", "two", "three")
    wait(alice, lambda d: rooms(d)["kv-one"]["unread"] == "3")
    send(alice, "in kv-two")
    wait(alice, lambda d: own_states(d) == ["acked"])
    view(alice, "kv-one")
    assert message_texts(alice) == ["one", "two", "three"]
    view(alice, "kv-two")
    assert message_texts(alice) == ["in kv-two"]
    assert rooms(alice)["kv-one"]["unread"] == ""


def test_the_leave_button(browser, chat_url):
    alice = open_chat(browser, chat_url, "alice-lv", room="leave-me")
    bob = open_chat(browser, chat_url, "bob-lv", room="leave-me")
    wait(bob, lambda d: sorted(roster(d)) == ["alice-lv", "bob-lv"])
    listed = rooms(alice)
    assert listed["leave-me"]["leave"] and not listed["lobby"]["leave"]  # the lobby is home: never left
    screenshot(alice, "multiroom-leave-button")

    leave(alice, "leave-me")
    wait(alice, lambda d: shown_room(d) == "lobby")
    wait(alice, lambda d: joined_rooms(d) == ["lobby"])
    assert alice.execute_script("return JSON.parse(sessionStorage.getItem('chatwsgi.rooms'))") == ["lobby"]
    wait(bob, lambda d: roster(d) == ["bob-lv"])
    wait(bob, lambda d: "alice-lv left" in announcements(d))  # after its grace: no rejoin came


def test_reload_returns_to_the_room_and_rooms(browser, chat_url):
    page = open_chat(browser, chat_url, "reloader", room="rl-one")
    join(page, "rl-two")
    view(page, "rl-one")
    send(page, "before the reload")
    wait(page, lambda d: own_states(d) == ["acked"])
    assert page.execute_script("return location.search") == "?transport=websocket&room=rl-one"

    page.refresh()  # the nickname is claimed back with its token: no form to fill again
    wait(page, lambda d: d.execute_script("return window.chat.state.room") == "rl-one")
    assert page.find_element(By.ID, "me").text == "reloader"
    assert not page.find_element(By.ID, "nick-form").is_displayed()
    assert message_texts(page) == ["before the reload"]
    wait(page, lambda d: joined_rooms(d) == ["lobby", "rl-one", "rl-two"])

    view(page, "rl-two")
    page.get(chat_url + "/?room=rl-one")  # an explicit ?room= wins over the room last shown
    wait(page, lambda d: d.execute_script("return window.chat.state.room") == "rl-one")
    wait(page, lambda d: joined_rooms(d) == ["lobby", "rl-one", "rl-two"])


def test_room_names_checked_in_the_browser_and_kept_when_refused(browser, chat_url):
    page = open_chat(browser, chat_url, "roomer", room="solo-1")
    field = page.find_element(By.ID, "room-input")
    field.send_keys("Not a room!", Keys.ENTER)
    error = page.find_element(By.ID, "room-error")
    wait(page, lambda d: error.get_attribute("data-code") == "bad_room")
    assert "a–z" in error.text and field.get_attribute("value") == "Not a room!"
    assert field.get_attribute("aria-invalid") == "true"

    field.clear()
    join(page, "  Solo-2 ")  # folded to lower case, as the server does
    join(page, "solo-3")
    field.send_keys("solo-4", Keys.ENTER)  # a fourth room nobody else is in: the server says no
    wait(page, lambda d: error.get_attribute("data-code") == "too_many_rooms")
    assert "solo-1" in error.text
    assert field.get_attribute("value") == "solo-4"  # kept, to correct or retry later
    assert shown_room(page) == "solo-3"
    assert texts_of(page, "#notices li") == []  # said once, under the field: no banner as well
    screenshot(page, "multiroom-room-refused")


def test_own_joins_are_not_shown_and_a_reconnect_shows_neither_leave_nor_join(browser, chat_url):
    alice = open_chat(browser, chat_url, "alice-rc", room="flap")
    bob = open_chat(browser, chat_url, "bob-rc", room="flap")
    wait(alice, lambda d: announcements(d) == ["bob-rc joined"])
    assert announcements(bob) == []  # not "bob-rc joined": his own

    session = bob.execute_script("return window.chat.socket.socket.sessionid")
    bob.execute_script("window.chat.socket.socket.transport.close()")  # as a network drop would
    wait(bob, lambda d: d.execute_script("return window.chat.socket.socket.sessionid") != session)
    wait(bob, lambda d: d.execute_script("return window.chat.state.nickname") == "bob-rc")
    send(bob, "back again")
    wait(alice, lambda d: message_texts(d) == ["back again"])
    wait(alice, no_leave_lines_held)  # the leave was cancelled by the rejoin: no line will come
    assert announcements(alice) == ["bob-rc joined"]
    assert sorted(roster(alice)) == ["alice-rc", "bob-rc"]
    assert announcements(bob) == []
