"""The Redis backplane: nicknames, rosters, history and fan-out shared by every node.

The I/O twin of ``backplane.LocalBackplane``, with the same methods and return shapes.
Each change to shared state is one Lua script, so it is atomic across nodes; posting a
message takes its sequence number, stores it in the room's stream (``room:<name>:log``,
entry id ``<seq>-0``, kept as ``rooms.Retention`` says) and publishes it in one script.

Pub/sub drops what a node misses while its subscription is down, so a node never trusts
it to be complete: a ``sequencing.Sequencer`` delivers each room's messages in order,
fetching from the stream any it did not receive, and every (re)subscription starts by
fetching what the node's rooms missed meanwhile.

Redis restarted without its data loses every nickname: the ``generation`` key tells.
The first node to notice makes a new one and, if it knew the old one, opens a grace of
one node ttl in which only nodes putting back their own members may claim nicknames;
every live node notices within a beat and puts its members back.

Per process, two greenlets (never one per connection):
- the *subscriber* receives every node's frames on one channel, and this node's
  evictions on its own, and hands them to the listener (the ChatService) in order;
- the *keeper* refreshes this node's heartbeat key (expiring after ``ttl`` seconds),
  reconnects with backoff after an outage, checks the generation, and reaps nodes whose
  heartbeat lapsed: their members leave every roster and their nicknames are freed.

Only a failed connection marks the node down (clients get ``unavailable``); an error
Redis answers with fails that one request (``server_error``) and is logged.

Redis calls block their greenlet only when ``socket`` is gevent's: serve.py
monkey-patches; an embedding app must do the same.
"""

import functools
import json
import logging
import os
import secrets
import socket
import time

import gevent
import gevent.event
import redis
from gevent import monkey
from redis.backoff import NoBackoff
from redis.retry import Retry

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
from chatwsgi.sequencing import GAP, SEEN, Sequencer

log = logging.getLogger(__name__)

# KEYS nick:<folded>, generation, grace. ARGV owner, offered token, new token, node,
# folded, prefix, restoring ('1' or ''). Returns {token, evicted owner, status}: status
# 'reset' (no generation: Redis lost its data), 'grace' (only restoring claims for now),
# or '' with '' evicted for none and '' token for taken.
CLAIM = """
if redis.call('EXISTS', KEYS[2]) == 0 then return {'', '', 'reset'} end
if ARGV[7] == '' and redis.call('EXISTS', KEYS[3]) == 1 then return {'', '', 'grace'} end
local p, owner = ARGV[6], ARGV[1]
local holder = redis.call('HMGET', KEYS[1], 'owner', 'token')
local token, evicted = ARGV[3], ''
if holder[1] == owner then
  token = holder[2]
elseif holder[1] then
  if ARGV[2] == '' or ARGV[2] ~= holder[2] then return {'', '', ''} end
  token, evicted = holder[2], holder[1]
end
redis.call('HSET', KEYS[1], 'owner', owner, 'token', token)
redis.call('HSET', p .. 'owner:' .. owner, 'node', ARGV[4], 'nick', ARGV[5])
redis.call('SADD', p .. 'node:' .. ARGV[4] .. ':owners', owner)
return {token, evicted, ''}
"""

# KEYS generation, grace. ARGV new generation, grace (ms), '1' if the caller knew an older
# one (the data was lost, not never there). Returns the generation.
GENERATION = """
local current = redis.call('GET', KEYS[1])
if current then return current end
redis.call('SET', KEYS[1], ARGV[1])
if ARGV[3] == '1' then redis.call('SET', KEYS[2], '1', 'PX', ARGV[2]) end
return ARGV[1]
"""

# KEYS[1] nick:<folded>. ARGV owner.
RELEASE = """
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then redis.call('DEL', KEYS[1]) end
"""

