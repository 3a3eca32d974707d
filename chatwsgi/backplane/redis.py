"""The Redis backplane: nicknames, rosters, history and fan-out shared by every node.

The I/O twin of ``local.LocalBackplane``, with the same methods and return shapes, on one
Redis (``redis://``) or a Redis Cluster (``redis-cluster://``). Shared state changes in Lua
scripts (``scripts/*.lua``), each declaring its keys and touching one slot: a room's keys
share a hash tag (``chatwsgi:{room:<name>}:log``), so posting a message (its sequence
number, the room's stream with entry id ``<seq>-0`` kept as ``rooms.Retention`` says, a
bounded window of (author, id) for de-duplication, and the publish) is one script on the
room's shard. What spans keys of several slots (a claim, a join, a departure) is done in
steps that are safe to repeat; each method says in which order and why.

Fan-out has a channel per room (a shard channel on a cluster). A node subscribes to a room
while it has members there (``links.Links``); pub/sub drops what a node misses while its
subscription is down, so a node never trusts it to be complete: a ``sequencing.Sequencer``
delivers each room's messages in order, fetching from the stream any it did not receive,
and every (re)subscription starts by fetching what the node's rooms missed meanwhile.

With ``fanout='zmq://HOST:PORT'`` the rooms' channels are ZeroMQ topics through a
forwarder instead (``zmq_fanout.ZmqFanout``), off Redis's one core; Redis keeps the rest,
this node's own channel included. That bus also reorders two nodes' messages, so an early
one is held for ``holdback`` seconds (``sequencing.Holdback``) before its gap is fetched,
and the keeper sweeps: a room still behind what Redis stored a beat ago is repaired (the
bus dropped its last messages, which no later one revealed).

Redis restarted without its data loses every nickname: the ``generation`` key tells.
The first node to notice makes a new one and, if it knew the old one, opens a grace of
one node ttl in which only nodes putting back their own members may claim nicknames;
every live node notices within a beat and puts its members back.

Per process, two greenlets (never one per connection), and a reader per pub/sub connection:
- the *subscriber* takes the frames of this node's rooms, and this node's evictions on its
  own channel, and hands them to the listener (the ChatService) in order;
- the *keeper* refreshes this node's heartbeat key (expiring after ``ttl`` seconds),
  reconnects with backoff after an outage, checks the generation, unsubscribes from rooms
  left empty here, and reaps nodes whose heartbeat lapsed: their members leave every
  roster and their nicknames are freed.

Only a failed connection marks the node down (clients get ``unavailable``); an error
Redis answers with fails that one request (``server_error``) and is logged. On a cluster,
acks wait for a replica to hold the message (``wait_ms``).

Redis calls block their greenlet only when ``socket`` is gevent's: serve.py
monkey-patches; an embedding app must do the same.
"""

import contextlib
import functools
import json
import logging
import os
import secrets
import socket
import time
from pathlib import Path

import gevent
import gevent.event
import redis
from gevent import monkey
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import ClusterDownError, RedisClusterException
from redis.retry import Retry

from chatwsgi.backplane.batching import ScriptBatcher
from chatwsgi.backplane.links import Links
from chatwsgi.backplane.zmq_fanout import ZmqFanout
from chatwsgi.errors import ChatError
from chatwsgi.metrics import NO_METRICS
from chatwsgi.rooms import (
    CATCH_UP_PAGE,
    DEFAULT_ROOM,
    OLDER_PAGE,
    CatchUp,
    Message,
    Retention,
    catch_up,
    older,
    saw_another_history,
)
from chatwsgi.sequencing import GAP, SEEN, Holdback, Sequencer

log = logging.getLogger(__name__)

SCRIPT_NAMES = (
    "claimable",
    "claim",
    "release",
    "generation",
    "admit",
    "enter",
    "exit",
    "post",
    "recent",
    "after",
    "older",
)
SCRIPTS = Path(__file__).with_name("scripts")


def load_script(name):
    """The Lua source of script ``name`` (``scripts/<name>.lua``, shipped as package data)."""
    return (SCRIPTS / (name + ".lua")).read_text(encoding="utf-8")


REPAIR_MOST = 10_000  # messages fetched for one room in one repair; past it, clients catch up


def encode_entry(room, message_id, author, text, ts):
    """A message as stored and published, less its sequence number (the script adds it)."""
    return json.dumps({"room": room, "id": message_id, "author": author, "text": text, "ts": ts})


def decode_message(seq, fields):
    """The Message with sequence number ``seq`` whose other fields ``fields`` (JSON) hold."""
    return Message.from_dict(dict(json.loads(fields), seq=seq))


def decode_published(data):
    """The Message in a published entry: '<seq> <json>'."""
    seq, fields = data.split(" ", 1)
    return decode_message(int(seq), fields)


