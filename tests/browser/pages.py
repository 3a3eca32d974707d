"""Driving the chat page in Chromium: open, type, read; every wait has a deadline."""

from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

TRANSPORTS = ["websocket", "xhr-polling", "jsonp-polling"]


def partner_of(transport):
    """A different transport to pair with ``transport``."""
    return TRANSPORTS[(TRANSPORTS.index(transport) + 1) % len(TRANSPORTS)]


def wait(driver, condition, timeout=15):
    """Wait for a selenium condition or a callable(driver)."""
    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition)


def status_is(state):
    return ec.text_to_be_present_in_element_attribute((By.ID, "status"), "data-state", state)


def open_chat(browser, url, nickname, transport="websocket", room=None, **window):
    """A page on ``transport`` with ``nickname`` accepted and ``room`` (default lobby) joined."""
    driver = browser(**window)
    query = "transport=%s" % transport + ("&room=%s" % room if room else "")
    driver.get("%s/?%s" % (url, query))
    wait(driver, status_is("connected"))
    driver.find_element(By.ID, "nick-input").send_keys(nickname, Keys.ENTER)
    wait(driver, ec.text_to_be_present_in_element((By.ID, "me"), nickname))
    wait(driver, ec.text_to_be_present_in_element((By.ID, "room-name"), room or "lobby"))
    wait(driver, lambda d: d.execute_script("return !!(window.chat.state.room)"))
    return driver


def transport_in_use(driver):
    return driver.find_element(By.ID, "transport").get_attribute("data-transport")


def texts_of(driver, selector):
    """textContent of every element matching ``selector``, read in one script (no stale elements)."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0]))"
        ".map(function (e) { return e.textContent; })",
        selector,
    )


def message_texts(driver):
    """The text of every chat message shown, in order (exact, untrimmed)."""
    return texts_of(driver, "#messages li.message .text")


def announcements(driver):
    return [text.strip() for text in texts_of(driver, "#messages li.announce")]


def roster(driver):
    return [text.strip() for text in texts_of(driver, "#roster li")]


def send(driver, *texts):
    """Send texts through the page's own composer, as fast as a script can press Send."""
    driver.execute_script(
        "var input = document.getElementById('message-input');"
        "var form = document.getElementById('composer');"
        "arguments[0].forEach(function (t) { input.value = t; form.requestSubmit(); });",
        list(texts),
    )


def own_states(driver):
    """Classes of own messages: 'pending', 'acked' or 'failed' for each, in order."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#messages li.message.own'))"
        ".map(function (e) { return ['pending','acked','failed'].filter("
        "function (c) { return e.classList.contains(c); }).join(' '); })"
    )
