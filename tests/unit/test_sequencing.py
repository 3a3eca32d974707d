"""sequencing.py: what a node does with each live message of a room, in plain data."""

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatwsgi.sequencing import DELIVER, GAP, SEEN, Holdback, Sequencer


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


# --- overdue: the sweep for rooms a bus left behind ----------------------------------------


def test_a_room_behind_only_what_was_just_stored_is_not_overdue():
    sequencer = Sequencer()
    sequencer.follow("lobby", "e1", 4)
    assert sequencer.overdue({"lobby": 6}) == []  # 5 and 6 may be in flight


def test_a_room_still_behind_what_a_sweep_ago_stored_is_overdue():
    sequencer = Sequencer()
    sequencer.follow("lobby", "e1", 4)
    sequencer.follow("den", "e2", 1)
    sequencer.overdue({"lobby": 6, "den": 3})
    sequencer.delivered("den", 3)  # den caught up, lobby did not
    assert sequencer.overdue({"lobby": 7, "den": 9}) == ["lobby"]
    sequencer.delivered("lobby", 7)
    assert sequencer.overdue({"lobby": 7, "den": 9}) == ["den"]


def test_a_forgotten_room_is_never_overdue():
    sequencer = Sequencer()
    sequencer.follow("lobby", "e1", 0)
    sequencer.overdue({"lobby": 5})
    sequencer.forget("lobby")
    assert sequencer.overdue({"lobby": 5}) == []


# --- Holdback: early messages held for a moment ------------------------------------------------


def test_nothing_held_means_no_wait_and_nothing_due():
    holdback = Holdback(0.05)
    assert (holdback.wait(10.0), holdback.due(10.0), holdback.take("lobby", 1)) == (None, [], [])


def test_held_messages_come_out_in_order_once_their_gap_is_filled():
    holdback = Holdback(0.05)
    holdback.hold("lobby", 9, "m9", 10.0)
    holdback.hold("lobby", 8, "m8", 10.01)
    holdback.hold("lobby", 11, "m11", 10.02)
    assert holdback.take("lobby", 7) == []  # 7 has not come: nothing moves
    assert holdback.take("lobby", 8) == ["m8", "m9"]
    assert holdback.wait(10.03) is not None  # 11 still waits for 10
    assert holdback.take("lobby", 10) == []
    assert holdback.drop("lobby") == ["m11"]
    assert holdback.wait(10.03) is None


def test_a_room_is_due_once_its_oldest_held_message_waited_the_window():
    holdback = Holdback(0.05)
    holdback.hold("lobby", 5, "m5", 10.0)
    holdback.hold("den", 3, "m3", 10.02)
    assert holdback.wait(10.01) == pytest.approx(0.04)
    assert holdback.due(10.049) == []
    assert holdback.due(10.05) == ["lobby"]
    assert holdback.due(10.07) == ["den", "lobby"]


def test_a_window_of_zero_makes_every_hold_due_at_once():
    holdback = Holdback(0.0)
    holdback.hold("lobby", 5, "m5", 10.0)
    assert (holdback.wait(10.0), holdback.due(10.0)) == (0.0, ["lobby"])


@given(st.permutations(range(1, 30)), st.integers(0, 2**32))
def test_any_arrival_order_delivers_each_message_once_in_order(order, seed):
    """A node's loop over a reordering bus: deliver in turn, hold what is early, and when
    a hold is due fetch the gap from the store (here: every seq is there)."""
    sequencer, holdback, delivered = Sequencer(), Holdback(0.05), []
    sequencer.follow("lobby", "e1", 0)
    clock = random.Random(seed)

    def deliver(seq):
        sequencer.delivered("lobby", seq)
        delivered.append(seq)

    def release_due(now):
        for _room in holdback.due(now):
            for seq in holdback.drop("lobby"):
                if sequencer.offer("lobby", seq) is not SEEN:
                    for missing in range(sequencer.position("lobby")[1] + 1, seq):
                        deliver(missing)  # fetched from the store
                    deliver(seq)

    now = 0.0
    for seq in order:
        now += clock.choice((0.0, 0.001, 0.03, 0.2))
        release_due(now)
        verdict = sequencer.offer("lobby", seq)
        if verdict is GAP:
            holdback.hold("lobby", seq, seq, now)
        elif verdict is DELIVER:
            deliver(seq)
            for held in holdback.take("lobby", seq + 1):
                deliver(held)
    release_due(now + 1.0)
    assert delivered == list(range(1, 30))
