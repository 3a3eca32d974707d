"""One contract, two backplanes: LocalBackplane (in memory) and RedisBackplane (a real redis-server).

Every contract test runs against both with identical assertions. The Redis backplane is
used without ``start()`` (no subscriber, no keeper: this process is not monkey-patched),
so its fan-out is not observed here; each Redis test gets a fresh key prefix.
"""

import uuid

import pytest
import redis
from redis.crc import key_slot

from chatwsgi.backplane import LocalBackplane
from chatwsgi.backplane.redis import Busy, RedisBackplane
from chatwsgi.errors import ChatError
from chatwsgi.rooms import DEFAULT_ROOM, CatchUp, Message, Retention, Room
from chatwsgi.sqlite_store import SqliteStore
from tests.support.cluster import RedisClusterServers

pytestmark = pytest.mark.live

# Three messages shown on a join, four kept for catch-up (ages never matter here).
RETENTION = Retention(shown=3, seconds=10**6, most=4)


class Recorder:
    """A backplane listener that records what it is told."""

    def __init__(self):
        self.calls = []

    def deliver(self, room, frame, exclude=None):
        self.calls.append(("deliver", room, frame, exclude))

    def deliver_message(self, message):
        self.calls.append(("deliver_message", message))

    def left(self, room, nickname):
        self.calls.append(("left", room, nickname))

    def close(self, owner):
        self.calls.append(("close", owner))

    def restore(self):
        self.calls.append(("restore",))
        return set()

    def receives(self, room):
        return True


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory):
    servers = RedisClusterServers(tmp_path_factory.mktemp("redis-cluster"))
    yield servers
    servers.stop()


@pytest.fixture
def make_backplane(request, redis_server, tmp_path):
    """make(kind, prefix=None): a backplane with a recording listener, closed after the test."""
    made = []

    def make(kind, prefix=None, retention=None, **options):
        new_epoch = lambda: uuid.uuid4().hex[:8]  # noqa: E731
        if kind == "local":
            backplane = LocalBackplane(max_rooms=4, new_epoch=new_epoch, retention=retention or RETENTION)
        elif kind == "sqlite":
            path = tmp_path / ("%s.sqlite3" % uuid.uuid4().hex)
            store = SqliteStore(path, retention or RETENTION, new_epoch)
            backplane = LocalBackplane(max_rooms=4, store=store)
        else:
            prefix = prefix or "test-%s:" % uuid.uuid4().hex
            servers = redis_server
            if kind == "redis-cluster":
                servers = request.getfixturevalue("redis_cluster")
                # Acks wait for a replica (WAIT 1 <ms>), with room for a loaded test machine.
                options.setdefault("wait_ms", 1000)
            backplane = RedisBackplane(
                servers.url,
                "t1",
                max_rooms=4,
                prefix=prefix,
                retention=retention or RETENTION,
                **options,
            )
        backplane.listener = Recorder()
        made.append(backplane)
        return backplane

    yield make
    for backplane in made:
        if backplane.name == "redis":
            backplane.close()
        elif isinstance(backplane.store, SqliteStore):
            backplane.store.close()


@pytest.fixture(params=["local", "sqlite", "redis", "redis-cluster"])
def backplane(request, make_backplane):
    return make_backplane(request.param)


def token(value):
    """A new_token function returning ``value``."""
    return lambda: value


def post_many(backplane, room, count):
    """Post messages m1..m<count> by alice; return them."""
    return [backplane.post(room, "alice", "m%d" % n, "t%d" % n, 1000.0 + n)[0] for n in range(1, count + 1)]


# --- nicknames -------------------------------------------------------------------------------


def test_claim_a_free_nickname_makes_a_token(backplane):
    assert backplane.claim("alice", "A", None, token("t1")) == ("t1", None)


def test_claim_again_by_its_owner_keeps_the_token(backplane):
    backplane.claim("alice", "A", None, token("t1"))
    assert backplane.claim("alice", "A", None, token("t2")) == ("t1", None)


