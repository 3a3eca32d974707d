"""Two real pages chat over websocket with the real Socket.IO 0.9 client."""

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser.conftest import screenshot

pytestmark = pytest.mark.browser


def wait(driver, condition, timeout=15):
    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition)


def open_chat(browser, url, nickname, transport="websocket"):
    driver = browser()
    driver.get("%s/?transport=%s" % (url, transport))
    wait(driver, ec.text_to_be_present_in_element_attribute((By.ID, "status"), "data-state", "connected"))
    field = driver.find_element(By.ID, "nick-input")
    field.send_keys(nickname, Keys.ENTER)
    wait(driver, ec.visibility_of_element_located((By.ID, "chat")))
    wait(driver, ec.text_to_be_present_in_element((By.ID, "me"), nickname))
    return driver


def message_texts(driver):
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#messages li.message .text")]


def test_two_pages_chat_over_websocket(browser, chat_url):
    alice = open_chat(browser, chat_url, "alice")
    bob = open_chat(browser, chat_url, "bob")
    assert alice.find_element(By.ID, "transport").text == "websocket"
    wait(alice, lambda d: "bob" in [li.text for li in d.find_elements(By.CSS_SELECTOR, "#roster li")])
    assert alice.find_element(By.ID, "roster-count").text.strip().startswith("2")

    box = alice.find_element(By.ID, "message-input")
    box.send_keys("hello bob")  # chromedriver cannot type characters outside the BMP
    box.send_keys(Keys.ENTER)
    wait(bob, lambda d: "hello bob" in message_texts(d))
    wait(alice, ec.presence_of_element_located((By.CSS_SELECTOR, "#messages li.message.own.acked")))

    payload = "<img src=x onerror=window.pwned=1>"
    bob.find_element(By.ID, "message-input").send_keys(payload, Keys.ENTER)
    wait(alice, lambda d: payload in message_texts(d))
    assert alice.execute_script("return window.pwned === undefined")
    assert alice.find_elements(By.CSS_SELECTOR, "#messages img") == []
    screenshot(alice, "joined-chat")
