"""Join and leave notices in batches (presence.py), with the shipped interval (0.5 s)."""

import pytest

from tests.support.chatting import announced, chatter

pytestmark = pytest.mark.live


def arrival(client, kind, nickname):
    """When ``client`` received the notice of ``kind`` about ``nickname``."""
    notice = announced(client, kind, nickname)
    index = next(i for i, p in enumerate(client.packets) if p.get("args") == [notice])
    return client.arrived[index]


def test_a_join_to_a_quiet_room_is_told_at_once_a_busy_rooms_next_with_its_batch(address):
    watcher = chatter(address, "watcher", room="quiet")
    first = arrival(watcher, "join", "watcher")  # the room was quiet: at once
    joiners = [chatter(address, "j%d" % n, room="quiet") for n in range(3)]
    times = [arrival(watcher, "join", "j%d" % n) for n in range(3)]
    # The room was hot: the three came together, one interval after the first notice.
    assert max(times) - min(times) < 0.05, times
    assert 0.4 <= min(times) - first < 1.5, min(times) - first
    for joiner in joiners:
        joiner.close()
    watcher.close()


def test_a_member_who_joins_and_speaks_at_once_is_announced_first(address):
    watcher = chatter(address, "watcher", room="busy")
    speaker = chatter(address, "speaker", room="busy")  # its notice waits: the room is hot
    speaker.call("message", {"room": "busy", "id": "s1", "text": "hi"})
    watcher.wait_event("message", lambda args: args[0]["id"] == "s1")
    seen = [
        (p["name"], p["args"][0].get("nickname") or p["args"][0].get("text"))
        for p in watcher.packets
        if p["type"] == "event"
    ]
    assert seen == [("announce", "watcher"), ("announce", "speaker"), ("message", "hi")]
    speaker.close()
    watcher.close()