@pytest.mark.parametrize("other", ["alice", "Alice", "ALICE"])
@pytest.mark.parametrize("offered", [None, "", "wrong"])
def test_claim_by_another_owner_without_the_token_is_refused(backplane, other, offered):
    backplane.claim("alice", "A", None, token("t1"))
    with pytest.raises(ChatError) as refusal:
        backplane.claim(other, "B", offered, token("t2"))
    assert refusal.value.code == "nickname_taken"


def test_claim_with_the_token_takes_it_over_and_evicts_the_old_owner(backplane):
    backplane.claim("alice", "A", None, token("t1"))
    assert backplane.claim("Alice", "B", "t1", token("t2")) == ("t1", "A")
    with pytest.raises(ChatError):
        backplane.claim("alice", "A", None, token("t3"))


def test_release_frees_a_nickname_only_for_its_holder(backplane):
    backplane.claim("alice", "A", None, token("t1"))
    backplane.release("alice", "B")
    with pytest.raises(ChatError):
        backplane.claim("alice", "B", None, token("t2"))
    backplane.release("ALICE", "A")
    assert backplane.claim("alice", "B", None, token("t2")) == ("t2", None)


# --- rosters ---------------------------------------------------------------------------------


def test_enter_is_new_only_the_first_time(backplane):
    assert backplane.enter("den", "A", "alice") is True
    assert backplane.enter("den", "A", "alice") is False
    assert backplane.count("den") == 1


def test_roster_is_sorted_case_insensitively(backplane):
    for owner, nickname in [("A", "carol"), ("B", "Alice"), ("C", "bob")]:
        backplane.enter("den", owner, nickname)
    assert backplane.roster("den") == ["Alice", "bob", "carol"]
    assert backplane.count("den") == 3
    assert (backplane.roster("nowhere"), backplane.count("nowhere")) == ([], 0)


def test_rename_changes_the_roster_entry(backplane):
    backplane.enter("den", "A", "alice")
    backplane.enter("den", "B", "bob")
    backplane.rename("den", "A", "zed")
    assert backplane.roster("den") == ["bob", "zed"]
    assert backplane.count("den") == 2


def test_exit_is_true_only_while_on_the_roster(backplane):
    backplane.enter("den", "A", "alice")
    assert backplane.exit("den", "A") is True
    assert backplane.exit("den", "A") is False
    assert (backplane.roster("den"), backplane.count("den")) == ([], 0)


def test_room_list_always_has_the_lobby(backplane):
    assert backplane.room_list() == [{"name": DEFAULT_ROOM, "count": 0}]


def test_room_list_counts_members_and_drops_emptied_rooms(backplane):
    backplane.enter("zoo", "A", "alice")
    backplane.enter("zoo", "B", "bob")
    backplane.enter("den", "A", "alice")
    backplane.enter(DEFAULT_ROOM, "B", "bob")
    assert backplane.room_list() == [
        {"name": "den", "count": 1},
        {"name": DEFAULT_ROOM, "count": 1},
        {"name": "zoo", "count": 2},
    ]
    backplane.exit("den", "A")
    backplane.exit(DEFAULT_ROOM, "B")
    assert backplane.room_list() == [{"name": DEFAULT_ROOM, "count": 0}, {"name": "zoo", "count": 2}]


def test_max_rooms_counts_the_lobby(backplane):
    for room in [DEFAULT_ROOM, "r1", "r2", "r3"]:
        backplane.enter(room, "A", "alice")
    with pytest.raises(ChatError) as refusal:
        backplane.enter("r4", "A", "alice")
    assert refusal.value.code == "too_many_rooms"
    backplane.enter("r1", "B", "bob")  # a room already held is no new room


def test_an_emptied_room_makes_way_for_a_new_one(backplane):
    for room in [DEFAULT_ROOM, "r1", "r2", "r3"]:
        backplane.enter(room, "A", "alice")
    backplane.exit("r2", "A")
    assert backplane.enter("r4", "A", "alice") is True
    assert [entry["name"] for entry in backplane.room_list()] == [DEFAULT_ROOM, "r1", "r3", "r4"]


def test_max_rooms_counts_the_lobby_before_anyone_enters_it(backplane):
    for room in ["r1", "r2", "r3"]:
        backplane.enter(room, "A", "alice")
    with pytest.raises(ChatError):
        backplane.enter("r4", "A", "alice")


