"""The page is exactly the viewport: status, notices and composer on screen at phone to desktop sizes.

Measured in real Chromium with the viewport set to each size (a headless window alone is at least
500 pixels wide). Screenshots of every size and state go to tests/artifacts/layout-*.png.
"""

import pytest
from selenium.webdriver.common.by import By

from tests.browser.conftest import screenshot
from tests.browser.pages import message_texts, open_chat, send, set_viewport, settle, wait

pytestmark = pytest.mark.browser

SIZES = [(360, 640), (500, 800), (768, 1024), (1280, 800)]
ALWAYS_ON_SCREEN = [".topbar", "#status", ".room-bar", "#message-input", "#send"]
NEVER_CUT = [".brand", "#status", "#me", "#send"]  # their text shown whole, not clipped or squeezed
LINES = "\n".join("line %d of a message long enough to wrap on a phone" % n for n in range(1, 7))

# Boxes in viewport coordinates, the page's and the message list's scroll sizes, what is drawn
# at the middle of each box (a box on screen but covered is no use either), and which elements
# have more content than they show.
MEASURE = """
var out = {width: innerWidth, height: innerHeight, boxes: {}, topmost: {}, cut: []};
arguments[0].forEach(function (selector) {
  var node = document.querySelector(selector), r = node.getBoundingClientRect();
  out.boxes[selector] = {top: r.top, bottom: r.bottom, left: r.left, right: r.right};
  var hit = document.elementFromPoint((r.left + r.right) / 2, (r.top + r.bottom) / 2);
  out.topmost[selector] = !!hit && (hit === node || node.contains(hit));
});
arguments[1].forEach(function (selector) {
  var node = document.querySelector(selector);
  var more = node.scrollWidth > node.clientWidth + 1 || node.scrollHeight > node.clientHeight + 1;
  if (more) out.cut.push(selector);
});
var page = document.scrollingElement, list = document.getElementById('messages');
out.page = [page.scrollHeight, page.clientHeight, page.scrollWidth, page.clientWidth, page.scrollTop];
out.list = [list.scrollHeight, list.clientHeight];
out.notices = document.querySelectorAll('#notices li').length;
return out;
"""


def sized(browser, width, height):
    """A ``browser`` fixture whose windows have a ``width`` x ``height`` viewport."""

    def open_sized(**_):
        driver = browser(width=max(width, 500), height=height)
        set_viewport(driver, width, height)
        return driver

    return open_sized


def measure(driver, selectors=ALWAYS_ON_SCREEN):
    return driver.execute_script(MEASURE, list(selectors), NEVER_CUT)


def assert_fits(layout, selectors=ALWAYS_ON_SCREEN):
    """Each of ``selectors`` fully inside the viewport and not covered; the page itself never scrolls."""
    for selector in selectors:
        box = layout["boxes"][selector]
        assert box["top"] >= 0 and box["left"] >= 0, (selector, box, layout)
        assert box["bottom"] <= layout["height"] and box["right"] <= layout["width"], (selector, box, layout)
        assert box["bottom"] > box["top"] and box["right"] > box["left"], (selector, box)
        assert layout["topmost"][selector], (selector, "is covered", layout)
    assert layout["cut"] == [], layout
    scroll_height, client_height, scroll_width, client_width, _ = layout["page"]
    assert scroll_height <= client_height + 1, layout
    assert scroll_width <= client_width + 1, layout


def refuse_twice(driver):
    """Two real refusals from the server, shown by the page's own error path as two notices.

    Sent on the page's socket because the room form and the composer check what they send.
    """
    driver.execute_script(
        "window.chat.socket.emit('join', {room: 'Not a room!'});"
        "window.chat.socket.emit('message', {room: 'nowhere', id: 'layout-1', text: 'hi'});"
    )
    wait(driver, lambda d: d.execute_script("return document.querySelectorAll('#notices li').length") == 2)


@pytest.mark.parametrize("width,height", SIZES, ids=["%dx%d" % size for size in SIZES])
def test_status_and_composer_stay_on_screen(browser, chat_url, width, height):
    room = "layout-%d" % width
    page = open_chat(sized(browser, width, height), chat_url, "me-%d" % width, room=room)
    other = open_chat(browser, chat_url, "other-%d" % width, room=room)
    texts = ["%d: %s" % (n, LINES) for n in range(1, 9)]
    send(other, *texts)
    wait(page, lambda d: message_texts(d) == texts)
    send(page, "and one of mine")
    wait(page, lambda d: len(message_texts(d)) == len(texts) + 1)

    layout = measure(page)
    assert (layout["width"], layout["height"]) == (width, height)
    assert layout["notices"] == 0
    assert_fits(layout)
    scroll_height, client_height = layout["list"]
    assert scroll_height > client_height  # the list holds more than it shows...
    settle(page)
    screenshot(page, "layout-%dx%d-no-notices" % (width, height))

    page.execute_script("document.getElementById('messages').scrollTop = 0")
    wait(page, lambda d: d.execute_script("return document.getElementById('messages').scrollTop") == 0)
    scrolled = measure(page)
    assert scrolled["page"][4] == 0  # ...and scrolls on its own: the page stays put
    assert_fits(scrolled)

    refuse_twice(page)
    settle(page)
    with_notices = measure(page)
    assert_fits(with_notices)
    assert with_notices["list"][1] >= 100, with_notices  # the conversation keeps a usable height
    screenshot(page, "layout-%dx%d-two-notices" % (width, height))


@pytest.mark.parametrize("width,height", [(360, 640), (1280, 800)], ids=["360x640", "1280x800"])
def test_side_panels_fold_away_on_narrow_screens(browser, chat_url, width, height):
    page = open_chat(sized(browser, width, height), chat_url, "panels-%d" % width, room="panels")
    toggle = page.find_element(By.ID, "panels-toggle")
    room_input = page.find_element(By.ID, "room-input")
    if width > 720:  # both panels beside the conversation; no toggle
        assert not toggle.is_displayed()
        assert room_input.is_displayed()
        assert_fits(measure(page, ALWAYS_ON_SCREEN + ["#room-input", "#roster"]), ALWAYS_ON_SCREEN)
        return

    assert toggle.is_displayed() and toggle.get_attribute("aria-expanded") == "false"
    assert not room_input.is_displayed()
    toggle.click()
    wait(page, lambda d: room_input.is_displayed())
    assert toggle.get_attribute("aria-expanded") == "true"
    opened = measure(page, ALWAYS_ON_SCREEN + ["#room-input"])
    assert_fits(opened, ALWAYS_ON_SCREEN + ["#room-input"])
    settle(page)
    screenshot(page, "layout-%dx%d-panels-open" % (width, height))

    room_input.send_keys("panels-two\n")  # joining a room goes back to the conversation
    wait(page, lambda d: d.find_element(By.ID, "room-name").text == "panels-two")
    wait(page, lambda d: toggle.get_attribute("aria-expanded") == "false")
    assert not room_input.is_displayed()
    assert_fits(measure(page))
