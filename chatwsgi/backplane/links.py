"""A node's pub/sub connections to Redis: one per server that serves a channel it wants.

On a standalone Redis that is one connection, subscribed (``SUBSCRIBE``) to this node's
channel and to each room its members are in. On a Redis Cluster a room's channel is a
*shard channel* (``SSUBSCRIBE``), served by the master of its hash slot, so there is one
connection per master serving a room wanted here (and the node's channel, an ordinary one
that the cluster broadcasts, rides on the first).

Every connection has a reader greenlet that puts what arrives into one inbox; the
backplane's subscriber takes from it in order. A connection that breaks, or a server that
drops a shard channel still wanted (its slot moved to another master), ends the whole set:
the subscriber opens a new one and repairs what its rooms missed meanwhile. So a room
wanted here is always subscribed, or about to be and repaired after: never silently deaf.
"""

import gevent
import gevent.event
import gevent.lock
import gevent.queue
import redis

CONFIRM_SECONDS = 2.0  # how long a new subscription waits for the server's confirmation


class Broken(redis.ConnectionError):
    """A server dropped a subscription this node still wants (its slot moved)."""


class Links:
    """The pub/sub connections of one subscriber session, and what arrives on them."""

    def __init__(self, connect, server_of, sharded):
        self._connect = connect  # server address -> redis.Redis to it
        self._server_of = server_of  # channel -> the address of the server serving it
        self._sharded = sharded
        self._pubsubs = {}  # server address -> PubSub
        self._wanted = set()  # room channels subscribed, or being subscribed
        self._confirmed = {}  # channel -> Event set when the server confirms the subscription
        self._readers = []
        self._sending = gevent.lock.Semaphore()  # one command at a time: a connection each
        self.inbox = gevent.queue.Queue()

    def listen(self, node_channel):
        """Subscribe to this node's channel (an ordinary one, in either mode)."""
        self._subscribe(node_channel, sharded=False)

    def add(self, channel):
        """Subscribe to a room's channel and wait (briefly) for the server to confirm."""
        if channel not in self._wanted:
            self._wanted.add(channel)
            self._subscribe(channel, self._sharded)

    def remove(self, channel):
        """Unsubscribe from a room's channel."""
        if channel in self._wanted:
            self._wanted.discard(channel)
            with self._sending:
                pubsub = self._pubsubs.get(self._server_of(channel))
                if pubsub is not None:
                    (pubsub.sunsubscribe if self._sharded else pubsub.unsubscribe)(channel)

    def read_from(self, reader):
        """Run ``reader(inbox)`` (another bus's, putting (channel, data) in) for this session."""
        self._readers.append(gevent.spawn(self._read_other, reader))

    def next(self, timeout=None):
        """(channel, data) of the next message, or None after ``timeout`` seconds; raises what
        broke a connection."""
        try:
            item = self.inbox.get(timeout=timeout)
        except gevent.queue.Empty:
            return None
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self):
        """Stop the readers and close every connection."""
        gevent.killall(self._readers)
        for pubsub in self._pubsubs.values():
            pubsub.close()

    def _subscribe(self, channel, sharded):
        confirmed = self._confirmed[channel] = gevent.event.Event()
        try:
            with self._sending:
                server = self._server_of(channel)
                pubsub = self._pubsubs.get(server)
                if pubsub is None:
                    pubsub = self._pubsubs[server] = self._connect(server).pubsub()
                    (pubsub.ssubscribe if sharded else pubsub.subscribe)(channel)
                    # Its first command sent: the connection is up, read from it.
                    self._readers.append(gevent.spawn(self._read, pubsub))
                else:
                    (pubsub.ssubscribe if sharded else pubsub.subscribe)(channel)
        except redis.RedisError as error:
            self.inbox.put(error)  # whoever called, the session starts over and subscribes again
            raise
        confirmed.wait(CONFIRM_SECONDS)

    def _read(self, pubsub):
        try:
            while True:
                item = pubsub.handle_message(pubsub.parse_response(block=True))
                if item is not None:
                    self._take(item)
        except redis.RedisError as error:
            self.inbox.put(error)
        except Exception as error:  # anything else: the session starts over all the same
            self.inbox.put(redis.ConnectionError("pub/sub reader failed: %r" % error))

    def _read_other(self, reader):
        try:
            reader(self.inbox)
        except Exception as error:  # the session starts over, and repairs what was missed
            self.inbox.put(redis.ConnectionError("fan-out reader failed: %r" % error))

    def _take(self, item):
        kind, channel = item["type"], item["channel"]
        if kind in ("message", "smessage"):
            self.inbox.put((channel, item["data"]))
        elif kind in ("subscribe", "ssubscribe"):
            confirmed = self._confirmed.pop(channel, None)
            if confirmed is not None:
                confirmed.set()
        elif kind == "sunsubscribe" and channel in self._wanted:
            raise Broken("the server dropped %s (its slot moved)" % channel)
