"""chat.py: nicknames, rooms, history, sequence numbers, idempotent ids, catch-up."""

import itertools

import pytest

from chatwsgi.backplane import LocalBackplane
from chatwsgi.chat import (
    Chat,
    clean_limit,
    clean_message_id,
    clean_nickname,
    clean_room_name,
    clean_sequence,
    clean_text,
)
from chatwsgi.errors import ChatError
from chatwsgi.rooms import DEFAULT_ROOM, CatchUp, Message, Retention, Room


def kept(count):
    """Retention of ``count`` messages, shown and kept alike: none kept for catch-up alone."""
    return Retention(shown=count, seconds=0, most=count)


def make_chat(**settings):
    """A Chat with a fixed clock and predictable tokens tok1, tok2, ..."""
    counter = itertools.count(1)
    settings.setdefault("clock", lambda: 1000.0)
    settings.setdefault("new_token", lambda: "tok%d" % next(counter))
    settings.setdefault("new_epoch", lambda: "")
    return Chat(**settings)


def with_member(chat, member, nickname, *rooms):
    chat.connect(member)
    chat.set_nickname(member, nickname)
    for room in rooms:
        chat.join(member, room)
    return chat


def refused(code, function, *args, **kwargs):
    with pytest.raises(ChatError) as info:
        function(*args, **kwargs)
    assert info.value.code == code
    return info.value


# --- nicknames -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("alice", "alice"),
        ("  alice \t\n", "alice"),
        ("a", "a"),
        ("x" * 32, "x" * 32),
        ("  " + "y" * 32 + "  ", "y" * 32),
        ("Zoë 🎉", "Zoë 🎉"),
        ("two words", "two words"),
    ],
)
def test_clean_nickname_accepts_and_trims(raw, expected):
    assert clean_nickname(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "x" * 33,
        "a\x00b",
        "a\x07",
        "tab\there",
        "line\nbreak",
        "\x1b[31mred",
        "zero\u200bwidth",
        "\u200b",
        "rtl\u202eoverride",
        "nb\u00a0space",
        "del\x7f",
        None,
        42,
        b"bytes",
    ],
)
def test_clean_nickname_refuses_bad_nicknames(raw):
    error = refused("bad_nickname", clean_nickname, raw)
    assert error.as_dict()["code"] == "bad_nickname"


def test_set_nickname_returns_the_clean_nickname_and_a_token():
    chat = make_chat()
    chat.connect("m1")
    change = chat.set_nickname("m1", "  alice  ")
    assert (change.nickname, change.token, change.previous) == ("alice", "tok1", "")
    assert (change.evicted, change.evicted_rooms) == (None, ())
    assert chat.nickname_of("m1") == "alice"


def test_nickname_of_before_a_nickname_is_no_nickname():
    chat = make_chat()
    chat.connect("m1")
    refused("no_nickname", chat.nickname_of, "m1")
    refused("no_nickname", chat.nickname_of, "never-connected")


def test_bad_nickname_leaves_the_old_one_in_place():
    chat = with_member(make_chat(), "m1", "alice")
    refused("bad_nickname", chat.set_nickname, "m1", "bad\nname")
    assert chat.nickname_of("m1") == "alice"


@pytest.mark.parametrize("other", ["alice", "ALICE", "Alice", "  aLiCe  "])
def test_nicknames_are_unique_case_insensitively(other):
    chat = with_member(make_chat(), "m1", "alice")
    chat.connect("m2")
    error = refused("nickname_taken", chat.set_nickname, "m2", other)
    assert "taken" in error.message
    assert chat.nickname_of("m1") == "alice"
    refused("no_nickname", chat.nickname_of, "m2")


def test_casefold_uniqueness_covers_non_ascii():
    chat = with_member(make_chat(), "m1", "Straße")
    chat.connect("m2")
    refused("nickname_taken", chat.set_nickname, "m2", "STRASSE")


