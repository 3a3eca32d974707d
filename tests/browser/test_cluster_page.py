"""Two Chromium pages, each pinned to a different node, chat through HAProxy and Redis."""

import pytest

from tests.browser.pages import message_texts, open_chat, own_states, roster, send, wait

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def pinned_to(browser, url, node):
    """A browser factory whose windows carry HAProxy's cookie for ``node`` before the page loads."""

    def open_pinned(**window):
        driver = browser(**window)
        driver.get(url + "/healthz")
        driver.delete_all_cookies()
        driver.add_cookie({"name": "CHATNODE", "value": node, "path": "/"})
        return driver

    return open_pinned


def node_of(driver):
    """The node that answers this page's requests, asked through the load balancer."""
    return driver.execute_script("return fetch('/healthz').then(r => r.json()).then(h => h.node)")


@pytest.mark.parametrize("transport", ["websocket", "xhr-polling"])
def test_pages_on_two_nodes_chat_through_haproxy(browser, cluster, transport):
    url = cluster.lb.url
    alice = open_chat(pinned_to(browser, url, "n1"), url, "alice", transport)
    bob = open_chat(pinned_to(browser, url, "n2"), url, "bob", "jsonp-polling")
    assert (node_of(alice), node_of(bob)) == ("n1", "n2")
    wait(alice, lambda d: roster(d) == ["alice", "bob"])
    send(alice, "hello from n1")
    wait(alice, lambda d: own_states(d) == ["acked"])
    wait(bob, lambda d: message_texts(d) == ["hello from n1"])
    send(bob, "hello from n2")
    wait(alice, lambda d: message_texts(d) == ["hello from n1", "hello from n2"])
    assert [h["members"] for h in (node.health() for node in cluster.nodes)] == [1, 1]
