"""Every advertised transport end to end in Chromium with the real Socket.IO 0.9 client."""

import pytest
from selenium.webdriver.common.by import By

from tests.browser.pages import (
    TRANSPORTS,
    message_texts,
    open_chat,
    own_states,
    partner_of,
    roster,
    send,
    transport_in_use,
    wait,
)

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_transport_matrix(browser, chat_url, transport):
    room = "matrix-" + transport
    partner = partner_of(transport)
    bob = open_chat(browser, chat_url, "bob-" + transport, partner, room=room)
    send(bob, "before you came")
    wait(bob, lambda d: own_states(d) == ["acked"])

    alice = open_chat(browser, chat_url, "alice-" + transport, transport, room=room)
    assert transport_in_use(alice) == transport
    assert transport_in_use(bob) == partner
    assert message_texts(alice) == ["before you came"]  # history on join
    assert sorted(roster(alice)) == sorted(["alice-" + transport, "bob-" + transport])
    wait(bob, lambda d: "alice-" + transport in roster(d))

    send(alice, "hi from " + transport)
    wait(alice, lambda d: own_states(d) == ["acked"])
    wait(bob, lambda d: message_texts(d)[-1:] == ["hi from " + transport])
    send(bob, "hi back over " + partner)
    wait(alice, lambda d: message_texts(d)[-1:] == ["hi back over " + partner])

    alice.find_element(By.ID, "room-input").send_keys("elsewhere-" + transport + "\n")
    wait(alice, lambda d: d.find_element(By.ID, "room-name").text == "elsewhere-" + transport)
    # Another room shown, this one still joined (no "left" for Bob) until Alice leaves it.
    alice.find_element(By.CSS_SELECTOR, "#rooms li[data-room='%s'] .leave-button" % room).click()
    wait(bob, lambda d: roster(d) == ["bob-" + transport])


TEXTS = [
    "héllo 你好 🎉",
    "שלום עולם — مرحبا بالعالم",
    "🎉" * 10 + "é" * 1990,  # exactly the 2,000-character cap, 2,010 UTF-16 units
    "<img src=x onerror=window.pwned=1>",
    "</script><script>window.pwned=2</script>",
    "line one\nline two",
]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_text_fidelity(browser, chat_url, transport):
    room = "text-" + transport
    reader = open_chat(browser, chat_url, "reader-" + transport, partner_of(transport), room=room)
    writer = open_chat(browser, chat_url, "writer-" + transport, transport, room=room)
    send(writer, *TEXTS)
    wait(reader, lambda d: len(message_texts(d)) == len(TEXTS))
    assert message_texts(reader) == TEXTS
    burst = ["burst %02d 🎉🚀" % n for n in range(20)]
    send(writer, *burst)  # twice the rate limit's burst: the page waits it out, in order
    wait(reader, lambda d: len(message_texts(d)) == len(TEXTS) + 20, timeout=30)
    assert message_texts(reader) == TEXTS + burst
    wait(writer, lambda d: own_states(d) == ["acked"] * (len(TEXTS) + 20))
    for page in (reader, writer):
        assert page.execute_script("return window.pwned === undefined")
        assert page.find_elements(By.CSS_SELECTOR, "#messages img, #messages script") == []
    rtl = reader.find_elements(By.CSS_SELECTOR, "#messages li.message .text")[1]
    assert rtl.get_attribute("dir") == "auto"