def test_wrong_or_missing_token_does_not_reclaim():
    chat = with_member(make_chat(), "m1", "alice")
    chat.connect("m2")
    refused("nickname_taken", chat.set_nickname, "m2", "alice", "wrong")
    refused("nickname_taken", chat.set_nickname, "m2", "alice", "")
    refused("nickname_taken", chat.set_nickname, "m2", "alice", None)
    assert chat.nickname_of("m1") == "alice"
    assert "m1" in chat.members


def test_reclaim_with_the_token_evicts_the_old_member_and_keeps_the_token():
    chat = with_member(make_chat(), "old", "alice", "lobby", "dev")
    token = chat.members["old"].token
    assert token == "tok1"
    chat.connect("new")
    change = chat.set_nickname("new", "ALICE", token)
    assert change.nickname == "ALICE"
    assert change.token == "tok1"
    assert change.previous == ""
    assert change.evicted == "old"
    assert change.evicted_rooms == ("dev", "lobby")
    assert "old" not in chat.members
    assert chat.nickname_of("new") == "ALICE"
    assert chat.roster("lobby") == []
    assert chat.roster("dev") == []
    # The reclaimed nickname belongs to the new member: a third one cannot take it.
    chat.connect("third")
    refused("nickname_taken", chat.set_nickname, "third", "alice")
    # And the kept token still works for the next reconnection.
    again = chat.set_nickname("third", "alice", "tok1")
    assert (again.evicted, again.token) == ("new", "tok1")


def test_setting_the_same_nickname_again_keeps_the_token():
    chat = with_member(make_chat(), "m1", "alice")
    change = chat.set_nickname("m1", "Alice")
    assert (change.nickname, change.token, change.previous) == ("Alice", "tok1", "alice")
    assert change.evicted is None


def test_rename_frees_the_old_nickname_and_gets_a_new_token():
    chat = with_member(make_chat(), "m1", "alice", "lobby")
    change = chat.set_nickname("m1", "bob")
    assert (change.nickname, change.token, change.previous) == ("bob", "tok2", "alice")
    assert chat.roster("lobby") == ["bob"]
    chat.connect("m2")
    taken = chat.set_nickname("m2", "alice")
    assert (taken.nickname, taken.evicted) == ("alice", None)
    assert chat.nickname_of("m2") == "alice"
    refused("nickname_taken", chat.set_nickname, "m2", "BOB")


def test_disconnect_frees_the_nickname_and_leaves_rooms():
    chat = with_member(make_chat(), "m1", "alice", "lobby", "dev")
    with_member(chat, "m2", "bob", "dev")
    assert chat.disconnect("m1") == ("alice", ["dev", "lobby"])
    assert "m1" not in chat.members
    assert chat.roster("dev") == ["bob"]
    assert chat.roster("lobby") == []
    chat.connect("m3")
    assert chat.set_nickname("m3", "alice").evicted is None


def test_disconnect_of_an_unknown_member_is_harmless():
    chat = make_chat()
    assert chat.disconnect("nobody") == ("", [])
    chat.connect("m1")
    assert chat.disconnect("m1") == ("", [])


def test_disconnect_of_an_evicted_member_does_not_free_the_reclaimed_nickname():
    chat = with_member(make_chat(), "old", "alice")
    chat.connect("new")
    chat.set_nickname("new", "alice", "tok1")
    assert chat.disconnect("old") == ("", [])
    chat.connect("third")
    refused("nickname_taken", chat.set_nickname, "third", "alice")


# --- rooms -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("lobby", "lobby"),
        ("  Dev-Team_2 ", "dev-team_2"),
        ("0", "0"),
        ("a" * 32, "a" * 32),
    ],
)
def test_clean_room_name_folds(raw, expected):
    assert clean_room_name(raw) == expected


@pytest.mark.parametrize(
    "raw",
    ["", "   ", "a" * 33, "-dash", "_under", "with space", "émoji", "a/b", "a.b", "room\n\nx", None, 7],
)
def test_clean_room_name_refuses(raw):
    refused("bad_room", clean_room_name, raw)