# --- departing and evicting --------------------------------------------------------------------


def test_depart_takes_the_owner_off_every_roster_and_frees_its_nickname(backplane):
    backplane.claim("alice", "A", None, token("t1"))
    for room in ["zoo", DEFAULT_ROOM, "den"]:
        backplane.enter(room, "A", "alice")
    backplane.enter("den", "B", "bob")
    assert sorted(backplane.depart("A", "alice")) == ["den", DEFAULT_ROOM, "zoo"]
    assert [backplane.roster(room) for room in ["zoo", DEFAULT_ROOM, "den"]] == [[], [], ["bob"]]
    assert backplane.claim("Alice", "B", None, token("t2")) == ("t2", None)
    assert backplane.depart("A", "alice") == []


def test_depart_returns_its_rooms_sorted(backplane):
    backplane.claim("alice", "A", None, token("t1"))
    for room in ["zoo", "alpha", DEFAULT_ROOM, "mid"]:
        backplane.enter(room, "A", "alice")
    assert backplane.depart("A", "alice") == ["alpha", DEFAULT_ROOM, "mid", "zoo"]


def test_depart_of_a_taken_over_owner_leaves_the_nickname_to_its_new_holder(backplane):
    backplane.claim("alice", "A", None, token("t1"))
    backplane.claim("alice", "B", "t1", token("t2"))
    backplane.depart("A", "alice")
    assert backplane.claim("alice", "B", None, token("t3")) == ("t1", None)
    with pytest.raises(ChatError):
        backplane.claim("alice", "C", None, token("t4"))


def taken_over(backplane):
    """Owner A (alice, in den and zoo) taken over by owner B with A's token."""
    backplane.claim("alice", "A", None, token("t1"))
    backplane.enter("den", "A", "alice")
    backplane.enter("zoo", "A", "alice")
    assert backplane.claim("alice", "B", "t1", token("t2")) == ("t1", "A")


def test_evict_does_nothing_in_one_process(make_backplane):
    backplane = make_backplane("local")
    taken_over(backplane)
    assert backplane.evict("A") == []
    assert backplane.roster("den") == ["alice"]  # Chat departs a local owner itself


def test_evict_departs_an_owner_of_another_node(make_backplane):
    backplane = make_backplane("redis")
    taken_over(backplane)
    assert sorted(backplane.evict("A")) == ["den", "zoo"]
    assert (backplane.roster("den"), backplane.roster("zoo")) == ([], [])
    assert backplane.claim("alice", "B", None, token("t3")) == ("t1", None)
    assert backplane.evict("A") == []


# --- messages and history ----------------------------------------------------------------------


def test_post_numbers_messages_per_room(backplane):
    for room in ["den", "zoo"]:
        backplane.enter(room, "A", "alice")
    assert [m.seq for m in post_many(backplane, "den", 3)] == [1, 2, 3]
    assert [m.seq for m in post_many(backplane, "zoo", 2)] == [1, 2]


def test_post_returns_the_stored_message(backplane):
    backplane.enter("den", "A", "alice")
    message, created = backplane.post("den", "alice", "m1", "héllo 🎉", 1234.5)
    assert created is True
    assert message.as_dict() == {
        "room": "den", "seq": 1, "id": "m1", "author": "alice", "text": "héllo 🎉", "ts": 1234.5,
    }  # fmt: skip


def test_post_again_with_the_same_author_and_id_stores_nothing(backplane):
    backplane.enter("den", "A", "alice")
    backplane.post("den", "alice", "m1", "first", 1.0)
    message, created = backplane.post("den", "ALICE", "m1", "again", 2.0)
    assert (message.seq, created) == (1, False)
    assert [m.text for m in backplane.history("den").messages] == ["first"]
    assert backplane.post("den", "bob", "m1", "bob's", 3.0)[0].seq == 2


def test_history_keeps_the_last_messages_in_order(backplane):
    backplane.enter("den", "A", "alice")
    posted = post_many(backplane, "den", 5)
    history = backplane.history("den")
    assert isinstance(history, CatchUp)
    assert (history.room, history.messages, history.complete) == ("den", tuple(posted[2:]), True)
    assert isinstance(history.epoch, str) and history.epoch


