"""Two chat nodes sharing a real redis-server, behind a real HAProxy running deploy/haproxy.cfg."""

import time

import gevent
import pytest

from chatwsgi.backplane.redis import RedisBackplane
from tests.support.chatting import TRANSPORTS, announced, chatter, wait_until
from tests.support.cluster import TTL
from tests.support.sioclient import SocketIOClient

pytestmark = [pytest.mark.live, pytest.mark.slow]


def message_ids(client):
    """Ids of the chat messages a client received live, in arrival order."""
    return [args[0]["id"] for args in client.events("message")]


def test_clients_on_both_nodes_chat_over_every_transport(cluster):
    clients = [cluster.chatter("user%d" % i, TRANSPORTS[i % 3]) for i in range(6)]
    # Round robin over the handshakes puts each transport on each node.
    assert {(c.node, c.transport) for c in clients} == {(n, t) for n in ("n1", "n2") for t in TRANSPORTS}
    for index, client in enumerate(clients):
        ack = client.call("message", {"room": "lobby", "id": "m%d" % index, "text": "from %d" % index})
        assert ack["ok"], ack
    expected = ["m%d" % i for i in range(6)]
    for client in clients:
        wait_until(lambda c=client: len(message_ids(c)) == 6)
        seqs = [args[0]["seq"] for args in client.events("message")]
        assert sorted(message_ids(client)) == expected and seqs == sorted(seqs), client.node
    nicknames = ["user%d" % i for i in range(6)]
    for client in clients:
        assert client.call("roster", {"room": "lobby"})["members"] == nicknames
    healths = [node.health() for node in cluster.nodes]
    assert [h["node"] for h in healths] == ["n1", "n2"]
    assert {h["backplane"] for h in healths} == {"up"}
    assert sum(h["members"] for h in healths) == 6 and min(h["members"] for h in healths) >= 1


def test_a_nickname_is_unique_across_nodes(cluster):
    alice = cluster.chatter("alice")
    other_node = next(n for n in cluster.nodes if n.name != alice.node)
    rival = SocketIOClient(other_node.address).connect()
    cluster.clients.append(rival)
    refusal = rival.call("nickname", {"nickname": "ALICE"})
    assert (refusal["ok"], refusal["code"]) == (False, "nickname_taken")
    # Her token takes it over on the other node: the stale session there is closed and leaves.
    watcher = cluster.chatter("watcher")
    taken = rival.call("nickname", {"nickname": "Alice", "token": alice.token})
    assert taken["ok"] and taken["token"] == alice.token
    wait_until(lambda: alice.closed)
    assert announced(watcher, "leave", "Alice")


def test_history_and_catch_up_survive_restarting_every_node(cluster):
    alice = cluster.chatter("alice")
    for index in range(1, 6):
        assert alice.call("message", {"room": "lobby", "id": "h%d" % index, "text": "m%d" % index})["ok"]
    epoch = alice.joined["epoch"]
    alice.close()
    for node in cluster.nodes:
        node.stop()
    for node in cluster.nodes:
        node.start()
    for node in cluster.nodes:
        client = chatter(node.address, "reader-" + node.name, room="")
        cluster.clients.append(client)
        caught_up = client.call("join", {"room": "lobby", "after": 2, "epoch": epoch})
        assert [m["id"] for m in caught_up["messages"]] == ["h3", "h4", "h5"]
        assert (caught_up["complete"], caught_up["epoch"]) == (True, epoch)
        everything = client.call("catch_up", {"room": "lobby", "after": 0})["messages"]
        assert [m["seq"] for m in everything] == [1, 2, 3, 4, 5]