def test_lobby_exists_from_the_start():
    chat = make_chat()
    assert DEFAULT_ROOM == "lobby"
    assert list(chat.backplane.rooms) == ["lobby"]
    assert chat.room_list() == [{"name": "lobby", "count": 0}]


def test_join_needs_a_nickname_and_a_good_room_name():
    chat = make_chat()
    chat.connect("m1")
    refused("no_nickname", chat.join, "m1", "lobby")
    chat.set_nickname("m1", "alice")
    refused("bad_room", chat.join, "m1", "no spaces")
    assert chat.members["m1"].rooms == set()


def test_join_and_leave():
    chat = with_member(make_chat(), "m1", "alice")
    history, newly = chat.join("m1", " Dev ")
    assert history == CatchUp("dev", (), True)
    assert newly is True
    assert chat.members["m1"].rooms == {"dev"}
    assert chat.roster("dev") == ["alice"]
    _, again = chat.join("m1", "dev")
    assert again is False
    assert chat.leave("m1", "DEV") == "dev"
    assert chat.members["m1"].rooms == set()
    assert chat.roster("dev") == []
    refused("not_in_room", chat.leave, "m1", "dev")


def test_leave_and_post_need_membership():
    chat = with_member(make_chat(), "m1", "alice")
    refused("not_in_room", chat.leave, "m1", "lobby")
    refused("not_in_room", chat.post, "m1", "lobby", "id1", "hi")
    refused("not_in_room", chat.catch_up, "m1", "lobby", 0)
    refused("not_in_room", chat.typing, "m1", "lobby")
    refused("bad_room", chat.leave, "m1", "??")


def test_typing_returns_room_and_nickname():
    chat = with_member(make_chat(), "m1", "alice", "Dev")
    assert chat.typing("m1", "DEV") == ("dev", "alice")


def test_roster_is_sorted_case_insensitively_and_unknown_room_is_empty():
    chat = make_chat()
    for member, nickname in [("m1", "carol"), ("m2", "Bob"), ("m3", "alice")]:
        with_member(chat, member, nickname, "lobby")
    assert chat.roster("lobby") == ["alice", "Bob", "carol"]
    assert chat.roster("nowhere") == []


def test_room_list_counts_members_and_hides_empty_rooms_but_the_lobby():
    chat = with_member(make_chat(), "m1", "alice", "dev", "ops")
    with_member(chat, "m2", "bob", "dev")
    assert chat.room_list() == [
        {"name": "dev", "count": 2},
        {"name": "lobby", "count": 0},
        {"name": "ops", "count": 1},
    ]
    chat.leave("m1", "ops")
    assert chat.room_list() == [{"name": "dev", "count": 2}, {"name": "lobby", "count": 0}]


def test_max_rooms_per_member():
    chat = with_member(make_chat(max_rooms_per_member=2), "m1", "alice", "a", "b")
    refused("too_many_rooms", chat.join, "m1", "c")
    assert chat.members["m1"].rooms == {"a", "b"}
    assert "c" not in chat.backplane.rooms
    # Re-joining a room already joined is fine, and leaving makes space.
    assert chat.join("m1", "a")[1] is False
    chat.leave("m1", "a")
    assert chat.join("m1", "c")[1] is True
    assert chat.members["m1"].rooms == {"b", "c"}


def test_a_member_opens_at_most_three_rooms_nobody_else_is_in():
    chat = with_member(make_chat(), "m1", "alice", "lobby", "a", "b", "c")
    error = refused("too_many_rooms", chat.join, "m1", "d")
    assert "a, b, c" in error.message
    # Rooms others are in do not count, and company frees an allowance.
    with_member(chat, "m2", "bob", "busy", "a")
    assert chat.join("m1", "busy")[1] is True
    assert chat.join("m1", "d")[1] is True
    refused("too_many_rooms", chat.join, "m1", "e")


