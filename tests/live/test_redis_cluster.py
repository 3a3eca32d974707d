"""Two chat nodes on a real Redis Cluster (3 masters, 3 replicas), behind HAProxy.

Rooms spread over the shards; each node subscribes (``SSUBSCRIBE``) only to the rooms its
members are in. Then a master is killed under live traffic (users on both nodes sending
acked messages): its replica takes over, the chat resumes by itself, and every acked
message reaches every user exactly once, in order.
"""

import gevent
import pytest

from tests.support.chatting import announced, wait_until
from tests.support.cluster import Cluster
from tests.support.senders import Traffic, User, check_ledger, wait_for_deliveries
from tests.support.sioclient import SocketIOClient

pytestmark = [pytest.mark.live, pytest.mark.slow]

CHANNEL = "chatwsgi:{room:%s}:fanout"


@pytest.fixture
def sharded(tmp_path, fanout):
    """A Redis Cluster, nodes n1 and n2 on it, and HAProxy; stopped after the test."""
    # Acks wait up to a second for a replica: a loaded test machine still acks.
    running = Cluster(tmp_path, redis_cluster=True, extra=("--redis-wait-ms", "1000"), fanout=fanout)
    yield running
    running.stop()


def shard_subscribers(servers, room):
    """How many connections subscribe to the room's shard channel, on the master serving it."""
    channel = CHANNEL % room
    return servers.command(servers.master_of(channel), "PUBSUB", "SHARDNUMSUB", channel)[1]


def rooms_on_every_master(servers, count=3):
    """Room names whose channels are served by ``count`` different masters."""
    rooms, masters = [], set()
    for n in range(200):
        master = servers.master_of(CHANNEL % ("r%d" % n))
        if master not in masters:
            masters.add(master)
            rooms.append("r%d" % n)
        if len(rooms) == count:
            return rooms
    raise AssertionError("rooms do not spread over %d masters" % count)


@pytest.mark.parametrize("fanout", ["redis"])  # shard channels: Redis pub/sub's
def test_rooms_on_every_shard_and_only_subscribed_where_members_are(sharded):
    servers = sharded.redis
    alice, bob = sharded.chatter("alice"), sharded.chatter("bob")
    assert {alice.node, bob.node} == {"n1", "n2"}
    rooms = rooms_on_every_master(servers)
    for room in rooms:
        for client in (alice, bob):
            assert client.call("join", {"room": room})["ok"]
    for index, room in enumerate(rooms):
        assert alice.call("message", {"room": room, "id": "a%d" % index, "text": room})["ok"]
        assert bob.call("message", {"room": room, "id": "b%d" % index, "text": room})["ok"]
    for client in (alice, bob):
        wait_until(lambda c=client: len(c.events("message")) == 2 * len(rooms))
        got = sorted((m["room"], m["seq"], m["id"]) for (m,) in client.events("message"))
        assert got == sorted(
            (room, seq, who + str(i)) for i, room in enumerate(rooms) for seq, who in ((1, "a"), (2, "b"))
        )
    assert [shard_subscribers(servers, room) for room in rooms] == [2, 2, 2]
    # bob leaves: his node unsubscribes (nobody there is in the room any more), alice's stays.
    assert bob.call("leave", {"room": rooms[0]})["ok"]
    assert alice.call("message", {"room": rooms[0], "id": "a-after", "text": "still here"})["ok"]
    wait_until(lambda: shard_subscribers(servers, rooms[0]) == 1)
    assert shard_subscribers(servers, "nobody-here") == 0
    # Node-targeted frames: her token takes "alice" over on bob's node, alice's node closes her.
    rival = SocketIOClient(sharded.node(bob.node).address).connect()
    sharded.clients.append(rival)
    assert rival.call("nickname", {"nickname": "Alice", "token": alice.token})["ok"]
    wait_until(lambda: alice.closed)
    assert announced(bob, "leave", "Alice")


def test_a_master_killed_under_traffic_loses_no_acked_message(sharded):
    servers = sharded.redis
    senders = [User(sharded, "s%d" % i, sends=True) for i in range(4)]
    watchers = [User(sharded, "w%d" % i) for i in range(2)]
    assert {u.node for u in senders} == {u.node for u in watchers} == {"n1", "n2"}
    traffic = Traffic(senders)
    traffic.wait_for_more(20)
    master = servers.master_of(CHANNEL % "lobby")
    servers.kill(master)
    wait_until(lambda: master not in servers.roles() and servers.healthy(servers=5), timeout=20)
    traffic.wait_for_more(40, timeout=30)  # the chat resumed by itself
    gevent.sleep(0.5)
    traffic.stop()
    users = senders + watchers
    acked = {message_id for user in senders for message_id in user.acked}
    wait_for_deliveries(users, acked)
    counts = check_ledger(users)
    counts.update(reconnects=sum(u.reconnects for u in users), refused=sum(u.refused for u in senders))
    print("master of the lobby killed: %s" % counts)
    assert all(node.serving.process.poll() is None for node in sharded.nodes)