def seq_of(entry_id):
    """The sequence number a stream entry id ('<seq>-0') holds."""
    return int(entry_id.split("-", 1)[0])


def decode_stream(entries):
    """The Messages in stream entries as a script returns them, [id, [field, value, ...]]."""
    return tuple(
        decode_message(seq_of(entry_id), dict(zip(fields[::2], fields[1::2], strict=True))["m"])
        for entry_id, fields in entries
    )


# Redis away (or loading), or a cluster without a master for some slot (failing over).
CONNECTION_ERRORS = (redis.ConnectionError, redis.TimeoutError, ClusterDownError, RedisClusterException)
CLUSTER_SCHEME = "redis-cluster://"
UNREPLICATED = "The message may not be safe yet; send it again (it will not be doubled)."
# The subscriber's connections wait for frames as long as it takes: no read timeout.
SUBSCRIBER_OPTIONS = {"decode_responses": True, "socket_connect_timeout": 1.0, "retry": Retry(NoBackoff(), 0)}
DOWN_LOG_SECONDS = 10.0  # while Redis stays away, how often a node says it still is
POOL_SIZE = 64  # connections a node's greenlets share (one Redis)
POOL_WAIT_SECONDS = 2.0  # how long a request waits for one of them before 'unavailable'
# How long a message that came early over ZeroMQ waits for those before it: two nodes'
# publishes cross within a millisecond or two on one host; the rest is fetched from Redis.
ZMQ_HOLDBACK_SECONDS = 0.05


class Busy(redis.ConnectionError):
    """Every connection of this node's pool is in use and none came free in time: the node is
    busy (a burst of joins), Redis is not down."""


class WaitingPool(redis.BlockingConnectionPool):
    """redis-py's blocking pool, saying ``Busy`` when no connection came free in time.

    redis-py raises a plain ConnectionError then, as when Redis is away; a node that took a
    burst for an outage marked itself down and put all its members back when it came up,
    which made the burst longer (bench/steady_storm.py: half of 10,000 joins refused).
    """

    def get_connection(self, *args, **kwargs):
        try:
            return super().get_connection(*args, **kwargs)
        except redis.ConnectionError as error:
            if str(error) == "No connection available.":  # the pool's own wait timed out
                raise Busy("all %d connections in use" % self.max_connections) from None
            raise


# Every connection of the pool in use (one Redis; a cluster's pool says MaxConnectionsError).
BUSY_ERRORS = (Busy, redis.exceptions.MaxConnectionsError)


def shared(method):
    """Run a Redis call, timed in the metrics. A failed connection marks the node down and becomes ChatError
    ('unavailable'); an error Redis answers with fails this request alone ('server_error')."""

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return method(self, *args, **kwargs)
        except BUSY_ERRORS:  # a burst here, not Redis down
            raise ChatError("unavailable", "The chat is busy; try again shortly.") from None
        except CONNECTION_ERRORS as error:
            self._went_down(error)
            raise ChatError("unavailable", "The chat is briefly unavailable; try again shortly.") from None
        except redis.RedisError:
            log.exception("Redis refused %s", method.__name__)
            raise ChatError("server_error", "The server could not do that; try again.") from None
        finally:
            self.metrics.backplane_call(method.__name__, time.perf_counter() - started)

    return call