def test_a_hundred_sessions_cannot_take_every_room():
    # Ten rooms each used to fill the 1,000-room cap with 100 connections.
    chat = make_chat()
    for n in range(100):
        with_member(chat, "m%d" % n, "user%d" % n)
        for r in range(10):
            try:
                chat.join("m%d" % n, "u%d-r%d" % (n, r))
            except ChatError as refusal:
                assert refusal.code == "too_many_rooms"
    assert len(chat.backplane.rooms) == 1 + 100 * 3
    with_member(chat, "late", "latecomer", "a-new-room")


def test_max_rooms_drops_an_empty_room_to_make_space():
    chat = with_member(make_chat(max_rooms=3), "m1", "alice", "a", "b")
    assert sorted(chat.backplane.rooms) == ["a", "b", "lobby"]
    chat.leave("m1", "a")
    chat.join("m1", "c")
    assert sorted(chat.backplane.rooms) == ["b", "c", "lobby"]


def test_max_rooms_never_drops_the_lobby_or_occupied_rooms():
    chat = with_member(make_chat(max_rooms=3), "m1", "alice", "a", "b")
    refused("too_many_rooms", chat.join, "m1", "c")
    assert sorted(chat.backplane.rooms) == ["a", "b", "lobby"]
    assert chat.members["m1"].rooms == {"a", "b"}
    # Only the lobby is empty: still refused.
    chat.join("m1", "lobby")
    chat.leave("m1", "lobby")
    refused("too_many_rooms", chat.join, "m1", "c")
    assert sorted(chat.backplane.rooms) == ["a", "b", "lobby"]


def test_a_dropped_room_starts_over():
    chat = with_member(make_chat(max_rooms=2), "m1", "alice", "a")
    chat.post("m1", "a", "x", "hello")
    chat.leave("m1", "a")
    chat.join("m1", "b")
    assert sorted(chat.backplane.rooms) == ["b", "lobby"]
    chat.leave("m1", "b")
    history, _ = chat.join("m1", "a")
    assert history == CatchUp("a", (), True)
    assert chat.backplane.rooms["a"].last_seq == 0


def test_join_with_a_bad_after_changes_nothing():
    chat = with_member(make_chat(), "m1", "alice")
    refused("bad_sequence", chat.join, "m1", "dev", "x")
    assert chat.members["m1"].rooms == set()
    assert chat.roster("dev") == []


# --- messages, sequence numbers, history ------------------------------------------------------


def test_post_returns_the_message_with_injected_clock():
    times = iter([10.5, 11.25])
    chat = with_member(make_chat(clock=lambda: next(times)), "m1", "alice", "lobby")
    message, created = chat.post("m1", "LOBBY", "m-1", "hello 🎉")
    assert created is True
    assert message == Message("lobby", 1, "m-1", "alice", "hello 🎉", 10.5)
    assert message.as_dict() == {
        "room": "lobby",
        "seq": 1,
        "id": "m-1",
        "author": "alice",
        "text": "hello 🎉",
        "ts": 10.5,
    }
    second, _ = chat.post("m1", "lobby", "m-2", "again")
    assert (second.seq, second.ts) == (2, 11.25)


def test_sequence_numbers_are_per_room():
    chat = with_member(make_chat(), "m1", "alice", "a", "b")
    seqs = [chat.post("m1", room, "id%d" % n, "t")[0].seq for n, room in enumerate("aabab")]
    assert seqs == [1, 2, 1, 3, 2]
    assert (chat.backplane.rooms["a"].last_seq, chat.backplane.rooms["b"].last_seq) == (3, 2)
    assert chat.backplane.rooms["lobby"].last_seq == 0


def test_a_join_shows_the_last_history_size_messages_and_catch_up_keeps_more():
    chat = with_member(make_chat(history_size=3), "m1", "alice", "lobby")
    for n in range(1, 6):
        chat.post("m1", "lobby", "id%d" % n, "text %d" % n)
    recent, _ = chat.join("m1", "lobby")
    assert [m.seq for m in recent.messages] == [3, 4, 5]
    assert [m.text for m in recent.messages] == ["text 3", "text 4", "text 5"]
    assert recent.complete is True
    assert [m.seq for m in chat.catch_up("m1", "lobby", 0).messages] == [1, 2, 3, 4, 5]


