"""Redis faults under live traffic: no acknowledged message lost, repeated or out of order,
and no nickname stolen.

A real redis-server (append-only file on), nodes n1 and n2 and HAProxy. Six users, one
per node and transport, each send an acked message every 0.2 s through the fault; two
watchers (one per node) only read. Afterwards every acked message must have reached every
user exactly once, in order, with no hole in any connection's live deliveries (a node
fetches what pub/sub dropped); a user whose connection failed got the rest by catch-up.
"""

import re
import time

import gevent
import pytest

from tests.support.chatting import TRANSPORTS, announced, wait_until
from tests.support.cluster import TTL
from tests.support.senders import Traffic, User, check_ledger, wait_for_deliveries
from tests.support.sioclient import SocketIOClient

pytestmark = [pytest.mark.live, pytest.mark.slow]

REPAIRED_RE = re.compile(
    r"delivered (\d+) messages (?:missed while unsubscribed|pub/sub dropped|the sweep found late)"
)


def everyone(cluster):
    """Six senders (each node x each transport) and two watchers (one per node)."""
    senders = [User(cluster, "s%d" % i, TRANSPORTS[i % 3], sends=True) for i in range(6)]
    assert {(s.node, s.transport) for s in senders} == {(n, t) for n in ("n1", "n2") for t in TRANSPORTS}
    watchers = [User(cluster, "w%d" % i) for i in range(2)]
    assert {w.node for w in watchers} == {"n1", "n2"}
    return senders, watchers


def backplanes(cluster):
    return {node.health()["backplane"] for node in cluster.nodes}


def repaired(cluster):
    """Messages the nodes fetched from Redis because pub/sub had not delivered them."""
    return sum(int(count) for node in cluster.nodes for count in REPAIRED_RE.findall(node.log()))


def chat_through(cluster, fault):
    """Users chat before, during and after ``fault()``; check the ledger; return its counts."""
    senders, watchers = everyone(cluster)
    traffic = Traffic(senders)
    traffic.wait_for_more(30)
    fault()
    traffic.wait_for_more(60)  # every sender back to sending
    traffic.stop()
    users = senders + watchers
    acked = {message_id for user in senders for message_id in user.acked}
    wait_for_deliveries(users, acked)
    counts = check_ledger(users)
    assert all(w.reconnects == 0 for w in watchers)  # they got everything live
    assert all(node.serving.process.poll() is None for node in cluster.nodes)
    counts.update(
        reconnects=sum(u.reconnects for u in users), refused=sum(u.refused for u in senders),
        repaired=repaired(cluster),
    )  # fmt: skip
    print("%s: %s" % (fault.__doc__, counts))
    return counts


@pytest.mark.parametrize("seconds", [2, 5, 10])
def test_redis_stopped_and_restarted_on_its_data(cluster, seconds):
    def outage():
        cluster.redis.stop()
        wait_until(lambda: backplanes(cluster) == {"down"}, timeout=TTL + 5)
        gevent.sleep(seconds)  # the outage itself
        cluster.redis.start()
        wait_until(lambda: backplanes(cluster) == {"up"}, timeout=10)

    outage.__doc__ = "Redis stopped %d s" % seconds
    counts = chat_through(cluster, outage)
    assert counts["refused"] > 0  # the outage was felt: refusals, never acks, during it


def test_redis_killed_and_restarted_on_its_append_only_file(cluster):
    def crash():
        """Redis kill -9, restarted on its append-only file"""
        cluster.redis.kill()
        cluster.redis.start()
        wait_until(lambda: backplanes(cluster) == {"up"}, timeout=10)

    chat_through(cluster, crash)


@pytest.mark.parametrize("fanout", ["redis"])  # the rooms' channels are Redis's on this bus only
def test_a_killed_subscriber_connection_costs_nothing(cluster):
    def kill_subscribers():
        """the nodes' pub/sub connections killed 20 times (CLIENT KILL TYPE pubsub)"""
        for _ in range(20):
            assert cluster.redis.command("CLIENT", "KILL", "TYPE", "pubsub") >= 1
            gevent.sleep(0.25)  # the spacing of the kills; each is waited on below
            wait_until(lambda: cluster.redis.subscribers("chatwsgi:{room:lobby}:fanout") == 2)

    counts = chat_through(cluster, kill_subscribers)
    # Messages were published while a node was not subscribed, and it fetched them itself.
    assert counts["repaired"] > 0
    assert backplanes(cluster) == {"up"}


@pytest.mark.parametrize("fanout", ["zmq"])
def test_kill_9_of_the_forwarder_loses_nothing_and_live_delivery_resumes(cluster):
    url = cluster.forwarder.url

    def connections():
        return [node.log().count("fan-out forwarder %s connected" % url) for node in cluster.nodes]

    wait_until(lambda: connections() == [1, 1])

    def crash():
        """ZeroMQ forwarder kill -9, restarted after 3 s"""
        cluster.forwarder.kill()
        gevent.sleep(3)  # the outage itself: the sweep delivers from Redis meanwhile
        cluster.forwarder.start()
        wait_until(lambda: connections() == [2, 2], timeout=10)

    counts = chat_through(cluster, crash)
    assert counts["repaired"] > 0  # what was posted while it was away came by the sweep
    # Live again: a message from each node reaches the other without any repair.
    before = repaired(cluster)
    one, other = cluster.chatter("late1"), cluster.chatter("late2")
    assert {one.node, other.node} == {"n1", "n2"}
    for index, client in enumerate((one, other)):
        assert client.call("message", {"room": "lobby", "id": "l%d" % index, "text": "back"})["ok"]
    for client in (one, other):
        wait_until(lambda c=client: {a[0]["id"] for a in c.events("message")} >= {"l0", "l1"}, timeout=5)
    assert repaired(cluster) == before


