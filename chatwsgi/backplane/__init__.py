"""The backplane: chat state every node shares, and fan-out to every node's members.

Two implementations with one interface, held to one contract (tests/live/test_backplanes.py):

- ``local.LocalBackplane``: one process, pure, in memory (history optionally in SQLite);
- ``redis.RedisBackplane``: nodes sharing a Redis (or a Redis Cluster), Lua scripts in
  ``scripts/*.lua``, pub/sub fan-out (``links.py``) or ZeroMQ fan-out through a forwarder
  (``zmq_fanout.py``), node heartbeats, repair of what the bus dropped.

What every backplane provides (owners are connection ids, unique across a cluster):

- ``name`` ('local' or 'redis') and ``state()``: 'local', 'up' or 'down';
- nicknames: ``claim(nickname, owner, token, new_token, restoring=False)`` returning
  (token, evicted owner or None), ``release(nickname, owner)``;
- connections: ``depart(owner, nickname='')`` and ``evict(owner)``, each returning the
  rooms the owner left;
- rosters: ``enter(room, owner, nickname)`` (whether newly), ``exit(room, owner)``
  (whether it was there), ``rename``, ``roster``, ``count``, ``room_list()``;
- history: ``post(room, author, id, text, ts)`` returning (Message, created), once per
  (author, id); ``history(room, after=None, epoch=None, limit)`` and ``older(room,
  before, limit)``, returning ``rooms.CatchUp``;
- fan-out: ``publish(room, frame, exclude=None)``.

What a backplane calls on its *listener* (the ChatService; ``NoListener`` when none):

- ``deliver_message(message)`` for a stored message, once per node, in seq order;
- ``deliver(room, frame, exclude)`` for any other frame;
- ``receives(room)``: whether anyone on this node is in the room;
- Redis only: ``close(owner)`` (another node took the owner's nickname over),
  ``left(room, nickname)`` (a dead node's member was reaped) and ``restore()`` (put this
  node's members back after Redis lost them; returns the owners here).

Errors are ``errors.ChatError``: 'nickname_taken', 'too_many_rooms', and for Redis
'unavailable' (cannot reach it) or 'server_error' (it refused one request).
"""

from chatwsgi.backplane.local import LocalBackplane, NoListener

__all__ = ["LocalBackplane", "NoListener"]