def test_retention_keeps_at_most_its_most():
    retention = Retention(shown=2, seconds=0, most=3)
    chat = with_member(make_chat(retention=retention), "m1", "alice", "lobby")
    posted(chat, 5)
    assert [m.seq for m in chat.backplane.rooms["lobby"].history] == [3, 4, 5]
    assert [m.seq for m in chat.join("m1", "lobby")[0].messages] == [4, 5]


def test_retention_drops_messages_older_than_its_seconds_but_keeps_those_shown():
    now = [1000.0]
    retention = Retention(shown=2, seconds=60, most=100)
    chat = with_member(make_chat(clock=lambda: now[0], retention=retention), "m1", "alice", "lobby")
    posted(chat, 4)  # at 1000
    now[0] = 1061.0
    chat.post("m1", "lobby", "late1", "x")
    assert [m.seq for m in chat.backplane.rooms["lobby"].history] == [4, 5]  # 1-3 aged out
    now[0] = 1200.0
    chat.post("m1", "lobby", "late2", "x")
    assert [m.seq for m in chat.backplane.rooms["lobby"].history] == [5, 6]  # shown stay


def test_retention_checks_its_numbers():
    for bad in [dict(shown=-1), dict(shown=5, most=4), dict(seconds=-1)]:
        with pytest.raises(ValueError):
            Retention(**bad)


def test_catch_up_comes_in_pages():
    chat = with_member(make_chat(), "m1", "alice", "lobby")
    messages = posted(chat, 7)
    room = chat.backplane.rooms["lobby"]
    first = room.after(0, limit=3)
    assert (first.messages, first.complete, first.more) == (tuple(messages[:3]), True, True)
    second = room.after(3, limit=3)
    assert (second.messages, second.more) == (tuple(messages[3:6]), True)
    last = room.after(6, limit=3)
    assert (last.messages, last.complete, last.more) == ((messages[6],), True, False)
    assert room.after(4, limit=3).messages == tuple(messages[4:7])
    assert room.after(4, limit=3).more is False


def test_a_default_catch_up_page_is_500_messages():
    chat = with_member(make_chat(), "m1", "alice", "lobby")
    chat.backplane.rooms["lobby"].retention = Retention(shown=15, seconds=120, most=1000)
    for n in range(501):
        chat.post("m1", "lobby", "id%d" % n, "x")
    page = chat.catch_up("m1", "lobby", 0)
    assert (len(page.messages), page.more) == (500, True)
    assert chat.catch_up("m1", "lobby", 1).more is False


def test_same_author_and_id_is_stored_once():
    chat = with_member(make_chat(), "m1", "alice", "lobby")
    first, created = chat.post("m1", "lobby", "abc", "hello")
    chat.post("m1", "lobby", "other", "between")
    again, created_again = chat.post("m1", "lobby", "abc", "hello, edited")
    assert (created, created_again) == (True, False)
    assert (again.seq, again.id) == (first.seq, first.id) == (1, "abc")
    assert [m.id for m in chat.backplane.rooms["lobby"].history] == ["abc", "other"]
    assert chat.backplane.rooms["lobby"].last_seq == 2


def test_retry_after_a_reconnect_with_the_same_nickname_is_still_a_duplicate():
    chat = with_member(make_chat(), "m1", "alice", "lobby")
    chat.post("m1", "lobby", "abc", "hello")
    chat.disconnect("m1")
    with_member(chat, "m2", "ALICE", "lobby")
    message, created = chat.post("m2", "lobby", "abc", "hello")
    assert (created, message.seq, message.id) == (False, 1, "abc")


def test_another_author_may_reuse_an_id():
    chat = with_member(make_chat(), "m1", "alice", "lobby")
    with_member(chat, "m2", "bob", "lobby")
    a, created_a = chat.post("m1", "lobby", "1", "from alice")
    b, created_b = chat.post("m2", "lobby", "1", "from bob")
    assert (created_a, created_b) == (True, True)
    assert (a.seq, a.author, b.seq, b.author) == (1, "alice", 2, "bob")