def test_kill_9_of_a_node_loses_no_acknowledged_message(cluster):
    senders, watchers = everyone(cluster)
    ghost, witness = sorted(watchers, key=lambda w: w.node)  # on n1, never back; on n2
    traffic = Traffic(senders)
    traffic.wait_for_more(30)
    cluster.node("n1").kill()
    killed_at = time.monotonic()
    announced(witness.client, "leave", ghost.nickname, timeout=TTL + 5)
    ghost_gone_after = time.monotonic() - killed_at
    assert ghost_gone_after <= TTL + 1.0
    traffic.wait_for_more(60)
    traffic.stop()
    survivors = [u for u in senders + watchers if u.node == "n2"]
    acked = {message_id for user in senders for message_id in user.acked}
    wait_for_deliveries(survivors, acked)
    counts = check_ledger(survivors)
    moved = [s for s in senders if s.clients[0].node == "n1"]
    assert len(moved) == 3 and all(s.reconnects >= 1 for s in moved)
    assert all(s in survivors for s in moved)  # each sender of n1 carried on from n2
    print("node n1 kill -9: %s; its watcher's leave announced %.2f s after (ttl %.0f s)"
          % (counts, ghost_gone_after, TTL))  # fmt: skip


def test_redis_restarted_empty_steals_no_nickname_and_loses_nothing_delivered(cluster):
    senders, watchers = everyone(cluster)
    users = senders + watchers
    traffic = Traffic(senders)
    traffic.wait_for_more(30)
    before = {message_id for user in senders for message_id in user.acked}
    cluster.redis.stop()
    wait_until(lambda: backplanes(cluster) == {"down"}, timeout=TTL + 5)
    cluster.redis.start(empty=True)
    # From the moment Redis is back until well past the grace, thieves on both nodes try to
    # take the users' nicknames (a new connection each time, so no rate limit stops them).
    answers = []
    for attempt in range(int((TTL + 2) / 0.1)):
        node, user = cluster.nodes[attempt % 2], users[attempt % len(users)]
        thief = SocketIOClient(node.address).connect()
        answer = thief.call("nickname", {"nickname": user.nickname.upper()})
        answers.append(answer.get("code", "granted"))
        thief.close()
        gevent.sleep(0.1)  # the thieves' pace
    assert set(answers) <= {"unavailable", "nickname_taken"} and "nickname_taken" in answers
    assert answers[0] == "unavailable"  # the grace, not a race won by luck
    traffic.wait_for_more(60)
    traffic.stop()
    wait_for_deliveries(users, before)
    after = {message_id for user in senders for message_id in user.acked} - before
    wait_for_deliveries(users, before | after)
    for user in users:
        assert not user.client.closed and user.reconnects == 0, user.nickname
        ids = [m["id"] for _, m in user.live()]
        assert before | after <= set(ids) and len(ids) == len(set(ids)), user.nickname
        # The old history, then the new one from its first message: each in order, no holes.
        seqs = [m["seq"] for _, m in user.live()]
        restart = next(i for i in range(1, len(seqs)) if seqs[i] < seqs[i - 1])
        old, new = seqs[:restart], seqs[restart:]
        assert old == list(range(old[0], old[-1] + 1)) and new == list(range(1, new[-1] + 1)), seqs
    # Their tokens still work: a user reconnecting elsewhere takes her nickname back.
    again = SocketIOClient(cluster.lb.address).connect()
    cluster.clients.append(again)
    assert again.call("nickname", {"nickname": "s0", "token": senders[0].token})["ok"]
    print(
        "Redis restarted empty: %d acked before, %d after, every one delivered live to all %d users; "
        "%d claims by thieves, none granted" % (len(before), len(after), len(users), len(answers))
    )


def test_a_poisoned_token_is_refused_and_costs_redis_nothing(cluster):
    senders, watchers = everyone(cluster)
    attackers = [SocketIOClient(node.address).connect() for node in cluster.nodes]
    cluster.clients.extend(attackers)
    commands_before = int(cluster.redis.command("INFO", "stats")["total_commands_processed"])
    for attacker in attackers:
        for poison in (True, ["x"], {"a": 1}, 7, "t" * 65):
            answer = attacker.call("nickname", {"nickname": "mallory", "token": poison})
            assert (answer["ok"], answer["code"]) == (False, "bad_request")
    # Only the keepers' beats and this INFO reached Redis meanwhile, not one claim.
    spent = int(cluster.redis.command("INFO", "stats")["total_commands_processed"]) - commands_before
    assert spent < 40, spent
    assert backplanes(cluster) == {"up"}
    traffic = Traffic(senders)
    traffic.wait_for_more(30)
    traffic.stop()
    users = senders + watchers
    wait_for_deliveries(users, {message_id for user in senders for message_id in user.acked})
    check_ledger(users)


def test_an_error_redis_answers_fails_one_request_not_the_node(cluster):
    alice, bob = User(cluster, "alice"), User(cluster, "bob")
    assert {alice.node, bob.node} == {"n1", "n2"}
    cluster.redis.command("SET", "chatwsgi:{room:broken}:log", "not a stream")
    for user in (alice, bob):
        assert user.client.call("join", {"room": "broken"})["code"] == "server_error"
    assert backplanes(cluster) == {"up"}
    ack = alice.client.call("message", {"room": "lobby", "id": "fine", "text": "still here"})
    assert ack["ok"]
    bob.client.wait_event("message", lambda args: args[0]["id"] == "fine")
    logs = [node.log() for node in cluster.nodes]
    assert all("Redis refused history" in log for log in logs)
    assert not any(" down: " in log for log in logs)
