"""History kept in a SQLite file by a real serve.py, across real restarts and a kill -9."""

import signal
import sqlite3

import gevent
import pytest

from tests.support.chatting import chatter, wait_until
from tests.support.processes import ServeProcess
from tests.support.sioclient import SocketIOClient

pytestmark = [pytest.mark.live, pytest.mark.slow]


def address_of(serving):
    host, port = serving.url.rsplit("/", 1)[-1].split(":")
    return host, int(port)


def post(client, *ids):
    """Post messages with these ids; their acked seqs."""
    seqs = []
    for message_id in ids:
        ack = client.call("message", {"room": "lobby", "id": message_id, "text": "text of " + message_id})
        assert ack["ok"], ack
        seqs.append(ack["seq"])
    return seqs


@pytest.fixture
def data_file(tmp_path):
    return tmp_path / "chat.sqlite3"


def test_history_seqs_and_epoch_survive_a_restart(data_file):
    serving = ServeProcess("--data", str(data_file))
    try:
        alice = chatter(address_of(serving), "alice")
        epoch = alice.joined["epoch"]
        assert post(alice, "a1", "a2", "a3") == [1, 2, 3]
        alice.close()
    finally:
        serving.stop()
    serving = ServeProcess("--data", str(data_file))
    try:
        bob = chatter(address_of(serving), "bob", room="")
        caught_up = bob.call("join", {"room": "lobby", "after": 1, "epoch": epoch})
        assert [m["id"] for m in caught_up["messages"]] == ["a2", "a3"]
        assert (caught_up["complete"], caught_up["epoch"]) == (True, epoch)
        assert post(bob, "b1") == [4]
        assert post(bob, "a1") == [5]  # another author's id is another message
        bob.close()
    finally:
        serving.stop()


def test_the_default_is_a_file_under_data_and_memory_keeps_nothing(tmp_path):
    serving = ServeProcess(env={"CHATWSGI_DATA": None}, cwd=tmp_path)  # the shipped default
    try:
        alice = chatter(address_of(serving), "alice")
        post(alice, "a1")
        alice.close()
    finally:
        serving.stop()
    with sqlite3.connect(tmp_path / "data" / "chat.sqlite3") as db:
        assert db.execute("SELECT id, seq FROM messages").fetchall() == [("a1", 1)]
    db.close()
    for _ in range(2):  # ":memory:": the old behaviour, each start a new history
        serving = ServeProcess("--data", ":memory:", cwd=tmp_path)
        try:
            reader = chatter(address_of(serving), "reader")
            assert reader.joined["messages"] == []
            post(reader, "r1")
            reader.close()
        finally:
            serving.stop()


def test_kill_9_mid_traffic_loses_no_acknowledged_message(data_file):
    serving = ServeProcess("--data", str(data_file), "--rate", "1000", "--burst", "1000")
    acked = {}
    writer = chatter(address_of(serving), "writer")
    epoch = writer.joined["epoch"]

    def write():
        for number in range(100000):
            try:
                ack = writer.call("message", {"room": "lobby", "id": "w%d" % number, "text": "x"}, timeout=2)
            except (TimeoutError, ConnectionError, OSError, AssertionError):
                return
            if not ack.get("ok"):
                return
            acked["w%d" % number] = ack["seq"]
            gevent.sleep(0.025)  # 40 a second: under the packet limit (50/s); nothing waits on it

    worker = gevent.spawn(write)
    try:
        wait_until(lambda: len(acked) >= 100, timeout=20)
        serving.process.send_signal(signal.SIGKILL)
        worker.join(timeout=10)
        assert worker.dead
    finally:
        writer.close()
        serving.stop()
    serving = ServeProcess("--data", str(data_file))
    try:
        reader = chatter(address_of(serving), "reader", room="")
        stored, after = {}, 0
        while True:
            page = reader.call(
                "join" if not stored else "catch_up", {"room": "lobby", "after": after, "epoch": epoch}
            )
            assert page["complete"] and page["epoch"] == epoch, page
            stored.update((m["id"], m["seq"]) for m in page["messages"])
            after = page["messages"][-1]["seq"] if page["messages"] else after
            if not page["more"]:
                break
        assert set(acked.items()) <= set(stored.items())  # every acked one, under its seq
        reader.close()
        print(
            "kill -9 of serve.py: %d messages acked, all %d in history after the restart"
            % (len(acked), len(acked))
        )
    finally:
        serving.stop()


def test_older_history_on_demand(data_file):
    serving = ServeProcess("--data", str(data_file), "--rate", "1000", "--burst", "1000")
    try:
        alice = chatter(address_of(serving), "alice")
        post(alice, *["m%d" % n for n in range(1, 41)])
        reader = chatter(address_of(serving), "reader")
        assert [m["seq"] for m in reader.joined["messages"]] == list(range(26, 41))  # the 15 shown
        older = reader.call("history", {"room": "lobby", "before": 26, "limit": 20})
        assert [m["seq"] for m in older["messages"]] == list(range(6, 26))  # newest last
        assert older["complete"] is False
        oldest = reader.call("history", {"room": "lobby", "before": 6, "limit": 20})
        assert [m["seq"] for m in oldest["messages"]] == [1, 2, 3, 4, 5] and oldest["complete"]
        too_many = reader.call("history", {"room": "lobby", "before": 6, "limit": 201})
        assert (too_many["ok"], too_many["code"]) == (False, "bad_request")
        outsider = SocketIOClient(address_of(serving)).connect()
        assert outsider.call("nickname", {"nickname": "outsider"})["ok"]
        assert outsider.call("history", {"room": "lobby", "before": 6})["code"] == "not_in_room"
        for client in (alice, reader, outsider):
            client.close()
    finally:
        serving.stop()