class RedisBackplane:
    """Shared chat state in Redis or a Redis Cluster; fan-out through a channel per room.

    ``url``: ``redis://host:port/db`` for one Redis, ``redis-cluster://host:port[,host:port...]``
    for a Redis Cluster (any of its servers; the client finds the rest). ``fanout``: None
    (Redis pub/sub) or ``zmq://HOST:PORT``, a forwarder (``python -m chatwsgi.forwarder``).
    """

    name = "redis"

    def __init__(
        self,
        url="redis://127.0.0.1:6379/0",
        node=None,
        ttl=10.0,
        history_size=15,
        max_rooms=1000,
        prefix="chatwsgi:",
        remembered_ids=1000,
        new_epoch=lambda: secrets.token_urlsafe(6),
        retention=None,
        metrics=NO_METRICS,
        wait_ms=None,
        fanout=None,
        holdback=None,
        pool_size=POOL_SIZE,
    ):
        self.url, self.ttl, self.prefix = url, ttl, prefix
        self.node = node or "%s-%d" % (socket.gethostname(), os.getpid())
        self.retention = retention or Retention(shown=history_size)
        self.metrics = metrics
        self.max_rooms = max_rooms
        self.remembered_ids = remembered_ids
        self.new_epoch = new_epoch
        self.node_channel = self._node_channel(self.node)
        self.cluster = url.startswith(CLUSTER_SCHEME)
        if self.cluster:
            self.redis = self._cluster_client(url)
        else:
            # Fail fast while Redis is down: a client gets an error in about a second, never a
            # hang. Greenlets share ``pool_size`` connections and wait (up to 2 s) for a free
            # one under a burst, such as every client of a dead node reconnecting here at once.
            pool = WaitingPool.from_url(
                url,
                decode_responses=True,
                socket_timeout=2.0,
                socket_connect_timeout=1.0,
                retry=Retry(NoBackoff(), 0),
                max_connections=pool_size,
                timeout=POOL_WAIT_SECONDS,
            )
            self.redis = redis.Redis(connection_pool=pool)
        self._publish = "SPUBLISH" if self.cluster else "PUBLISH"
        self.fanout = ZmqFanout(fanout) if fanout else None
        if holdback is None:
            holdback = ZMQ_HOLDBACK_SECONDS if self.fanout else 0.0  # Redis pub/sub keeps order
        self.holdback = Holdback(holdback)
        # Acks wait (up to this, ms) for a replica to hold the message, so a failover cannot
        # lose an acked one. On by default on a cluster (whose masters have replicas).
        self.wait_ms = (100 if self.cluster else 0) if wait_ms is None else wait_ms
        self._watched = set()  # rooms whose channel this node wants: someone here is in them
        self._links = None  # the subscriber's connections, while it has them
        self.listener = None
        self.sequencer = Sequencer()
        self._generation = None  # the id of the data Redis held when this node last looked
        self._up = False
        self._up_since = None
        self._ever_up = False
        self._down_said = None  # when this node last logged that Redis is down (None: not down)
        self._ready = gevent.event.Event()
        self._greenlets = []
        # Read once at start; redis-py runs each by its SHA (EVALSHA), loading it on NOSCRIPT.
        self._scripts = {name: self.redis.register_script(load_script(name)) for name in SCRIPT_NAMES}
        # With the ZeroMQ bus on one Redis, posts that queue up while one is in flight go
        # together (batching.py): 41 -> 13 µs of Redis CPU per message (bench/redis_post.py).
        # Not with Redis pub/sub, whose publishes in a batch cost more than they save at 16
        # posters (42 -> 58 µs), nor on a cluster, whose posts each wait for a replica.
        batched = self.fanout is not None and not self.cluster
        self._posts = ScriptBatcher(self.redis, self._scripts["post"]) if batched else None

    # --- lifecycle -------------------------------------------------------------------------

    def start(self):
        """Spawn the subscriber and the keeper; wait up to ``ttl`` for a first connection."""
        if not monkey.is_module_patched("socket"):
            raise RuntimeError("The Redis backplane needs gevent.monkey.patch_all() before start().")
        self._greenlets = [gevent.spawn(self._subscribe_forever), gevent.spawn(self._keep_forever)]
        self._ready.wait(self.ttl)

    def stop(self):
        """Depart this node's members (announcing their leave) and stop the greenlets."""
        try:
            self._reap(self.node)
            self.redis.delete(self._key("node", self.node, "alive"))
            self.redis.srem(self._key("nodes"), self.node)
        except (redis.RedisError, ChatError) as error:  # announcing the leaves fails the same way
            log.warning("could not depart from the backplane: %s", error)
        gevent.killall(self._greenlets)
        self.close()

    def close(self):
        """Close every connection to Redis (the pool's and the subscriber's)."""
        if self._links is not None:
            self._links.close()
        if self.fanout is not None:
            self.fanout.close()
        if self.cluster:
            self.redis.close()
        else:
            self.redis.connection_pool.disconnect()  # a pool passed in: close() would leave it open

    def state(self):
        """'up' or 'down': whether this node reaches Redis."""
        return "up" if self._up else "down"

    # --- nicknames -------------------------------------------------------------------------

    @shared
    def claim(self, nickname, owner, token, new_token, restoring=False):
        """Own ``nickname`` cluster-wide; return (token, evicted owner or None).

        ``restoring``: this node putting back what its member held, the one claim allowed
        in the grace after Redis lost its data.
        """
        folded = nickname.casefold()
        # The generation is checked apart from the claim (its keys are in another slot): Redis
        # losing its data between the two (one round trip) lets that one claim through without
        # the grace. On a cluster it speaks for its own shard only: a shard that lost master
        # and replica at once loses its nicknames unnoticed (replicas and the AOF guard that).
        status = self._claimable(restoring)
        if status == "reset":  # Redis lost its data since this node last looked
            self._check_generation()
            status = self._claimable(restoring)
        if status:
            raise ChatError(
                "unavailable", "The chat is restoring after a restart; try again in a few seconds."
            )
        # Recorded first, claimed second (two slots): a nickname is never held by an owner
        # whose record does not list it, so a departure or a reap always frees it. A claim
        # that fails leaves a stale entry in the record, which a departure checks and skips.
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(self._owner_key(owner), mapping={"node": self.node, "n:" + folded: "1"})
            pipe.sadd(self._key("node", self.node, "owners"), owner)
            pipe.execute()
        args = (owner, token or "", new_token())
        token, evicted = self._run("claim", [self._key("nick", folded)], *args)
        if not token:
            raise ChatError("nickname_taken", "The nickname %r is taken." % nickname)
        return token, evicted or None

    @shared
    def release(self, nickname, owner):
        """Free ``nickname`` if ``owner`` still holds it."""
        self._release(nickname.casefold(), owner)
        self.redis.hdel(self._owner_key(owner), "n:" + nickname.casefold())

    @shared
    def depart(self, owner, nickname=""):
        """A connection ended: off every roster, its nickname freed; return the rooms it left."""
        return sorted(room for room, _ in self._depart(owner)[1])

    @shared
    def evict(self, owner):
        """Depart an owner another node holds, and tell that node to close its connection."""
        node, left = self._depart(owner)
        if node:
            self.redis.publish(self._node_channel(node), "e" + owner)
        return sorted(room for room, _ in left)

    # --- rosters ---------------------------------------------------------------------------

    @shared
    def enter(self, name, owner, nickname):
        """Put ``owner`` on the room's roster; return whether it was not on it before."""
        # Four steps on three slots, each safe to repeat. The room is listed (within the
        # limit), the owner's record names it (so a departure finds the roster), the roster
        # takes the owner, and the room is listed again: a concurrent exit that saw the room
        # empty and unlisted it re-checks the roster after, so one of the two lists it.
        self._watch(name)  # subscribed before the history is read (see history)
        if self._run("admit", [self._key("rooms")], name, self.max_rooms, DEFAULT_ROOM) < 0:
            raise ChatError("too_many_rooms", "The server holds no more rooms.")
        self.redis.hset(self._owner_key(owner), "r:" + name, "1")
        newly = self._run(
            "enter", self._room_keys(name, "members", "epoch"), owner, nickname, self.new_epoch()
        )
        self.redis.sadd(self._key("rooms"), name)
        return bool(newly)

    @shared
    def exit(self, name, owner):
        """Take ``owner`` off the room's roster; return whether it was on it."""
        nickname = self._exit(name, owner)
        self.redis.hdel(self._owner_key(owner), "r:" + name)
        return bool(nickname)

    @shared
    def rename(self, name, owner, nickname):
        """Show ``owner`` under its new nickname in the room's roster."""
        self.redis.hset(self._room_key(name, "members"), owner, nickname)

    @shared
    def roster(self, name):
        """Nicknames in a room, sorted case-insensitively."""
        return sorted(self.redis.hvals(self._room_key(name, "members")), key=str.casefold)

    @shared
    def count(self, name):
        """How many members a room has, on every node."""
        return self.redis.hlen(self._room_key(name, "members"))

    @shared
    def room_list(self):
        """Rooms with members, and the lobby, with member counts."""
        names = sorted(self.redis.smembers(self._key("rooms")) | {DEFAULT_ROOM})
        with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hlen(self._room_key(name, "members"))
            counts = pipe.execute()
        return [
            {"name": name, "count": count}
            for name, count in zip(names, counts, strict=True)
            if count or name == DEFAULT_ROOM
        ]

    # --- history and fan-out ---------------------------------------------------------------

    @shared
    def post(self, name, author, message_id, text, ts):
        """Store a message once per (author, id) and publish it; return (message, created)."""
        keys = self._room_keys(name, "seq", "log", "ids", "epoch")
        entry = encode_entry(name, message_id, author, text, ts)
        keep = self.retention
        channel = self._channel(name)
        # On ZeroMQ the script stores and this node publishes (below), past Redis.
        published = "" if self.fanout else channel
        args = (entry, ts, keep.shown, keep.seconds, keep.most, self.remembered_ids, published)
        id_key = "%d:%s%s" % (len(author), author.casefold(), message_id)  # unambiguous
        args = (*args, self.new_epoch(), id_key, self._publish, "1" if self.wait_ms else "")
        if self._posts is not None and not self.wait_ms:
            seq, created = self._posts.run(keys, args)
        elif not self.wait_ms:
            seq, created = self._run("post", keys, *args)
        else:
            seq, created = self._post_replicated(keys, args)
        if created and self.fanout is not None:
            # Published after it is stored, so a node that sees a later seq first finds this one
            # in Redis. A retry (not created) publishes nothing: a node that missed the first
            # publish (this one died before it) finds the message by its sweep.
            self.fanout.publish(channel, "m%d %s" % (seq, entry))
        return Message(name, seq, message_id, author, text, ts), bool(created)

    def _post_replicated(self, keys, args):
        """Post, then WAIT for a replica to hold it, on the same connection (WAIT counts the
        writes of its own connection). None did within ``wait_ms``: refuse with 'unavailable'.
        The message may be stored all the same: the sender's retry (same id) then gets it.
        A master with no replica connected acks without one."""
        client = self.redis
        if self.cluster:  # the connection to the master of the room's slot
            client = self.redis.get_node_from_key(keys[0]).redis_connection
        with client.pipeline(transaction=False) as pipe:
            self._scripts["post"](keys=keys, args=args, client=pipe)
            pipe.execute_command("WAIT", 1, self.wait_ms)
            try:
                (seq, created), replicas = pipe.execute()
            except (redis.exceptions.MovedError, redis.exceptions.AskError):
                self.redis.nodes_manager.initialize()  # a failover moved the slot: the retry finds it
                raise ChatError("unavailable", UNREPLICATED) from None
        if replicas < 1 and client.info("replication")["connected_slaves"]:
            # A replica is there but did not answer in time: not a connection failure (this
            # node stays up); the sender retries.
            log.warning("no replica acknowledged a message of %s within %d ms", keys[0], self.wait_ms)
            raise ChatError("unavailable", UNREPLICATED)
        # No replica at all (it took over from a dead master and has none of its own yet):
        # acked as one Redis would, rather than never; a replica added back restores the wait.
        return seq, created

    @shared
    def history(self, name, after=None, epoch=None, limit=CATCH_UP_PAGE):
        """The room's recent history, or a page of it after sequence number ``after`` of
        history ``epoch``. Members here have the room up to its last message: the
        subscriber follows it from there (subscribed first: a message stored meanwhile
        arrives live, maybe in the history too, never in neither)."""
        self._watch(name)
        if after is None:
            return self._recent(name)
        room_epoch, last_seq, oldest_id, entries = self._stored_from(name, after + 1, limit + 1)
        self.sequencer.follow(name, room_epoch, last_seq)
        if saw_another_history(room_epoch, last_seq, after, epoch):
            return CatchUp(name, self._recent(name).messages, False, room_epoch)
        oldest_seq = seq_of(oldest_id) if oldest_id else last_seq + 1
        return catch_up(name, room_epoch, oldest_seq, decode_stream(entries), after, limit)

    def _recent(self, name):
        room_epoch, last_seq, entries = self._run(
            "recent", self._room_keys(name), self.new_epoch(), self.retention.shown
        )
        self.sequencer.follow(name, room_epoch, int(last_seq))
        return CatchUp(name, decode_stream(reversed(entries)), True, room_epoch)

    @shared
    def older(self, name, before, limit=OLDER_PAGE):
        """A page of the room's history before sequence number ``before``, newest last."""
        first_not_wanted = "%d-0" % max(before, 1)  # no entry is below 1-0
        epoch, entries = self._run(
            "older", self._room_keys(name), self.new_epoch(), first_not_wanted, limit + 1
        )
        return older(name, epoch, decode_stream(entries), limit)

    @shared
    def publish(self, name, frame, exclude=None):
        """Deliver a frame to the room's members on every node but ``exclude``."""
        data = "f%s %s %s" % (name, exclude or "", frame)
        if self.fanout is not None:
            self.fanout.publish(self._channel(name), data)
        else:
            self.redis.execute_command(self._publish, self._channel(name), data)

    # --- the subscriber --------------------------------------------------------------------

    def _subscribe_forever(self):
        delay = 0.1
        while True:
            links = self._links = self._new_links()
            try:
                links.listen(self.node_channel)
                if self.fanout is not None:  # its subscriptions outlive a Redis outage
                    links.read_from(self.fanout.read_into)
                else:
                    for room in sorted(self._watched):  # a room watched meanwhile is added by _watch
                        links.add(self._channel(room))
                # Subscribed: what arrives from now on queues up behind what was missed.
                self._repair_rooms()
                delay = 0.1
                while True:
                    item = links.next(timeout=self.holdback.wait(time.monotonic()))
                    if item is not None:
                        self._dispatch(*item)
                    for room in self.holdback.due(time.monotonic()):
                        with self._room_errors_logged(room):
                            self._release_held(room)
            except (redis.RedisError, RedisClusterException) as error:
                self._went_down(error)
            finally:
                self._links = None
                links.close()
            gevent.sleep(delay)
            delay = min(delay * 2, 1.0)

    def _new_links(self):
        if not self.cluster:
            connect = lambda _: redis.Redis.from_url(self.url, **SUBSCRIBER_OPTIONS)  # noqa: E731
            return Links(connect, lambda _: "", sharded=False)
        # Which master serves which slot, as the cluster says now (after a failover: the
        # replica that took over).
        self.redis.nodes_manager.initialize()

        def connect(server):
            host, port = server.rsplit(":", 1)
            return redis.Redis(host=host, port=int(port), **SUBSCRIBER_OPTIONS)

        return Links(connect, lambda channel: self.redis.get_node_from_key(channel).name, sharded=True)

    def _watch(self, room):
        """Someone here is in ``room``: subscribe to its channel (the subscriber resubscribes
        every watched room after a reconnect, and repairs what they missed)."""
        if room in self._watched:
            return
        self._watched.add(room)
        if self.fanout is not None:
            # Asynchronous: a message published before the subscription reaches its publisher
            # is lost to this node, and found by the next one's gap or by the sweep.
            self.fanout.subscribe(self._channel(room))
            return
        links = self._links
        if links is not None:
            try:
                links.add(self._channel(room))
            except (*CONNECTION_ERRORS, redis.RedisError) as error:  # the subscriber starts over
                log.info("could not subscribe to room %s yet: %s", room, error)

    def _unwatch(self, room):
        """Nobody here is in ``room`` any more: no work for it on this node."""
        self._watched.discard(room)
        self.sequencer.forget(room)
        self.holdback.drop(room)
        if self.fanout is not None:
            self.fanout.unsubscribe(self._channel(room))
            return
        links = self._links
        if links is not None:
            try:
                links.remove(self._channel(room))
            except (*CONNECTION_ERRORS, redis.RedisError) as error:
                log.info("could not unsubscribe from room %s: %s", room, error)

    def _unwatch_empty_rooms(self):
        for room in sorted(self._watched):
            if not self.listener.receives(room):
                self._unwatch(room)

    def _dispatch(self, channel, data):
        try:
            if channel is None:  # the keeper's sweep: rooms left behind what Redis stored
                self._repair_rooms(data, "the sweep found late")
            elif data[0] == "m":
                self._receive(decode_published(data[1:]))
            elif data[0] == "f":
                room, exclude, frame = data[1:].split(" ", 2)
                self.listener.deliver(room, frame, exclude or None)
            elif data[0] == "e" and channel == self.node_channel:
                self.listener.close(data[1:])
        except CONNECTION_ERRORS:
            raise  # a repair met an outage: subscribe again, which repairs again
        except Exception:
            log.exception("could not dispatch a backplane frame %r", data[:80])

    def _receive(self, message):
        """A message arrived live: delivered in order, after any it jumped over."""
        room = message.room
        if not self.listener.receives(room):  # nobody here: nothing to deliver or follow
            self._unwatch(room)
            return
        verdict = self.sequencer.offer(room, message.seq)
        if verdict is SEEN:
            return
        if verdict is GAP:
            if self.holdback.window:  # those before it may be a moment behind: wait for them
                self.holdback.hold(room, message.seq, message, time.monotonic())
                return
            with self._room_errors_logged(room):  # broken keys: deliver what arrived
                self._fill_gap(room, message.seq)
        self._deliver(message)
        for held in self.holdback.take(room, message.seq + 1):  # those it was the gap of
            self._deliver(held)

    def _release_held(self, room):
        """Deliver the room's held messages, fetching from Redis those still missing."""
        for message in self.holdback.drop(room):
            verdict = self.sequencer.offer(room, message.seq)
            if verdict is SEEN:
                continue
            if verdict is GAP:
                self._fill_gap(room, message.seq)
            self._deliver(message)

    @staticmethod
    @contextlib.contextmanager
    def _room_errors_logged(room):
        """An error Redis answers about one room's keys is logged and the subscriber goes on;
        a failed connection goes up (the subscriber starts over and repairs again)."""
        try:
            yield
        except CONNECTION_ERRORS:
            raise
        except redis.RedisError:
            log.exception("could not fetch what room %s missed", room)

    def _fill_gap(self, room, seq):
        first = self.sequencer.position(room)[1] + 1
        wanted = min(seq - first, REPAIR_MOST)
        entries = self._stored_from(room, first, wanted)[3]
        missed = [message for message in decode_stream(entries) if message.seq < seq]
        for message in missed:
            self._deliver(message)
        if len(missed) < seq - first:  # trimmed before this node could fetch them
            log.warning("room %s: %d messages before %d were gone", room, seq - first - len(missed), seq)
        else:
            log.info("room %s: delivered %d messages pub/sub dropped", room, len(missed))

    def _repair_rooms(self, rooms=None, why="missed while unsubscribed"):
        """Deliver what each followed room with members here (or each of ``rooms``) missed."""
        for room in self.sequencer.rooms() if rooms is None else rooms:
            if self.sequencer.position(room) is None:  # forgotten since the sweep looked
                continue
            if not self.listener.receives(room):
                self.sequencer.forget(room)
                self.holdback.drop(room)
                continue
            with self._room_errors_logged(room):  # broken keys: the other rooms still get theirs
                self._repair_room(room, why)
                self._release_held(room)

    def _repair_room(self, room, why):
        known_epoch, last = self.sequencer.position(room)
        epoch, last_seq, _, entries = self._stored_from(room, last + 1, REPAIR_MOST)
        if known_epoch not in (None, epoch) or last > last_seq:  # Redis lost the room
            self.sequencer.restart(room, epoch)
            entries = self._stored_from(room, 1, REPAIR_MOST)[3]
        for message in decode_stream(entries):
            self._deliver(message, epoch)
        if entries:
            log.info("room %s: delivered %d messages %s", room, len(entries), why)

    def _deliver(self, message, epoch=None):
        self.sequencer.delivered(message.room, message.seq, epoch)
        self.listener.deliver_message(message)

    # --- the keeper: heartbeat, reconnect, generation, reaping -------------------------------

    def _keep_forever(self):
        beat, delay = self.ttl / 5.0, 0.1
        while True:
            try:
                self._beat()
                delay = beat
            except (*CONNECTION_ERRORS, ChatError) as error:  # ChatError: a restore met the outage
                self._went_down(error)
                delay = min(max(delay * 2, 0.1), 1.0)
            except Exception:
                log.exception("backplane keeper")
                delay = beat
            gevent.sleep(delay)

    def _beat(self):
        # The key outlives a beat by a margin, and expires 0.8 ttl after the last one: with
        # reaping checked every 0.2 ttl, a dead node's members leave within the ttl.
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(self._key("node", self.node, "alive"), "1", px=int(self.ttl * 800))
            pipe.sadd(self._key("nodes"), self.node)
            pipe.execute()
        if not self._up:
            self._came_up()
        else:
            self._check_generation()
        self._unwatch_empty_rooms()
        if self.fanout is not None:
            self._sweep()
        if self._clock() - self._up_since >= self.ttl:
            # Only after a full ttl up: every live node has refreshed its key by then.
            self._reap_dead_nodes()

    def _sweep(self):
        """Have the subscriber repair the rooms still behind what Redis stored a beat ago."""
        rooms = self.sequencer.rooms()
        with self.redis.pipeline(transaction=False) as pipe:
            for room in rooms:
                pipe.get(self._room_key(room, "seq"))
            stored = {room: int(seq) for room, seq in zip(rooms, pipe.execute(), strict=True) if seq}
        late = self.sequencer.overdue(stored)
        links = self._links
        if late and links is not None:
            links.inbox.put((None, late))

    def _came_up(self):
        self._up, self._up_since = True, self._clock()
        # At the level of the outage's warnings, so whoever saw "down" also sees "up".
        level = logging.INFO if self._down_said is None else logging.WARNING
        log.log(level, "backplane %s up as node %s", self.url, self.node)
        self._down_said = None
        if not self._ever_up:
            self._ever_up = True
            self._check_generation()
            self._reap(self.node)  # what a previous process with this node id left behind
        elif not self._check_generation():
            self._restore()
        self._ready.set()

    def _check_generation(self):
        """Make sure Redis has a generation; if it changed since this node last looked (Redis
        lost its data), put this node's members back. Returns whether it did."""
        seen = self._generation
        self._generation = self._run(
            "generation", self._meta_keys(), self.new_epoch(), int(self.ttl * 1000), "1" if seen else ""
        )
        if seen is None or seen == self._generation:
            return False
        log.warning("Redis lost its data; putting this node's members back")
        self._restore()
        return True

    def _restore(self):
        """After an outage: put this node's members back, depart owners it no longer has.

        Redis may have lost them (restarted empty) or a peer may have reaped this node
        while it could not beat.
        """
        here = self.listener.restore()
        for owner in self.redis.smembers(self._key("node", self.node, "owners")) - here:
            for room, nickname in self._depart(owner)[1]:
                self.listener.left(room, nickname)

    def _went_down(self, error):
        if isinstance(error, BUSY_ERRORS):
            # The pool was busy (a burst of requests), Redis is not down: the keeper and the
            # subscriber retry, and nothing is put back as after an outage.
            log.info("backplane %s busy: %s", self.url, error)
            return
        # Said at once (the first failed attempt, or up -> down), then every DOWN_LOG_SECONDS
        # while it lasts, not once per retry: both greenlets retry about every second.
        now = self._clock()
        if self._up or self._down_said is None or now - self._down_said >= DOWN_LOG_SECONDS:
            self._down_said = now
            log.warning(
                "backplane %s down: %s (retrying; chat requests get 'unavailable' until it is up)",
                self.url,
                error,
            )
        self._up, self._up_since = False, None

    def _reap_dead_nodes(self):
        for node in self.redis.smembers(self._key("nodes")):
            if node == self.node or self.redis.exists(self._key("node", node, "alive")):
                continue
            # One survivor reaps a dead node; the lock outlives a slow reap.
            if self.redis.set(self._key("node", node, "reaper"), self.node, nx=True, ex=60):
                log.warning("node %s stopped beating; its members leave", node)
                self._reap(node)
                self.redis.srem(self._key("nodes"), node)

    def _reap(self, node):
        for owner in self.redis.smembers(self._key("node", node, "owners")):
            for room, nickname in self._depart(owner)[1]:
                self.listener.left(room, nickname)

    # --- plumbing --------------------------------------------------------------------------

    def _depart(self, owner):
        """Off every roster and its nicknames freed, as the owner's record lists them; return
        (its node or '', [(room, nickname), ...] for the rosters it was on).

        Step by step, one slot at a time, the record dropped last: a departure cut short
        (an outage, a crash) leaves the record, and the next one (a retry, the reap of a
        dead node) finishes it. Each step checks before it removes, so a repeat is harmless.
        """
        record = self.redis.hgetall(self._owner_key(owner))
        node = record.get("node", "")
        left = []
        for field in sorted(record):
            if field.startswith("r:"):
                nickname = self._exit(field[2:], owner)
                if nickname:
                    left.append((field[2:], nickname))
            elif field.startswith("n:"):
                self._release(field[2:], owner)
        if node:
            self.redis.srem(self._key("node", node, "owners"), owner)
        self.redis.delete(self._owner_key(owner))
        return node, left

    def _claimable(self, restoring):
        return self._run("claimable", self._meta_keys(), "1" if restoring else "")

    def _meta_keys(self):
        # The generation and its grace, in one slot: checked together before a claim.
        return [self._key("{meta}", "generation"), self._key("{meta}", "grace")]

    def _release(self, folded, owner):
        self._run("release", [self._key("nick", folded)], owner)

    def _exit(self, name, owner):
        """Take ``owner`` off the room's roster (unlisting the room if it empties); return the
        nickname it had there, or ''."""
        nickname, remaining = self._run("exit", self._room_keys(name, "members"), owner)
        if nickname and not remaining and name != DEFAULT_ROOM:
            rooms = self._key("rooms")
            self.redis.srem(rooms, name)
            if self.redis.hlen(self._room_key(name, "members")):  # someone entered meanwhile
                self.redis.sadd(rooms, name)
        return nickname

    def _run(self, name, keys, *args):
        return self._scripts[name](keys=keys, args=args)

    def _stored_from(self, name, first, count):
        """(epoch, last seq, oldest entry id or '', up to ``count`` entries from seq ``first``)."""
        epoch, last_seq, oldest_id, entries = self._run(
            "after", self._room_keys(name), self.new_epoch(), "%d-0" % first, count
        )
        return epoch, int(last_seq), oldest_id, entries

    def _room_keys(self, name, *parts):
        return [self._room_key(name, part) for part in parts or ("epoch", "seq", "log")]

    def _room_key(self, name, part):
        # One hash tag per room: all of a room's keys are in one slot of a Redis Cluster.
        return "%s{room:%s}:%s" % (self.prefix, name, part)

    def _owner_key(self, owner):
        # A hash: 'node', and a field per nickname ('n:<folded>') and room ('r:<name>') held.
        return self._key("owner", owner)

    def _node_channel(self, node):
        return self._key("node", node)

    def _channel(self, name):
        # The room's hash tag: on a cluster, its shard channel lives where its keys do, so
        # the post script can publish to it.
        return self._room_key(name, "fanout")

    @staticmethod
    def _cluster_client(url):
        servers = [server.rsplit(":", 1) for server in url[len(CLUSTER_SCHEME) :].split(",")]
        return RedisCluster(
            startup_nodes=[ClusterNode(host, int(port)) for host, port in servers],
            decode_responses=True,
            socket_timeout=2.0,
            socket_connect_timeout=1.0,
            max_connections=64,
            # Fail fast as on one Redis: a request to a master that died fails ('unavailable'),
            # the client refreshes its slot map, and the user's retry finds the new master.
            retry=Retry(NoBackoff(), 0),
        )

    def _key(self, *parts):
        return self.prefix + ":".join(str(part) for part in parts)

    @staticmethod
    def _clock():
        return gevent.get_hub().loop.now()
