"""What a person sees: nickname prompt, rooms, roster, typing, notices, keyboard, narrow screens."""

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec

from tests.browser.conftest import screenshot
from tests.browser.pages import (
    message_texts,
    open_chat,
    own_states,
    roster,
    send,
    set_viewport,
    status_is,
    texts_of,
    wait,
)

pytestmark = pytest.mark.browser


def test_nickname_prompt_validates_inline(browser, chat_url):
    taken = open_chat(browser, chat_url, "Taken")
    page = browser()
    page.get(chat_url + "/")
    wait(page, status_is("connected"))
    label = page.find_element(By.CSS_SELECTOR, "label[for=nick-input]")
    assert label.text.strip()
    field = page.find_element(By.ID, "nick-input")
    field.send_keys("   ", Keys.ENTER)
    wait(page, ec.text_to_be_present_in_element_attribute((By.ID, "nick-error"), "data-code", "bad_nickname"))
    field.clear()
    field.send_keys("taken", Keys.ENTER)  # case-insensitively the same as "Taken"
    wait(
        page, ec.text_to_be_present_in_element_attribute((By.ID, "nick-error"), "data-code", "nickname_taken")
    )
    assert page.find_element(By.ID, "nick-error").text
    assert not page.find_element(By.ID, "chat").is_displayed()
    screenshot(page, "nickname-taken")
    field.clear()
    field.send_keys("untaken", Keys.ENTER)
    wait(page, ec.visibility_of_element_located((By.ID, "chat")))
    wait(taken, lambda d: "untaken" in roster(d))


def test_rooms_roster_typing_and_keyboard(browser, chat_url):
    alice = open_chat(browser, chat_url, "alice-ux", room="ux")
    bob = open_chat(browser, chat_url, "bob-ux", room="ux")
    wait(alice, lambda d: d.find_element(By.ID, "roster-count").text.strip() == "2")

    box = bob.find_element(By.ID, "message-input")
    box.send_keys("first line")
    box.send_keys(Keys.SHIFT, Keys.ENTER)  # Shift+Enter: a newline, not a send
    box.send_keys("second line")
    wait(alice, lambda d: "bob-ux" in d.find_element(By.ID, "typing").text)
    assert message_texts(bob) == []
    box.send_keys(Keys.ENTER)
    wait(alice, lambda d: message_texts(d) == ["first line\nsecond line"])
    wait(bob, lambda d: own_states(d) == ["acked"])

    bob.find_element(By.ID, "room-input").send_keys("ux-kitchen", Keys.ENTER)
    wait(bob, lambda d: d.find_element(By.ID, "room-name").text == "ux-kitchen")
    # Bob only changed his view: he is still in ux. Focusing the room field refreshes the list.
    alice.find_element(By.ID, "room-input").click()
    wait(alice, lambda d: "ux-kitchen" in texts_of(d, "#rooms li[data-room] .name"))
    assert sorted(roster(alice)) == ["alice-ux", "bob-ux"]
    alice.find_element(By.CSS_SELECTOR, "#rooms li[data-room=ux-kitchen]").click()
    wait(alice, lambda d: d.find_element(By.ID, "room-name").text == "ux-kitchen")
    wait(alice, lambda d: sorted(roster(d)) == ["alice-ux", "bob-ux"])
    count = alice.find_element(By.CSS_SELECTOR, "#rooms li[data-room=ux-kitchen] .count")
    wait(alice, lambda d: count.text.strip() == "2")
    screenshot(alice, "two-rooms")


def test_errors_show_as_inline_notices(browser, chat_url):
    page = open_chat(browser, chat_url, "noisy", room="notices")
    # A refusal no request of the page's waits for (the page's own requests say theirs in place:
    # test_page_behaviour.py); an over-long text is not sent at all.
    page.execute_script("window.chat.socket.emit('join', {room: 'Not a room!'})")
    wait(page, ec.presence_of_element_located((By.CSS_SELECTOR, "#notices li.notice[data-code=bad_room]")))
    screenshot(page, "error-notice")


def test_usable_at_360_pixels(browser, chat_url):
    page = open_chat(browser, chat_url, "narrow", room="narrow", width=360, height=740)
    set_viewport(page, 360, 740)  # a headless window alone is at least 500 pixels wide
    send(page, "a long message that has to wrap on a narrow phone screen " * 3)
    wait(page, lambda d: own_states(d) == ["acked"])
    overflow = page.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    page.find_element(By.ID, "panels-toggle").click()  # on a phone the rooms and members fold away
    for element_id in ("message-input", "send", "room-input"):
        element = page.find_element(By.ID, element_id)
        assert element.is_displayed() and element.size["width"] > 0
    screenshot(page, "narrow-width")