# ARGV room, owner, nickname, max rooms, new epoch, prefix, default room.
# Returns 1 newly, 0 already, -1 full. The default room always counts, as in memory.
ENTER = """
local p, room, owner = ARGV[6], ARGV[1], ARGV[2]
local rooms = p .. 'rooms'
redis.call('SADD', rooms, ARGV[7])
if redis.call('SISMEMBER', rooms, room) == 0 and redis.call('SCARD', rooms) >= tonumber(ARGV[4]) then
  return -1
end
redis.call('SADD', rooms, room)
redis.call('SET', p .. 'room:' .. room .. ':epoch', ARGV[5], 'NX')
redis.call('SADD', p .. 'owner:' .. owner .. ':rooms', room)
return redis.call('HSET', p .. 'room:' .. room .. ':members', owner, ARGV[3])
"""

# ARGV room, owner, prefix. Returns the nickname taken off the roster, or ''.
EXIT = """
local p, room, owner = ARGV[3], ARGV[1], ARGV[2]
local members = p .. 'room:' .. room .. ':members'
redis.call('SREM', p .. 'owner:' .. owner .. ':rooms', room)
local nickname = redis.call('HGET', members, owner)
if not nickname then return '' end
redis.call('HDEL', members, owner)
if room ~= ARGV[4] and redis.call('HLEN', members) == 0 then redis.call('SREM', p .. 'rooms', room) end
return nickname
"""

# ARGV owner, prefix, default room. Off every roster, nickname freed, records dropped.
# Returns {node, {room, nickname, room, nickname, ...}} for the rosters it was on.
DEPART = """
local p, owner = ARGV[2], ARGV[1]
local record_key = p .. 'owner:' .. owner
local left = {}
for _, room in ipairs(redis.call('SMEMBERS', record_key .. ':rooms')) do
  local members = p .. 'room:' .. room .. ':members'
  local nickname = redis.call('HGET', members, owner)
  if nickname then
    redis.call('HDEL', members, owner)
    if room ~= ARGV[3] and redis.call('HLEN', members) == 0 then redis.call('SREM', p .. 'rooms', room) end
    table.insert(left, room)
    table.insert(left, nickname)
  end
end
local record = redis.call('HMGET', record_key, 'node', 'nick')
if record[2] then
  local nick = p .. 'nick:' .. record[2]
  if redis.call('HGET', nick, 'owner') == owner then redis.call('DEL', nick) end
end
if record[1] then redis.call('SREM', p .. 'node:' .. record[1] .. ':owners', owner) end
redis.call('DEL', record_key, record_key .. ':rooms')
return {record[1] or '', left}
"""

# KEYS seq, log, id key, epoch. ARGV message JSON without seq, ts, shown, seconds, most,
# id lifetime (s), channel, new epoch. Returns {seq, created}. Retention: at most ``most``
# entries; past ``shown`` ones, those older than ``seconds`` go, two per post at most
# (a stream that ages empties faster than it fills, and no post pays for a long trim).
POST = """
local seen = redis.call('GET', KEYS[3])
if seen then return {tonumber(seen), 0} end
redis.call('SET', KEYS[4], ARGV[8], 'NX')
local seq = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], seq .. '-0', 't', ARGV[2], 'm', ARGV[1])
local shown, most = tonumber(ARGV[3]), tonumber(ARGV[5])
local cutoff = tonumber(ARGV[2]) - tonumber(ARGV[4])
local kept = redis.call('XLEN', KEYS[2])
if kept > most then
  redis.call('XTRIM', KEYS[2], 'MAXLEN', most)
  kept = most
end
for _ = 1, 2 do
  if kept <= shown then break end
  local oldest = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1]
  if tonumber(oldest[2][2]) >= cutoff then break end
  redis.call('XTRIM', KEYS[2], 'MINID', (tonumber(string.match(oldest[1], '^%d+')) + 1) .. '-0')
  kept = kept - 1
end
redis.call('SET', KEYS[3], seq, 'EX', ARGV[6])
redis.call('PUBLISH', ARGV[7], 'm' .. seq .. ' ' .. ARGV[1])
return {seq, 1}
"""

