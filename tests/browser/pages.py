"""Driving the chat page in Chromium: open, type, read; every wait has a deadline."""

from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser.conftest import screenshot
from tests.support.processes import ROOT

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


def set_viewport(driver, width, height):
    """Make the page's viewport exactly ``width`` x ``height`` CSS pixels.

    A headless Chromium window is at least 500 pixels wide and its height includes the browser's
    frame, so ``--window-size`` alone cannot show a 360 x 640 phone screen.
    """
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)


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
    """Join, leave and rename lines shown, without their times."""
    return [text.strip() for text in texts_of(driver, "#messages li.announce .text")]


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


# axe-core from the npm registry (tests/thirdparty/package.json), never committed.
AXE_SCRIPT = ROOT / "tests" / "thirdparty" / "node_modules" / "axe-core" / "axe.min.js"
AXE_RUN = """
var impacts = arguments[0], done = arguments[arguments.length - 1];
axe.run(document, {resultTypes: ['violations']}).then(function (results) {
  done(results.violations.filter(function (v) { return impacts.indexOf(v.impact) >= 0; })
    .map(function (v) {
      return {id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(function (n) {
        return n.target.join(' ') + ': ' + n.failureSummary;
      })};
    }));
}, function (error) { done({error: String(error)}); });
"""

ANIMATIONS_DONE = """
return document.getAnimations().every(function (a) {
  return a.playState !== 'running' || a.effect.getTiming().iterations === Infinity;
});
"""


def settle(driver):
    """Wait until the page's animations (a notice fading in, say) have finished."""
    wait(driver, lambda d: d.execute_script(ANIMATIONS_DONE))


def settled_screenshot(driver, name):
    """A screenshot (tests/artifacts/) once the page's animations are over."""
    settle(driver)
    return screenshot(driver, name)


def axe_violations(driver, impacts=("serious", "critical")):
    """axe-core's violations of the page as it is now, those of ``impacts`` only."""
    if not AXE_SCRIPT.is_file():
        raise AssertionError(
            "axe-core is not installed (no %s): `make test` installs it from tests/thirdparty/package.json"
            % AXE_SCRIPT
        )
    if not driver.execute_script("return !!window.axe"):
        # WebDriver's scripts are not subject to the page's CSP, which allows no injected <script>.
        driver.execute_script(AXE_SCRIPT.read_text(encoding="utf-8"))
    settle(driver)  # colours are measured as drawn, not halfway through a fade-in
    driver.set_script_timeout(60)
    found = driver.execute_async_script(AXE_RUN, list(impacts))
    assert not isinstance(found, dict), "axe.run failed: %s" % found.get("error")
    return found
