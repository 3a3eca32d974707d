"""The Redis backplane: nicknames, rosters, history and fan-out shared by every node.

The I/O twin of ``backplane.LocalBackplane``, with the same methods and return shapes.
Each change to shared state is one Lua script, so it is atomic across nodes; posting a
message takes its sequence number, stores it and publishes it in one script, so every
node receives a room's messages in sequence order.

Per process, two greenlets (never one per connection):
- the *subscriber* receives every node's frames on one channel, and this node's
  evictions on its own, and hands them to the listener (the ChatService);
- the *keeper* refreshes this node's heartbeat key (expiring after ``ttl`` seconds),
  reconnects with backoff after an outage, and reaps nodes whose heartbeat lapsed:
  their members leave every roster and their nicknames are freed.

Redis calls block their greenlet only when ``socket`` is gevent's: serve.py
monkey-patches; an embedding app must do the same.
"""

import functools
import json
import logging
import os
import secrets
import socket

import gevent
import gevent.event
import redis
from gevent import monkey
from redis.backoff import NoBackoff
from redis.retry import Retry

from chatwsgi.errors import ChatError
from chatwsgi.rooms import DEFAULT_ROOM, CatchUp, Message, catch_up

log = logging.getLogger(__name__)

# KEYS[1] nick:<folded>. ARGV owner, offered token, new token, node, folded, prefix.
# Returns {token, evicted owner} ('' evicted: none; '' token: taken).
CLAIM = """
local p, owner = ARGV[6], ARGV[1]
local holder = redis.call('HMGET', KEYS[1], 'owner', 'token')
local token, evicted = ARGV[3], ''
if holder[1] == owner then
  token = holder[2]
elseif holder[1] then
  if ARGV[2] == '' or ARGV[2] ~= holder[2] then return {'', ''} end
  token, evicted = holder[2], holder[1]
end
redis.call('HSET', KEYS[1], 'owner', owner, 'token', token)
redis.call('HSET', p .. 'owner:' .. owner, 'node', ARGV[4], 'nick', ARGV[5])
redis.call('SADD', p .. 'node:' .. ARGV[4] .. ':owners', owner)
return {token, evicted}
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

# KEYS seq, history, id key, epoch. ARGV message JSON without seq, history size,
# id lifetime (s), channel, new epoch. Returns {seq, created}.
POST = """
local seen = redis.call('GET', KEYS[3])
if seen then return {tonumber(seen), 0} end
redis.call('SET', KEYS[4], ARGV[5], 'NX')
local seq = redis.call('INCR', KEYS[1])
local entry = seq .. ' ' .. ARGV[1]
local keep = tonumber(ARGV[2])
if keep > 0 then
  redis.call('RPUSH', KEYS[2], entry)
  redis.call('LTRIM', KEYS[2], -keep, -1)
end
redis.call('SET', KEYS[3], seq, 'EX', ARGV[3])
redis.call('PUBLISH', ARGV[4], 'm' .. entry)
return {seq, 1}
"""

# KEYS epoch, seq, history. ARGV new epoch. Returns {epoch, last seq, entries}.
HISTORY = """
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return {redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2]) or '0', redis.call('LRANGE', KEYS[3], 0, -1)}
"""


def encode_entry(room, message_id, author, text, ts):
    """A message as stored and published, less its sequence number (the script prefixes it)."""
    return json.dumps({"room": room, "id": message_id, "author": author, "text": text, "ts": ts})


def decode_entry(entry):
    """The Message in a stored or published entry: '<seq> <json>'."""
    seq, fields = entry.split(" ", 1)
    return Message.from_dict(dict(json.loads(fields), seq=int(seq)))


def shared(method):
    """Run a Redis call; an outage becomes ChatError('unavailable') and marks the node down."""

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except redis.RedisError as error:
            self._went_down(error)
            raise ChatError("unavailable", "The chat is briefly unavailable; try again shortly.") from None

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
    ):
        self.url, self.ttl, self.prefix = url, ttl, prefix
        self.node = node or "%s-%d" % (socket.gethostname(), os.getpid())
        self.history_size, self.max_rooms = history_size, max_rooms
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
        self._up = False
        self._up_since = None
        self._ever_up = False
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
        self.redis.close()
        self.subscriber.close()

    def state(self):
        """'up' or 'down': whether this node reaches Redis."""
        return "up" if self._up else "down"

    # --- nicknames -------------------------------------------------------------------------

    @shared
    def claim(self, nickname, owner, token, new_token):
        """Own ``nickname`` cluster-wide; return (token, evicted owner or None)."""
        folded = nickname.casefold()
        key = self._key("nick", folded)
        token, evicted = self._run(
            CLAIM, [key], owner, token or "", new_token(), self.node, folded, self.prefix
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
            self._key("room", name, "history"),
            self._key("room", name, "id", author.casefold(), message_id),
            self._key("room", name, "epoch"),
        ]
        entry = encode_entry(name, message_id, author, text, ts)
        seq, created = self._run(
            POST, keys, entry, self.history_size, self.remembered_ids_seconds, self.channel, self.new_epoch()
        )
        return Message(name, seq, message_id, author, text, ts), bool(created)

    @shared
    def history(self, name, after=None, epoch=None):
        """The room's history, or the part after sequence number ``after`` of history ``epoch``."""
        keys = [self._key("room", name, k) for k in ("epoch", "seq", "history")]
        room_epoch, last_seq, entries = self._run(HISTORY, keys, self.new_epoch())
        messages = tuple(decode_entry(entry) for entry in entries)
        if after is None:
            return CatchUp(name, messages, True, room_epoch)
        return catch_up(name, room_epoch, int(last_seq), messages, after, epoch)

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
                delay = 0.1
                for item in pubsub.listen():
                    self._dispatch(item["channel"], item["data"])
            except redis.RedisError as error:
                self._went_down(error)
            finally:
                pubsub.close()
            gevent.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _dispatch(self, channel, data):
        try:
            if data[0] == "m":
                self.listener.deliver_message(decode_entry(data[1:]))
            elif data[0] == "f":
                room, exclude, frame = data[1:].split(" ", 2)
                self.listener.deliver(room, frame, exclude or None)
            elif data[0] == "e" and channel == self.node_channel:
                self.listener.close(data[1:])
        except Exception:
            log.exception("could not dispatch a backplane frame %r", data[:80])

    # --- the keeper: heartbeat, reconnect, reaping -----------------------------------------

    def _keep_forever(self):
        beat, delay = self.ttl / 5.0, 0.1
        while True:
            try:
                self._beat()
                delay = beat
            except (redis.RedisError, ChatError) as error:  # ChatError: a restore met the outage
                self._went_down(error)
                delay = min(max(delay * 2, 0.1), 5.0)
            except Exception:
                log.exception("backplane keeper")
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
        if self._clock() - self._up_since >= self.ttl:
            # Only after a full ttl up: every live node has refreshed its key by then.
            self._reap_dead_nodes()

    def _came_up(self):
        self._up, self._up_since = True, self._clock()
        log.info("backplane %s up as node %s", self.url, self.node)
        if not self._ever_up:
            self._ever_up = True
            self._reap(self.node)  # what a previous process with this node id left behind
        else:
            self._restore()
        self._ready.set()

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
        if self._up:
            log.warning("backplane %s down: %s", self.url, error)
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

    def _key(self, *parts):
        return self.prefix + ":".join(str(part) for part in parts)

    @staticmethod
    def _clock():
        return gevent.get_hub().loop.now()