# KEYS epoch, seq, log. ARGV new epoch, how many. Returns {epoch, last seq, the last
# entries, newest first}.
RECENT = """
redis.call('SET', KEYS[1], ARGV[1], 'NX')
local entries = {}
if tonumber(ARGV[2]) > 0 then entries = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', ARGV[2]) end
return {redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2]) or '0', entries}
"""

# KEYS epoch, seq, log. ARGV new epoch, first entry id wanted, how many. Returns {epoch,
# last seq, oldest entry id ('' if none), entries from the first wanted, oldest first}.
AFTER = """
redis.call('SET', KEYS[1], ARGV[1], 'NX')
local oldest = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', 1)[1]
return {
  redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2]) or '0', oldest and oldest[1] or '',
  redis.call('XRANGE', KEYS[3], ARGV[2], '+', 'COUNT', ARGV[3])
}
"""

# KEYS epoch, seq, log. ARGV new epoch, first entry id not wanted, how many. Returns {epoch,
# entries before that id, newest first}.
OLDER = """
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return {redis.call('GET', KEYS[1]), redis.call('XREVRANGE', KEYS[3], '(' .. ARGV[2], '-', 'COUNT', ARGV[3])}
"""

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


CONNECTION_ERRORS = (redis.ConnectionError, redis.TimeoutError)  # Redis away (or loading)
DOWN_LOG_SECONDS = 10.0  # while Redis stays away, how often a node says it still is


