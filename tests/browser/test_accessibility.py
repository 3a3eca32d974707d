"""axe-core finds no serious or critical accessibility violation on the page's screens.

The welcome screen, the chat (joined, with messages, typing and a notice; light and dark, wide and
narrow) and the error screens (a refused nickname, a refused rename in its dialog, the server
gone: offline members, reconnecting). axe-core comes from the npm
registry (tests/thirdparty/package.json, installed by `make test`) and is injected by WebDriver, to
which the page's CSP does not apply.
"""

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec

from tests.browser.conftest import screenshot
from tests.browser.pages import (
    axe_violations,
    message_texts,
    open_chat,
    own_states,
    send,
    set_viewport,
    settle,
    status_is,
    wait,
)
from tests.support.processes import ServeProcess

pytestmark = pytest.mark.browser


def assert_accessible(driver, screen):
    """No serious or critical axe-core violation; a screenshot of what was checked."""
    settle(driver)
    screenshot(driver, "a11y-" + screen)
    found = axe_violations(driver)
    report = "\n".join(
        "%s (%s): %s\n    %s" % (v["id"], v["impact"], v["help"], "\n    ".join(v["nodes"][:5]))
        for v in found
    )
    assert not found, "axe-core on the %s screen:\n%s" % (screen, report)


def color_scheme(driver, scheme):
    """Show the page as under an OS set to ``scheme`` ('light' or 'dark')."""
    features = [{"name": "prefers-color-scheme", "value": scheme}]
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": features})


def refuse(driver):
    """A real refusal from the server (a join of a name no room may have), shown as a notice."""
    driver.execute_script("window.chat.socket.emit('join', {room: 'Not a room!'})")
    wait(driver, ec.presence_of_element_located((By.CSS_SELECTOR, "#notices li.notice")))


def test_welcome_screen(browser, chat_url):
    page = browser(width=1280, height=800)
    page.get(chat_url + "/")
    wait(page, status_is("connected"))
    assert page.find_element(By.ID, "nick-form").is_displayed()
    assert_accessible(page, "welcome")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_chat_screen(browser, chat_url, scheme):
    room = "a11y-" + scheme
    alice = open_chat(browser, chat_url, "alice-" + scheme, room=room, width=1280, height=800)
    bob = open_chat(browser, chat_url, "bob-" + scheme, room=room)
    color_scheme(alice, scheme)
    send(bob, "hello from bob", "a second line\nwith a newline")
    wait(alice, lambda d: len(message_texts(d)) == 2)
    send(alice, "hi bob")
    wait(alice, lambda d: own_states(d) == ["acked"])
    bob.find_element(By.ID, "message-input").send_keys("typing")
    wait(alice, lambda d: "bob-" in d.find_element(By.ID, "typing").text)
    refuse(alice)
    assert_accessible(alice, "chat-" + scheme)


def test_chat_screen_on_a_phone(browser, chat_url):
    page = open_chat(browser, chat_url, "phone", room="a11y-phone", width=500, height=640)
    set_viewport(page, 360, 640)
    send(page, "a message on a small screen")
    wait(page, lambda d: own_states(d) == ["acked"])
    refuse(page)
    assert_accessible(page, "phone")
    page.find_element(By.ID, "panels-toggle").click()
    wait(page, lambda d: d.find_element(By.ID, "room-input").is_displayed())
    assert_accessible(page, "phone-panels-open")


def test_refused_nickname_screen(browser, chat_url):
    open_chat(browser, chat_url, "Taken-a11y")
    page = browser(width=1280, height=800)
    page.get(chat_url + "/")
    wait(page, status_is("connected"))
    page.find_element(By.ID, "nick-input").send_keys("taken-a11y", Keys.ENTER)
    wait(page, lambda d: d.find_element(By.ID, "nick-input").get_attribute("aria-invalid") == "true")
    assert page.find_element(By.ID, "nick-error").text
    assert_accessible(page, "nickname-refused")


def test_refused_rename_dialog(browser, chat_url):
    open_chat(browser, chat_url, "held-name")
    page = open_chat(browser, chat_url, "renamer", width=1280, height=800)
    page.find_element(By.ID, "rename").click()
    field = page.find_element(By.ID, "rename-input")
    wait(page, lambda d: field.is_displayed())
    field.clear()
    field.send_keys("held-name", Keys.ENTER)
    wait(page, lambda d: d.find_element(By.ID, "rename-error").text)
    assert_accessible(page, "rename-refused")


def test_server_gone_screen(browser):
    server = ServeProcess()
    try:
        page = open_chat(browser, server.url, "left-alone", room="a11y-gone", width=1280, height=800)
        send(page, "anyone here?")
        wait(page, lambda d: own_states(d) == ["acked"])
    finally:
        server.stop()
    wait(page, lambda d: d.find_element(By.ID, "status").get_attribute("data-state") != "connected")
    assert_accessible(page, "server-gone")