def test_history_epoch_is_stable(backplane):
    backplane.enter("den", "A", "alice")
    epoch = backplane.history("den").epoch
    post_many(backplane, "den", 2)
    assert backplane.history("den").epoch == epoch
    assert backplane.history("den", 0, epoch).epoch == epoch


@pytest.mark.parametrize(
    "after, seqs, complete",
    [
        (5, [], True),
        (3, [4, 5], True),
        (1, [2, 3, 4, 5], True),  # kept for catch-up, though no longer shown on a join
        (0, [2, 3, 4, 5], False),
        (6, [3, 4, 5], False),  # another history's: the recent ones
    ],
)
def test_history_after_a_sequence_number(backplane, after, seqs, complete):
    backplane.enter("den", "A", "alice")
    post_many(backplane, "den", 5)
    epoch = backplane.history("den").epoch
    result = backplane.history("den", after, epoch)
    assert ([m.seq for m in result.messages], result.complete, result.epoch) == (seqs, complete, epoch)


@pytest.mark.parametrize("epoch", [None, "another-epoch"])
def test_history_after_matches_a_room_in_memory(backplane, epoch):
    backplane.enter("den", "A", "alice")
    posted = post_many(backplane, "den", 6)
    room = Room("den", RETENTION, epoch=backplane.history("den").epoch)
    for message in posted:
        room.post(message.author, message.id, message.text, message.ts)
    for after in range(8):
        for limit in (1, 2, 500):
            assert backplane.history("den", after, epoch, limit) == room.after(after, epoch, limit)


def test_catch_up_comes_in_pages(backplane):
    backplane.enter("den", "A", "alice")
    posted = post_many(backplane, "den", 5)  # 2-5 kept
    first = backplane.history("den", 1, limit=3)
    assert (first.messages, first.complete, first.more) == (tuple(posted[1:4]), True, True)
    last = backplane.history("den", 4, limit=3)
    assert (last.messages, last.complete, last.more) == ((posted[4],), True, False)


def test_retention_drops_aged_messages_past_those_shown(make_backplane, kind):
    backplane = make_backplane(kind, retention=Retention(shown=1, seconds=10, most=100))
    backplane.enter("den", "A", "alice")
    for n, ts in enumerate([1000.0, 1001.0, 1020.0, 1021.0]):
        backplane.post("den", "alice", "m%d" % n, "t", ts)
    assert [m.seq for m in backplane.history("den", 0).messages] == [3, 4]
    assert [m.seq for m in backplane.history("den").messages] == [4]


def test_methods_take_keyword_arguments(backplane):
    backplane.enter("den", "A", "alice")
    post_many(backplane, "den", 2)
    assert [m.seq for m in backplane.history("den", after=1, epoch=None).messages] == [2]


def test_history_of_another_epoch_is_incomplete(backplane):
    backplane.enter("den", "A", "alice")
    post_many(backplane, "den", 2)
    result = backplane.history("den", 2, "another-epoch")
    assert ([m.seq for m in result.messages], result.complete) == ([1, 2], False)


@pytest.fixture(params=["local", "sqlite", "redis", "redis-cluster"])
def kind(request):
    return request.param


# --- one backplane's own behaviour -------------------------------------------------------------


def test_local_delivers_new_messages_and_frames(make_backplane):
    backplane = make_backplane("local")
    backplane.enter("den", "A", "alice")
    message, _ = backplane.post("den", "alice", "m1", "hi", 1.0)
    backplane.post("den", "alice", "m1", "hi", 1.0)
    backplane.publish("den", "frame", "A")
    assert backplane.listener.calls == [("deliver_message", message), ("deliver", "den", "frame", "A")]


def test_redis_messages_outlive_the_backplane_object(make_backplane):
    first = make_backplane("redis")
    first.enter("den", "A", "alice")
    posted = post_many(first, "den", 4)
    before = first.history("den")
    after = make_backplane("redis", prefix=first.prefix).history("den")
    assert after == before
    assert after.messages == tuple(posted[1:])


