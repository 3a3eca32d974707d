"""Two chat nodes sharing a real redis-server, behind a real HAProxy running deploy/haproxy.cfg."""

import contextlib
import time

import gevent
import pytest

from tests.support.chatting import TRANSPORTS, announced, chatter, wait_until
from tests.support.cluster import TTL
from tests.support.sioclient import SocketIOClient

pytestmark = [pytest.mark.live, pytest.mark.slow]


def live_messages(client):
    """The chat messages a client received live, in arrival order."""
    return [args[0] for args in client.events("message")]


def received_ids(user):
    """Ids of the messages a Sender (live and by catch-up) or a plain client (live) received."""
    return {m["id"] for m in (user.received() if isinstance(user, Sender) else live_messages(user))}


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


class Sender:
    """A user sending numbered messages one at a time; after a failure it reconnects
    through HAProxy with its token, catches up from its last seen seq, and resends the
    unacknowledged message under the same id."""

    def __init__(self, cluster, nickname, transport, count):
        self.cluster, self.nickname, self.transport, self.count = cluster, nickname, transport, count
        self.client = cluster.chatter(nickname, transport)
        self.token, self.epoch = self.client.token, self.client.joined["epoch"]
        self.clients = [self.client]
        self.caught_up = []  # messages received in join acks after reconnecting
        self.acked = {}  # id -> seq
        self.reconnects = 0

    def received(self):
        """Every message this user's clients received, live or by catch-up."""
        live = [args[0] for client in self.clients for args in client.events("message")]
        return self.caught_up + live

    def last_seq(self):
        return max((m["seq"] for m in self.received()), default=0)

    def run(self):
        number = 0
        while number < self.count:
            message_id = "%s-%d" % (self.nickname, number)
            try:
                ack = self.client.call("message", {"room": "lobby", "id": message_id, "text": "x"}, timeout=3)
            except (TimeoutError, ConnectionError, OSError, AssertionError):
                ack = None
            if ack and ack.get("ok"):
                self.acked[message_id] = ack["seq"]
                number += 1
            elif ack and ack.get("code") == "rate_limited":
                gevent.sleep(0.2)
            else:
                self.reconnect()

    def reconnect(self):
        self.client.close()
        self.reconnects += 1
        client = SocketIOClient(self.cluster.lb.address, self.transport).connect()
        client.node = client.cookie.split("=", 1)[1]
        self.cluster.clients.append(client)
        self.clients.append(client)
        assert client.call("nickname", {"nickname": self.nickname, "token": self.token})["ok"]
        joined = client.call("join", {"room": "lobby", "after": self.last_seq(), "epoch": self.epoch})
        assert joined["ok"] and joined["complete"], joined
        self.caught_up += joined["messages"]
        self.client = client


def test_kill_9_a_node_loses_no_acknowledged_message(cluster):
    senders = [Sender(cluster, "s%d" % i, TRANSPORTS[i % 3], 25) for i in range(6)]
    assert {s.client.node for s in senders} == {"n1", "n2"}
    # A user on n1 that never comes back, and one on n2 that only watches.
    ghost = next(c for c in (cluster.chatter("ghost%d" % i) for i in range(4)) if c.node == "n1")
    watcher = next(c for c in (cluster.chatter("watcher%d" % i) for i in range(4)) if c.node == "n2")
    workers = [gevent.spawn(sender.run) for sender in senders]
    wait_until(lambda: sum(len(s.acked) for s in senders) >= 30, timeout=20)
    cluster.node("n1").kill()
    killed_at = time.monotonic()
    announced(watcher, "leave", ghost.nickname, timeout=TTL + 5)
    ghost_gone_after = time.monotonic() - killed_at
    gevent.joinall(workers, timeout=60, raise_error=True)
    assert all(worker.successful() for worker in workers)

    acked = {message_id: seq for sender in senders for message_id, seq in sender.acked.items()}
    assert len(acked) == 6 * 25 and len(set(acked.values())) == len(acked)  # one seq per id
    with contextlib.suppress(TimeoutError):  # deliveries trail the last acks; the asserts say what is missing
        wait_until(lambda: all(set(acked) <= received_ids(user) for user in senders + [watcher]), timeout=10)
    for sender in senders:
        received = {}
        for message in sender.received():
            received.setdefault(message["id"], set()).add(message["seq"])
        assert all(len(seqs) == 1 for seqs in received.values()), "an id stored twice"
        assert set(acked) <= set(received), "%s lost %s" % (sender.nickname, set(acked) - set(received))
    # A watcher that never reconnected received every acknowledged message exactly once, in order.
    live = live_messages(watcher)
    assert sorted(m["id"] for m in live) == sorted(acked)
    assert [m["seq"] for m in live] == sorted(acked.values())
    assert ghost_gone_after <= TTL + 1.0
    moved = [s for s in senders if s.clients[0].node == "n1"]
    assert moved and all(s.reconnects >= 1 and s.client.node == "n2" for s in moved)
    print(
        "kill -9: %d acked; each of %d users received all %d once; %d senders moved n1 -> n2; "
        "ghost's leave announced %.2f s after the kill (ttl %.0f s)"
        % (len(acked), len(senders) + 1, len(acked), len(moved), ghost_gone_after, TTL)
    )


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
    assert newcomer.call("nickname", {"nickname": "Alice"})["code"] == "nickname_taken"
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