def test_the_same_id_in_another_room_is_a_new_message():
    chat = with_member(make_chat(), "m1", "alice", "a", "b")
    assert chat.post("m1", "a", "1", "x")[1] is True
    assert chat.post("m1", "b", "1", "x")[1] is True


def test_room_forgets_ids_beyond_remembered_ids():
    room = Room("r", kept(2), remembered_ids=2)
    for message_id in ["a", "b", "c"]:
        room.post("alice", message_id, "t", 0.0)
    assert room.post("alice", "c", "t", 0.0)[1] is False
    message, created = room.post("alice", "a", "t", 0.0)
    assert (created, message.seq) == (True, 4)


def test_the_id_window_keeps_sequence_numbers_not_messages():
    room = Room("r", kept(2), remembered_ids=1000)
    for n in range(1000):
        room.post("alice", "m%d" % n, "x" * 2000, 0.0)
    # 2 messages of 2,000 characters in history; the 1,000 remembered ids hold none.
    assert len(room.history) == 2
    assert all(isinstance(seq, int) for seq in room._stored_ids.values())
    message, created = room.post("alice", "m10", "retried", 0.0)
    assert (created, message.seq) == (False, 11)


@pytest.mark.parametrize("max_chars", [1, 5, 2000])
def test_text_exactly_max_chars_is_accepted_and_one_more_is_too_long(max_chars):
    chat = with_member(make_chat(max_chars=max_chars), "m1", "alice", "lobby")
    message, _ = chat.post("m1", "lobby", "ok", "x" * max_chars)
    assert message.text == "x" * max_chars
    error = refused("too_long", chat.post, "m1", "lobby", "long", "x" * (max_chars + 1))
    assert str(max_chars) in error.message
    assert chat.backplane.rooms["lobby"].last_seq == 1


def test_text_length_counts_characters_not_bytes():
    assert clean_text("🎉" * 3, 3) == "🎉" * 3
    refused("too_long", clean_text, "🎉" * 4, 3)


def test_text_is_kept_as_sent():
    assert clean_text("  padded\nlines  ", 100) == "  padded\nlines  "


@pytest.mark.parametrize("text", ["", " ", "\n\t  ", None, 5, ["hi"]])
def test_empty_or_non_text_message_is_refused(text):
    chat = with_member(make_chat(), "m1", "alice", "lobby")
    refused("empty_message", chat.post, "m1", "lobby", "id", text)
    assert chat.backplane.rooms["lobby"].last_seq == 0


@pytest.mark.parametrize("message_id", ["a", "A-z_0.9:x", "x" * 64, "2024-01-01T00:00:00.1"])
def test_good_message_ids(message_id):
    assert clean_message_id(message_id) == message_id


@pytest.mark.parametrize(
    "message_id",
    ["", "x" * 65, "has space", "slash/", "é", "new\nline", "abc\n", "\nabc", None, 12, ["a"]],
)
def test_bad_message_ids(message_id):
    chat = with_member(make_chat(), "m1", "alice", "lobby")
    refused("bad_id", chat.post, "m1", "lobby", message_id, "hello")
    assert chat.backplane.rooms["lobby"].last_seq == 0


def test_post_needs_a_nickname():
    chat = make_chat()
    chat.connect("m1")
    refused("no_nickname", chat.post, "m1", "lobby", "id", "hi")


# --- catch-up ----------------------------------------------------------------------------------


def posted(chat, count, room="lobby", member="m1"):
    return [chat.post(member, room, "id%d" % n, "text %d" % n)[0] for n in range(1, count + 1)]


def test_clean_sequence():
    assert clean_sequence(0) == 0
    assert clean_sequence(17) == 17
    assert clean_sequence(2**53 - 1) == 2**53 - 1
    for bad in [-1, 1.0, "3", None, True, False, 2**53, 10**30]:
        refused("bad_sequence", clean_sequence, bad)