def test_redis_remembers_the_ids_of_a_bounded_window(make_backplane):
    backplane = make_backplane("redis", remembered_ids=6)  # 6 ids for 4 messages retained
    backplane.enter("den", "A", "alice")
    post_many(backplane, "den", 20)
    assert backplane.redis.zcard(backplane._room_key("den", "ids")) == 6
    assert [backplane.post("den", "alice", "m%d" % n, "again", 1.0) for n in (15, 20)] == [
        (Message("den", n, "m%d" % n, "alice", "again", 1.0), False) for n in (15, 20)
    ]
    assert backplane.post("den", "alice", "m14", "past the window", 1.0)[0].seq == 21


def test_redis_keeps_each_room_in_one_hash_slot(make_backplane):
    backplane = make_backplane("redis")
    backplane.claim("alice", "A", None, token("t1"))
    backplane.enter("d{e}n", "A", "alice")
    post_many(backplane, "d{e}n", 2)
    backplane.history("d{e}n", 0)
    room_keys = [key for key in backplane.redis.scan_iter(backplane.prefix + "*") if "room:" in key]
    parts = ["epoch", "ids", "log", "members", "seq"]
    assert sorted(room_keys) == ["%s{room:d{e}n}:%s" % (backplane.prefix, part) for part in parts]
    assert len({key_slot(key.encode()) for key in room_keys}) == 1


def test_the_default_retention_keeps_two_minutes_for_catch_up(make_backplane, kind):
    backplane = make_backplane(kind, retention=Retention())
    backplane.enter("den", "A", "alice")
    for n in range(300):  # one every 0.4 s, from t=0 to t=119.6
        backplane.post("den", "alice", "m%d" % n, "t", 1000.0 + n * 0.4)
    assert len(backplane.history("den").messages) == 15
    assert backplane.history("den", 0).complete is True  # all 300 kept
    backplane.post("den", "alice", "late", "t", 1000.0 + 120.2)  # the first is now 120.2 s old
    assert backplane.history("den", 0).complete is False
    kept = backplane.history("den", 1)
    assert (kept.complete, len(kept.messages), kept.messages[0].seq) == (True, 300, 2)


@pytest.mark.parametrize(
    "before, limit, seqs, complete",
    [
        (6, 2, [4, 5], False),
        (6, 4, [2, 3, 4, 5], True),  # 2 is the oldest kept
        (4, 10, [2, 3], True),
        (2, 10, [], True),
        (0, 10, [], True),
        (99, 1, [5], False),
    ],
)
def test_older_history_before_a_sequence_number(backplane, before, limit, seqs, complete):
    backplane.enter("den", "A", "alice")
    post_many(backplane, "den", 5)  # 2-5 kept
    page = backplane.older("den", before, limit)
    assert ([m.seq for m in page.messages], page.complete) == (seqs, complete)
    assert page.epoch == backplane.history("den").epoch


def test_older_history_of_an_unknown_room_is_empty(backplane):
    assert backplane.older("nowhere", 10, 5).messages == ()


def test_a_pool_with_no_free_connection_refuses_as_busy_without_marking_redis_down(redis_server, caplog):
    backplane = RedisBackplane(redis_server.url, "t1", prefix="busy-%s:" % uuid.uuid4().hex, pool_size=1)
    backplane._up = True  # as the keeper leaves it once Redis answers
    held = backplane.redis.connection_pool.get_connection()  # a burst holds the only connection
    try:
        with pytest.raises(ChatError) as refused:
            backplane.roster("den")
        assert refused.value.code == "unavailable" and "busy" in str(refused.value)
        assert backplane.state() == "up"  # no outage: nothing to put back when the burst ends
        assert not [r for r in caplog.records if "down" in r.getMessage()]
    finally:
        backplane.redis.connection_pool.release(held)
    assert backplane.roster("den") == []
    backplane.close()


def test_a_busy_pool_met_by_the_keeper_or_the_subscriber_is_no_outage(redis_server):
    backplane = RedisBackplane(redis_server.url, "t1", prefix="busy-%s:" % uuid.uuid4().hex)
    backplane._up = True
    backplane._went_down(Busy("all 64 connections in use"))  # what they hand on when it happens
    assert backplane.state() == "up"
    backplane._went_down(redis.ConnectionError("Connection refused"))
    assert backplane.state() == "down"
    backplane.close()
