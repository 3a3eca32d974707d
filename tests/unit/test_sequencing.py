"""sequencing.py: what a node does with each live message of a room, in plain data."""

from chatwsgi.sequencing import DELIVER, GAP, SEEN, Sequencer


def test_an_unfollowed_room_is_followed_from_its_first_message():
    sequencer = Sequencer()
    assert sequencer.offer("lobby", 7) is DELIVER
    sequencer.delivered("lobby", 7)
    assert sequencer.position("lobby") == (None, 7)
    assert sequencer.offer("lobby", 8) is DELIVER


def test_repeats_are_seen_and_a_jump_is_a_gap():
    sequencer = Sequencer()
    sequencer.follow("lobby", "e1", 4)
    assert [sequencer.offer("lobby", seq) for seq in (3, 4, 5, 6, 9)] == [SEEN, SEEN, DELIVER, GAP, GAP]


def test_follow_keeps_a_room_already_followed():
    sequencer = Sequencer()
    sequencer.follow("lobby", "e1", 4)
    sequencer.delivered("lobby", 5)
    sequencer.follow("lobby", "e1", 3)  # a later history read that raced with a delivery
    assert sequencer.position("lobby") == ("e1", 5)


def test_delivered_keeps_or_learns_the_epoch():
    sequencer = Sequencer()
    sequencer.follow("lobby", "e1", 0)
    sequencer.delivered("lobby", 1)
    assert sequencer.position("lobby") == ("e1", 1)
    sequencer.delivered("garden", 3, "e2")
    assert sequencer.position("garden") == ("e2", 3)


def test_restart_follows_a_new_history_from_its_start():
    sequencer = Sequencer()
    sequencer.follow("lobby", "e1", 40)
    sequencer.restart("lobby", "e2")
    assert sequencer.position("lobby") == ("e2", 0)
    assert sequencer.offer("lobby", 1) is DELIVER


def test_forget_and_rooms():
    sequencer = Sequencer()
    for room in ("b", "a"):
        sequencer.follow(room, "e", 0)
    assert sequencer.rooms() == ["a", "b"]
    sequencer.forget("a")
    sequencer.forget("unknown")
    assert sequencer.rooms() == ["b"] and sequencer.position("a") is None
