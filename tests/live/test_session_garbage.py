"""An ended session leaves no reference cycle, so the server may freeze its heap (memory.py).

With the cyclic collector off, sessions of every transport end (closed by the client,
evicted by a nickname reclaim, left by the client's own disconnect) and each one is freed
by reference counting alone; and no class was made per connection (W2, compat/websocket.py).
"""

import gc
import weakref

import pytest

from chatwsgi import make_app, make_server
from chatwsgi.memory import FreezePolicy
from tests.support.chatting import TRANSPORTS, chatter, wait_until

pytestmark = pytest.mark.live


@pytest.fixture
def collector_off():
    """Only reference counting frees anything during the test."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()


def classes_named(name):
    return [thing for thing in gc.get_objects() if isinstance(thing, type) and thing.__name__ == name]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_ended_sessions_are_freed_at_once(server, address, collector_off, transport):
    mock_apps = len(classes_named("MockApp"))
    clients = [chatter(address, "g%d" % n, transport=transport) for n in range(3)]
    clients[0].call("message", {"room": "lobby", "id": "m1", "text": "hello"})
    sessions = [weakref.ref(session) for session in server.sockets.values()]
    namespaces = [weakref.ref(ns) for session in server.sockets.values() for ns in session.active_ns.values()]
    assert len(sessions) == len(namespaces) == 3
    # Ended every way: the client's close, its own disconnect, an eviction by a token reclaim.
    clients[0].close()
    clients[1].send("0::")
    thief = chatter(address, "thief", transport=transport)
    assert thief.call("nickname", {"nickname": "g2", "token": clients[2].token})["ok"]
    thief.close()
    wait_until(lambda: not server.sockets, timeout=20)
    for client in clients:
        client.close()
    wait_until(lambda: not any(ref() for ref in sessions + namespaces), timeout=10)
    assert len(classes_named("MockApp")) == mock_apps


def test_the_tender_freezes_the_heap_as_sessions_grow(server, address):
    server.freeze_policy = FreezePolicy(least=3)
    frozen = gc.get_freeze_count()
    try:
        clients = [chatter(address, "f%d" % n) for n in range(4)]
        wait_until(lambda: gc.get_freeze_count() > frozen, timeout=10)
        # Frozen sessions are still freed when they end (by reference counting).
        for client in clients:
            client.close()
        wait_until(lambda: not server.sockets, timeout=20)
    finally:
        gc.unfreeze()


class AlwaysTrim:
    def should_trim(self, sessions):
        return True


def test_a_server_told_not_to_freeze_never_freezes_the_heap():
    # A process hosting the chat opts out with freeze_heap=False: even the wave's collection
    # (which collects the frozen heap too when freezing) leaves gc.freeze alone.
    server = make_server(make_app(), port=0, freeze_heap=False)
    server.trim_policy = AlwaysTrim()
    frozen = gc.get_freeze_count()
    for now in (0.0, 1.0, 10_000.0):
        server.tend_memory(now)
    assert server.freeze_policy is None and gc.get_freeze_count() == frozen
