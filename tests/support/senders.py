"""Users who keep chatting through a cluster's faults, and the ledger that checks them.

A ``User`` sends numbered messages one at a time and waits for each ack. A refusal
(``unavailable``, ``server_error``, ``rate_limited``) is retried under the same id after
a pause; a lost connection is replaced through HAProxy: the nickname reclaimed with the
user's token, the room joined again after the last sequence number seen, and any further
pages of catch-up fetched, as the page does. Everything a user's clients received, live
or by catch-up, is kept in arrival order to be checked against what was acknowledged.
"""

import contextlib
import time

import gevent
import gevent.event

from tests.support.chatting import wait_until
from tests.support.sioclient import SocketIOClient

ROOM = "lobby"
REFUSALS = ("unavailable", "server_error", "rate_limited")  # retried on the same connection


class User:
    """A user on ``cluster`` (through HAProxy) who sends acked messages while ``sending``."""

    def __init__(self, cluster, nickname, transport="websocket", sends=False):
        self.cluster, self.nickname, self.transport, self.sends = cluster, nickname, transport, sends
        self.client = cluster.chatter(nickname, transport)
        self.token, self.epoch = self.client.token, self.client.joined["epoch"]
        self.clients = [self.client]
        self.caught_up = []  # messages received by catch-up, in arrival order
        self.acked = {}  # id -> seq
        self.refused = 0
        self.reconnects = 0

    @property
    def node(self):
        """The node the current client is on."""
        return self.client.node

    def live(self):
        """(client index, message) of every message received live, in arrival order."""
        clients = enumerate(self.clients)
        return [(index, args[0]) for index, client in clients for args in client.events("message")]

    def received(self):
        """Every message received, live or by catch-up."""
        return self.caught_up + [message for _, message in self.live()]

    def last_seq(self):
        return max((m["seq"] for m in self.received()), default=0)

    def run(self, sending, deadline, every=0.2):
        """Send one message every ``every`` seconds while the event ``sending`` is set
        (each waits for its ack) and the monotonic ``deadline`` has not passed."""
        while sending.is_set() and time.monotonic() < deadline:
            message_id = "%s-%d" % (self.nickname, len(self.acked))
            try:
                ack = self.client.call("message", {"room": ROOM, "id": message_id, "text": "x"}, timeout=3)
            except (TimeoutError, ConnectionError, OSError, AssertionError):
                ack = None
            if ack and ack.get("ok"):
                self.acked[message_id] = ack["seq"]
            elif ack and ack.get("code") in REFUSALS:
                self.refused += 1
            else:
                self.reconnect(deadline)
            gevent.sleep(every)  # the pace of a person typing; nothing waits on it

    def reconnect(self, deadline):
        """A new connection through HAProxy: nickname by token, join after the last seen seq."""
        self.client.close()
        self.reconnects += 1
        while True:
            try:
                client = SocketIOClient(self.cluster.lb.address, self.transport).connect()
            except (OSError, AssertionError, TimeoutError):
                if time.monotonic() > deadline:
                    raise
                gevent.sleep(0.2)
                continue
            client.node = client.cookie.split("=", 1)[1]
            self.cluster.clients.append(client)
            claimed = client.call("nickname", {"nickname": self.nickname, "token": self.token})
            joined = claimed["ok"] and client.call(
                "join", {"room": ROOM, "after": self.last_seq(), "epoch": self.epoch}
            )
            if claimed["ok"] and joined["ok"]:
                break
            client.close()
            if time.monotonic() > deadline:
                raise AssertionError("%s could not get back in: %r %r" % (self.nickname, claimed, joined))
            gevent.sleep(0.2)
        self.clients.append(client)
        self.client = client
        self._take_catch_up(joined)

    def _take_catch_up(self, answer):
        assert answer["complete"], answer
        self.caught_up += answer["messages"]
        while answer["more"]:
            request = {"room": ROOM, "after": self.last_seq(), "epoch": self.epoch}
            answer = self.client.call("catch_up", request)
            assert answer["ok"] and answer["complete"], answer
            self.caught_up += answer["messages"]

    def close(self):
        for client in self.clients:
            client.close()


class Traffic:
    """Every sending user sending at once until ``stop()`` (at most ``seconds``)."""

    def __init__(self, users, seconds=90):
        self.users = [user for user in users if user.sends]
        self.sending = gevent.event.Event()
        self.sending.set()
        deadline = time.monotonic() + seconds
        self.workers = [gevent.spawn(user.run, self.sending, deadline) for user in self.users]

    def acked(self):
        """How many messages have been acknowledged so far."""
        return sum(len(user.acked) for user in self.users)

    def wait_for_more(self, count, timeout=30):
        """Wait until ``count`` more messages than now are acknowledged."""
        target = self.acked() + count
        wait_until(lambda: self.acked() >= target, timeout)

    def stop(self, timeout=30):
        """Stop sending; raise what any sender raised."""
        self.sending.clear()
        gevent.joinall(self.workers, timeout=timeout, raise_error=True)
        assert all(worker.ready() for worker in self.workers), "a sender is stuck"


def wait_for_deliveries(users, acked, timeout=10):
    """Wait until every user has received every acked id (the asserts then say what is missing)."""
    with contextlib.suppress(TimeoutError):
        wait_until(lambda: all(set(acked) <= {m["id"] for m in user.received()} for user in users), timeout)


def check_ledger(users):
    """Every acked message received by every user exactly once, in order; return the counts.

    Live deliveries on one connection must come once each, in sequence order, with no
    hole (a node repairs what pub/sub dropped); across connections and catch-up a user
    holds each acked id, always under the one seq it was acked with.
    """
    acked = {message_id: seq for user in users for message_id, seq in user.acked.items()}
    assert len(set(acked.values())) == len(acked), "two acked ids share a seq"
    live_deliveries = caught_up = 0
    for user in users:
        for index in range(len(user.clients)):
            seqs = [m["seq"] for i, m in user.live() if i == index]
            assert seqs == sorted(set(seqs)), "%s: live deliveries repeated or out of order" % user.nickname
            if seqs:
                holes = sorted(set(range(seqs[0], seqs[-1] + 1)) - set(seqs))
                assert not holes, "%s: a live hole at %s" % (user.nickname, holes[:10])
        seen = {}
        for message in user.received():
            seen.setdefault(message["id"], set()).add(message["seq"])
        assert all(len(seqs) == 1 for seqs in seen.values()), "%s: an id under two seqs" % user.nickname
        missing = set(acked) - set(seen)
        assert not missing, "%s lost %d acked: %s" % (user.nickname, len(missing), sorted(missing)[:10])
        assert all(seen[message_id] == {seq} for message_id, seq in acked.items())
        live_ids = {m["id"] for _, m in user.live()}
        live_deliveries += len(set(acked) & live_ids)
        caught_up += len(set(acked) - live_ids)
    return {"acked": len(acked), "delivered live": live_deliveries, "by catch-up": caught_up}