def test_a_redis_outage_gives_errors_not_acks_then_service_resumes(cluster):
    alice, bob = cluster.chatter("alice"), cluster.chatter("bob")
    assert alice.node != bob.node
    cluster.redis.stop()
    wait_until(lambda: {node.health()["backplane"] for node in cluster.nodes} == {"down"}, timeout=TTL + 5)
    refusal = alice.call("message", {"room": "lobby", "id": "during", "text": "lost?"})
    assert (refusal["ok"], refusal["code"]) == (False, "unavailable")
    (error,) = alice.wait_event("error", lambda args: args[0]["id"] == "during")
    assert error["code"] == "unavailable" and error["message"]

    cluster.redis.start()
    wait_until(lambda: {node.health()["backplane"] for node in cluster.nodes} == {"up"}, timeout=15)
    retried = alice.call("message", {"room": "lobby", "id": "during", "text": "lost?"})
    assert retried["ok"], retried
    assert bob.wait_event("message", lambda args: args[0]["id"] == "during")[0]["author"] == "alice"
    assert bob.call("roster", {"room": "lobby"})["members"] == ["alice", "bob"]
    assert all(node.serving.process.poll() is None for node in cluster.nodes)


def test_redis_restarted_empty_gets_every_node_s_members_back(cluster):
    alice, bob = cluster.chatter("alice"), cluster.chatter("bob")
    cluster.redis.stop()
    wait_until(lambda: {node.health()["backplane"] for node in cluster.nodes} == {"down"}, timeout=TTL + 5)
    cluster.redis.start(empty=True)
    wait_until(lambda: {node.health()["backplane"] for node in cluster.nodes} == {"up"}, timeout=15)
    wait_until(lambda: bob.call("roster", {"room": "lobby"})["members"] == ["alice", "bob"], timeout=5)
    newcomer = SocketIOClient(cluster.lb.address).connect()
    cluster.clients.append(newcomer)
    # Until every node has had a ttl to put its members back, no one may claim a nickname.
    assert newcomer.call("nickname", {"nickname": "Carol"})["code"] == "unavailable"
    wait_until(lambda: newcomer.call("nickname", {"nickname": "Alice"})["code"] == "nickname_taken",
               timeout=TTL + 2, interval=0.5)  # fmt: skip
    carol = SocketIOClient(cluster.lb.address).connect()  # the newcomer spent its nickname tokens
    cluster.clients.append(carol)
    assert carol.call("nickname", {"nickname": "Carol"})["ok"]
    # History is gone with the data: a new epoch tells clients their seqs mean nothing now.
    rejoined = alice.call("join", {"room": "lobby", "after": 0, "epoch": alice.joined["epoch"]})
    assert rejoined["epoch"] != alice.joined["epoch"] and rejoined["complete"] is False


def test_a_burst_of_clients_joining_one_node_at_once_all_get_in(cluster):
    # More at once than the node's 64 Redis connections: greenlets wait for one, none fail.
    node = cluster.nodes[0]
    burst = [gevent.spawn(chatter, node.address, "burst%d" % n) for n in range(150)]
    gevent.joinall(burst, timeout=30, raise_error=True)
    cluster.clients.extend(greenlet.value for greenlet in burst)
    assert len(burst[0].value.call("roster", {"room": "lobby"})["members"]) == 150
    assert node.health()["backplane"] == "up"


def test_a_user_offline_through_1200_messages_catches_up_on_all_of_them_in_pages(cluster):
    alice, bob = cluster.chatter("alice"), cluster.chatter("bob")
    epoch, token = alice.joined["epoch"], alice.token
    alice.close()
    # 1,200 messages posted as a node posts them (far past the 15 shown on a join).
    writer = RedisBackplane(cluster.redis.url, "writer")
    try:
        for n in range(1200):
            writer.post("lobby", "carol", "c%d" % n, "x", time.time())
    finally:
        writer.close()
    bob.wait_event("message", lambda args: args[0]["id"] == "c1199")
    again = SocketIOClient(cluster.lb.address).connect()
    cluster.clients.append(again)
    assert again.call("nickname", {"nickname": "alice", "token": token})["ok"]
    page = again.call("join", {"room": "lobby", "after": 0, "epoch": epoch})
    got, pages = list(page["messages"]), 1
    while page["more"]:
        assert page["complete"] and len(page["messages"]) == 500
        page = again.call("catch_up", {"room": "lobby", "after": got[-1]["seq"], "epoch": epoch})
        got += page["messages"]
        pages += 1
    assert page["complete"] and pages == 3
    assert [m["id"] for m in got] == ["c%d" % n for n in range(1200)]
    assert [m["seq"] for m in got] == list(range(1, 1201))