def test_catch_up_after_zero_with_full_history():
    chat = with_member(make_chat(history_size=5), "m1", "alice", "lobby")
    messages = posted(chat, 3)
    assert chat.catch_up("m1", "lobby", 0) == CatchUp("lobby", tuple(messages), True)


def test_catch_up_after_zero_on_an_empty_room_is_complete():
    chat = with_member(make_chat(), "m1", "alice", "lobby")
    assert chat.catch_up("m1", "lobby", 0) == CatchUp("lobby", (), True)


def test_catch_up_from_the_middle():
    chat = with_member(make_chat(history_size=5), "m1", "alice", "lobby")
    messages = posted(chat, 4)
    result = chat.catch_up("m1", "lobby", 2)
    assert [m.seq for m in result.messages] == [3, 4]
    assert result == CatchUp("lobby", tuple(messages[2:]), True)


def test_catch_up_up_to_date_is_empty_and_complete():
    chat = with_member(make_chat(history_size=5), "m1", "alice", "lobby")
    posted(chat, 4)
    assert chat.catch_up("m1", "lobby", 4) == CatchUp("lobby", (), True)


def test_catch_up_just_before_the_oldest_kept_message_is_complete():
    chat = with_member(make_chat(retention=kept(3)), "m1", "alice", "lobby")
    messages = posted(chat, 5)
    result = chat.catch_up("m1", "lobby", 2)
    assert result == CatchUp("lobby", tuple(messages[2:]), True)


def test_catch_up_older_than_history_is_incomplete():
    chat = with_member(make_chat(retention=kept(3)), "m1", "alice", "lobby")
    messages = posted(chat, 5)
    for after in (0, 1):
        result = chat.catch_up("m1", "lobby", after)
        assert [m.seq for m in result.messages] == [3, 4, 5]
        assert result == CatchUp("lobby", tuple(messages[2:]), False)


def test_catch_up_beyond_last_seq_means_a_restart_and_sends_the_recent_messages():
    chat = with_member(make_chat(history_size=2), "m1", "alice", "lobby")
    messages = posted(chat, 3)
    result = chat.catch_up("m1", "lobby", 40)
    assert result == CatchUp("lobby", tuple(messages[1:]), False)
    empty = with_member(make_chat(), "m2", "bob", "lobby")
    assert empty.catch_up("m2", "lobby", 1) == CatchUp("lobby", (), False)


def test_join_with_after_gives_a_catch_up_and_without_gives_recent():
    chat = with_member(make_chat(history_size=3, retention=kept(3)), "m1", "alice", "lobby")
    messages = posted(chat, 5)
    with_member(chat, "m2", "bob")
    joined, newly = chat.join("m2", "lobby", after=4)
    assert (joined, newly) == (CatchUp("lobby", (messages[4],), True), True)
    recent, _ = chat.join("m2", "lobby")
    assert recent == CatchUp("lobby", tuple(messages[2:]), True)
    older, _ = chat.join("m2", "lobby", after=0)
    assert older.complete is False


def test_catch_up_refuses_a_bad_after():
    chat = with_member(make_chat(), "m1", "alice", "lobby")
    refused("bad_sequence", chat.catch_up, "m1", "lobby", -1)
    refused("bad_sequence", chat.catch_up, "m1", "lobby", "0")


def test_catch_up_as_dict():
    chat = with_member(make_chat(clock=lambda: 5.0), "m1", "alice", "lobby")
    posted(chat, 1)
    assert chat.catch_up("m1", "lobby", 0).as_dict() == {
        "room": "lobby",
        "messages": [
            {"room": "lobby", "seq": 1, "id": "id1", "author": "alice", "text": "text 1", "ts": 5.0}
        ],
        "complete": True,
        "epoch": "",
        "more": False,
    }


