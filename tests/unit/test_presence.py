"""presence.py and ChatService's batched join and leave notices, with a scheduler that
records its calls (run by hand: the test is the clock)."""

import pytest

from chatwsgi.errors import ChatError
from chatwsgi.presence import PresenceBatches
from tests.unit.test_service import Client, announce, make_service


def test_a_quiet_room_sends_at_once_and_a_hot_one_waits_for_its_tick():
    batches = PresenceBatches()
    assert batches.offer("a", "j1") == ["j1"]  # quiet: at once, the room is hot now
    assert batches.offer("a", "j2") == [] and batches.offer("a", "j3") == []
    assert batches.offer("b", "k1") == ["k1"]  # rooms are independent
    assert batches.tick("a") == ["j2", "j3"]  # one batch; still hot for another interval
    assert batches.tick("a") == []  # an interval with nothing: quiet again
    assert len(batches) == 1 and batches.offer("a", "j4") == ["j4"]


def test_take_hands_over_what_waits_and_keeps_the_room_hot():
    batches = PresenceBatches()
    assert batches.take("a") == []
    batches.offer("a", "j1")
    batches.offer("a", "j2")
    assert batches.take("a") == ["j2"]
    assert batches.take("a") == [] and batches.offer("a", "j3") == []
    assert batches.tick("a") == ["j3"]


class Scheduler:
    """Records ``schedule(seconds, function)`` calls; ``run()`` calls the due ones."""

    def __init__(self):
        self.calls = []

    def __call__(self, seconds, function):
        self.calls.append((seconds, function))

    def run(self):
        calls, self.calls = self.calls, []
        for _, function in calls:
            function()
        return len(calls)


@pytest.fixture
def scheduled():
    scheduler = Scheduler()
    return scheduler, make_service(schedule=scheduler, presence_interval=0.5)


def test_joins_to_a_busy_room_reach_its_members_in_one_batch(scheduled):
    scheduler, service = scheduled
    watcher = Client(service, "w", "watcher", "lobby")
    assert watcher.events() == [announce("lobby", "join", "watcher", 1)]  # at once
    assert [seconds for seconds, _ in scheduler.calls] == [0.5]
    for n in range(2, 5):
        Client(service, "m%d" % n, "m%d" % n, "lobby")
    assert watcher.events() == []  # they wait for the room's tick
    assert scheduler.run() == 1
    expected = [announce("lobby", "join", "m%d" % n, n) for n in range(2, 5)]
    assert watcher.events() == expected
    assert scheduler.run() == 1  # the next interval had nothing: the room is quiet again
    assert scheduler.calls == [] and len(service.presence) == 0


def test_a_member_who_joins_and_speaks_is_announced_before_the_message(scheduled):
    scheduler, service = scheduled
    watcher = Client(service, "w", "watcher", "lobby")
    speaker = Client(service, "s", "speaker", "lobby")
    watcher.events()
    service.message(speaker.member, {"room": " Lobby ", "id": "m1", "text": "hi"})
    names = [(name, body.get("kind") or body.get("text")) for name, body in watcher.events()]
    assert names == [("announce", "join"), ("message", "hi")]


def test_typing_and_renames_go_after_the_waiting_notices(scheduled):
    scheduler, service = scheduled
    watcher = Client(service, "w", "watcher", "lobby")
    typist = Client(service, "t", "typist", "lobby")
    watcher.events()
    service.typing(typist.member, {"room": "lobby"})
    service.nickname(typist.member, {"nickname": "typist2"})
    kinds = [body.get("kind", name) for name, body in watcher.events()]
    assert kinds == ["join", "typing", "rename"]


def test_leaves_are_batched_too(scheduled):
    scheduler, service = scheduled
    watcher = Client(service, "w", "watcher", "lobby")
    others = [Client(service, "m%d" % n, "m%d" % n, "lobby") for n in range(3)]
    while scheduler.run():  # the joins' batch, then a quiet interval
        pass
    watcher.events()
    for other in others:
        service.disconnect(other.member)
    assert [body["kind"] for _, body in watcher.events()] == ["leave"]  # the room had cooled
    scheduler.run()
    assert [body["nickname"] for _, body in watcher.events()] == ["m1", "m2"]


def test_a_failing_publish_never_leaves_the_room_hot_for_ever(scheduled):
    scheduler, service = scheduled
    watcher = Client(service, "w", "watcher", "lobby")
    Client(service, "m", "m", "lobby")
    publish = service.backplane.publish

    def down(*args):
        raise ChatError("unavailable", "down")

    service.backplane.publish = down
    scheduler.run()  # the tick fails: logged, its notices dropped
    service.backplane.publish = publish
    assert len(service.presence) == 0
    watcher.events()
    Client(service, "n", "n", "lobby")
    assert [body["nickname"] for _, body in watcher.events()] == ["n"]  # at once, as a quiet room


def test_without_a_scheduler_every_notice_goes_at_once():
    service = make_service()
    watcher = Client(service, "w", "watcher", "lobby")
    Client(service, "m", "m", "lobby")
    assert [body["nickname"] for _, body in watcher.events()] == ["watcher", "m"]
    assert service.presence is None