def shared(method):
    """Run a Redis call, timed in the metrics. A failed connection marks the node down and becomes ChatError
    ('unavailable'); an error Redis answers with fails this request alone ('server_error')."""

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return method(self, *args, **kwargs)
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
    """Shared chat state in Redis; fan-out through one pub/sub channel."""

    name = "redis"

    def __init__(
        self,
        url="redis://127.0.0.1:6379/0",
        node=None,
        ttl=10.0,
        history_size=15,
        max_rooms=1000,
        prefix="chatwsgi:",
        remembered_ids_seconds=86400,
        new_epoch=lambda: secrets.token_urlsafe(6),
        retention=None,
        metrics=NO_METRICS,
    ):
        self.url, self.ttl, self.prefix = url, ttl, prefix
        self.node = node or "%s-%d" % (socket.gethostname(), os.getpid())
        self.retention = retention or Retention(shown=history_size)
        self.metrics = metrics
        self.max_rooms = max_rooms
        self.remembered_ids_seconds = remembered_ids_seconds
        self.new_epoch = new_epoch
        self.channel = prefix + "fanout"
        self.node_channel = prefix + "node:" + self.node
        # Fail fast while Redis is down: a client gets an error in about a second, never a hang.
        # Greenlets share 64 connections and wait (up to 2 s) for a free one under a burst,
        # such as every client of a dead node reconnecting here at once.
        pool = redis.BlockingConnectionPool.from_url(
            url,
            decode_responses=True,
            socket_timeout=2.0,
            socket_connect_timeout=1.0,
            retry=Retry(NoBackoff(), 0),
            max_connections=64,
            timeout=2.0,
        )
        self.redis = redis.Redis(connection_pool=pool)
        # The subscriber's connection waits for frames as long as it takes: no read timeout.
        self.subscriber = redis.Redis.from_url(
            url, decode_responses=True, socket_connect_timeout=1.0, retry=Retry(NoBackoff(), 0)
        )
        self.listener = None
        self.sequencer = Sequencer()
        self._generation = None  # the id of the data Redis held when this node last looked
        self._up = False
        self._up_since = None
        self._ever_up = False
        self._down_said = None  # when this node last logged that Redis is down (None: not down)
        self._ready = gevent.event.Event()
        self._greenlets = []
        self._scripts = {}

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
        self.redis.connection_pool.disconnect()
        self.subscriber.connection_pool.disconnect()

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
        keys = [self._key("nick", folded), self._key("generation"), self._key("grace")]
        args = (owner, token or "", new_token(), self.node, folded, self.prefix, "1" if restoring else "")
        token, evicted, status = self._run(CLAIM, keys, *args)
        if status == "reset":  # Redis lost its data since this node last looked
            self._check_generation()
            token, evicted, status = self._run(CLAIM, keys, *args)
        if status:
            raise ChatError(
                "unavailable", "The chat is restoring after a restart; try again in a few seconds."
            )
        if not token:
            raise ChatError("nickname_taken", "The nickname %r is taken." % nickname)
        return token, evicted or None

    @shared
    def release(self, nickname, owner):
        """Free ``nickname`` if ``owner`` still holds it."""
        self._run(RELEASE, [self._key("nick", nickname.casefold())], owner)

    @shared
    def depart(self, owner, nickname=""):
        """A connection ended: off every roster, its nickname freed; return the rooms it left."""
        return sorted(room for room, _ in self._depart(owner)[1])

    @shared
    def evict(self, owner):
        """Depart an owner another node holds, and tell that node to close its connection."""
        node, left = self._depart(owner)
        if node:
            self.redis.publish(self._key("node", node), "e" + owner)
        return sorted(room for room, _ in left)

    # --- rosters ---------------------------------------------------------------------------

    @shared
    def enter(self, name, owner, nickname):
        """Put ``owner`` on the room's roster; return whether it was not on it before."""
        args = (name, owner, nickname, self.max_rooms, self.new_epoch(), self.prefix, DEFAULT_ROOM)
        newly = self._run(ENTER, [], *args)
        if newly < 0:
            raise ChatError("too_many_rooms", "The server holds no more rooms.")
        return bool(newly)

    @shared
    def exit(self, name, owner):
        """Take ``owner`` off the room's roster; return whether it was on it."""
        return bool(self._run(EXIT, [], name, owner, self.prefix, DEFAULT_ROOM))

    @shared
    def rename(self, name, owner, nickname):
        """Show ``owner`` under its new nickname in the room's roster."""
        self.redis.hset(self._key("room", name, "members"), owner, nickname)

    @shared
    def roster(self, name):
        """Nicknames in a room, sorted case-insensitively."""
        return sorted(self.redis.hvals(self._key("room", name, "members")), key=str.casefold)

    @shared
    def count(self, name):
        """How many members a room has, on every node."""
        return self.redis.hlen(self._key("room", name, "members"))

    @shared
    def room_list(self):
        """Rooms with members, and the lobby, with member counts."""
        names = sorted(self.redis.smembers(self._key("rooms")) | {DEFAULT_ROOM})
        with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hlen(self._key("room", name, "members"))
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
        keys = [
            self._key("room", name, "seq"),
            self._key("room", name, "log"),
            self._key("room", name, "id", author.casefold(), message_id),
            self._key("room", name, "epoch"),
        ]
        entry = encode_entry(name, message_id, author, text, ts)
        keep = self.retention
        args = (entry, ts, keep.shown, keep.seconds, keep.most, self.remembered_ids_seconds, self.channel)
        seq, created = self._run(POST, keys, *args, self.new_epoch())
        return Message(name, seq, message_id, author, text, ts), bool(created)

    @shared
    def history(self, name, after=None, epoch=None, limit=CATCH_UP_PAGE):
        """The room's recent history, or a page of it after sequence number ``after`` of
        history ``epoch``. Members here have the room up to its last message: the
        subscriber follows it from there."""
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
            RECENT, self._room_keys(name), self.new_epoch(), self.retention.shown
        )
        self.sequencer.follow(name, room_epoch, int(last_seq))
        return CatchUp(name, decode_stream(reversed(entries)), True, room_epoch)

    @shared
    def older(self, name, before, limit=OLDER_PAGE):
        """A page of the room's history before sequence number ``before``, newest last."""
        first_not_wanted = "%d-0" % max(before, 1)  # no entry is below 1-0
        epoch, entries = self._run(
            OLDER, self._room_keys(name), self.new_epoch(), first_not_wanted, limit + 1
        )
        return older(name, epoch, decode_stream(entries), limit)

    @shared
    def publish(self, name, frame, exclude=None):
        """Deliver a frame to the room's members on every node but ``exclude``."""
        self.redis.publish(self.channel, "f%s %s %s" % (name, exclude or "", frame))

    # --- the subscriber --------------------------------------------------------------------

    def _subscribe_forever(self):
        delay = 0.1
        while True:
            pubsub = self.subscriber.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self.channel, self.node_channel)
                # Subscribed: what arrives from now on queues up behind what was missed.
                self._repair_rooms()
                delay = 0.1
                for item in pubsub.listen():
                    self._dispatch(item["channel"], item["data"])
            except redis.RedisError as error:
                self._went_down(error)
            finally:
                pubsub.close()
            gevent.sleep(delay)
            delay = min(delay * 2, 1.0)

    def _dispatch(self, channel, data):
        try:
            if data[0] == "m":
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
            self.sequencer.forget(room)
            return
        verdict = self.sequencer.offer(room, message.seq)
        if verdict is SEEN:
            return
        if verdict is GAP:
            try:
                self._fill_gap(room, message.seq)
            except CONNECTION_ERRORS:
                raise
            except redis.RedisError:  # the room's keys are broken: deliver what arrived
                log.exception("could not fetch what room %s missed before %d", room, message.seq)
        self._deliver(message)

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

    def _repair_rooms(self):
        """Deliver what each followed room with members here missed while unsubscribed."""
        for room in self.sequencer.rooms():
            if not self.listener.receives(room):
                self.sequencer.forget(room)
                continue
            try:
                self._repair_room(room)
            except CONNECTION_ERRORS:
                raise
            except redis.RedisError:  # this room's keys are broken: the others still get theirs
                log.exception("could not repair room %s", room)

    def _repair_room(self, room):
        known_epoch, last = self.sequencer.position(room)
        epoch, last_seq, _, entries = self._stored_from(room, last + 1, REPAIR_MOST)
        if known_epoch not in (None, epoch) or last > last_seq:  # Redis lost the room
            self.sequencer.restart(room, epoch)
            entries = self._stored_from(room, 1, REPAIR_MOST)[3]
        for message in decode_stream(entries):
            self._deliver(message, epoch)
        if entries:
            log.info("room %s: delivered %d messages missed while unsubscribed", room, len(entries))

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
        if self._clock() - self._up_since >= self.ttl:
            # Only after a full ttl up: every live node has refreshed its key by then.
            self._reap_dead_nodes()

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
            GENERATION, [self._key("generation"), self._key("grace")],
            self.new_epoch(), int(self.ttl * 1000), "1" if seen else "",
        )  # fmt: skip
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
        node, flat = self._run(DEPART, [], owner, self.prefix, DEFAULT_ROOM)
        return node, list(zip(flat[::2], flat[1::2], strict=True))

    def _run(self, script, keys, *args):
        registered = self._scripts.get(script)
        if registered is None:
            registered = self._scripts[script] = self.redis.register_script(script)
        return registered(keys=keys, args=args)

    def _stored_from(self, name, first, count):
        """(epoch, last seq, oldest entry id or '', up to ``count`` entries from seq ``first``)."""
        epoch, last_seq, oldest_id, entries = self._run(
            AFTER, self._room_keys(name), self.new_epoch(), "%d-0" % first, count
        )
        return epoch, int(last_seq), oldest_id, entries

    def _room_keys(self, name):
        return [self._key("room", name, part) for part in ("epoch", "seq", "log")]

    def _key(self, *parts):
        return self.prefix + ":".join(str(part) for part in parts)

    @staticmethod
    def _clock():
        return gevent.get_hub().loop.now()