def test_catch_up_in_another_epoch_sends_everything_as_incomplete():
    epochs = iter(["e1", "e2"])
    chat = with_member(make_chat(new_epoch=lambda: next(epochs)), "m1", "alice", "lobby")
    for n in range(3):
        chat.post("m1", "lobby", "id%d" % n, "text %d" % n)
    same = chat.catch_up("m1", "lobby", 1, epoch="e1")
    assert ([m.seq for m in same.messages], same.complete, same.epoch) == ([2, 3], True, "e1")
    other = chat.catch_up("m1", "lobby", 1, epoch="a restarted server's")
    assert ([m.seq for m in other.messages], other.complete) == ([1, 2, 3], False)
    assert chat.catch_up("m1", "lobby", 1).complete is True  # no epoch: trust the number


def test_each_room_gets_its_own_epoch():
    epochs = iter(["e1", "e2", "e3"])
    chat = with_member(make_chat(new_epoch=lambda: next(epochs)), "m1", "alice", "lobby", "garden")
    assert chat.catch_up("m1", "lobby", 0).epoch == "e1"
    assert chat.catch_up("m1", "garden", 0).epoch == "e2"


def test_a_bad_epoch_is_refused_before_joining():
    chat = with_member(make_chat(), "m1", "alice")
    refused("bad_epoch", chat.join, "m1", "garden", 0, 12)
    refused("bad_epoch", chat.join, "m1", "garden", 0, "x" * 65)
    assert chat.members["m1"].rooms == set()


# --- restore (a backplane that lost its state) ------------------------------------------------


def test_restore_claims_every_nickname_and_room_again():
    chat = with_member(make_chat(), "m1", "alice", "lobby", "dev")
    with_member(chat, "m2", "bob", "dev")
    token = chat.members["m1"].token
    chat.backplane = LocalBackplane(new_epoch=lambda: "")  # as a Redis restarted empty
    assert chat.restore() == []
    assert chat.roster("dev") == ["alice", "bob"] and chat.roster("lobby") == ["alice"]
    chat.connect("m3")
    refused("nickname_taken", chat.set_nickname, "m3", "ALICE")
    assert chat.set_nickname("m3", "alice", token).evicted == "m1"  # the same token still reclaims


def test_restore_returns_members_whose_nickname_someone_else_took_meanwhile():
    chat = with_member(make_chat(), "m1", "alice", "lobby")
    chat.backplane = LocalBackplane(new_epoch=lambda: "")
    chat.backplane.claim("alice", "elsewhere", None, lambda: "other-token")
    assert chat.restore() == ["m1"]
    assert chat.roster("lobby") == []


@pytest.mark.parametrize("token", [True, 7, ["tok1"], {"t": 1}, "x" * 65])
def test_a_token_that_is_not_the_text_sent_is_refused_before_the_backplane(token):
    chat = with_member(make_chat(), "m1", "alice")
    chat.connect("m2")
    refused("bad_request", chat.set_nickname, "m2", "alice", token)
    refused("bad_request", chat.set_nickname, "m2", "bob", token)
    assert chat.members["m2"].nickname == ""


def test_older_history_comes_newest_last_with_complete_at_the_start():
    chat = with_member(make_chat(retention=Retention(shown=3, seconds=0, most=6)), "m1", "alice", "lobby")
    posted(chat, 8)  # 3-8 kept
    page = chat.older("m1", "lobby", 7, 2)
    assert ([m.seq for m in page.messages], page.complete) == ([5, 6], False)
    page = chat.older("m1", "lobby", 5, 10)
    assert ([m.seq for m in page.messages], page.complete) == ([3, 4], True)
    assert chat.older("m1", "lobby", 3).messages == ()
    assert [m.seq for m in chat.older("m1", "lobby", 100).messages] == [3, 4, 5, 6, 7, 8]


def test_older_history_checks_its_arguments():
    chat = with_member(make_chat(), "m1", "alice", "lobby")
    refused("not_in_room", chat.older, "m1", "elsewhere", 5)
    refused("bad_sequence", chat.older, "m1", "lobby", -1)
    for bad in (0, 201, 2.0, True, "5"):
        refused("bad_request", chat.older, "m1", "lobby", 5, bad)
    assert clean_limit(None) == 50 and clean_limit(200) == 200
