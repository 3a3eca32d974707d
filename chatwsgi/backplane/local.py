"""The single-process backplane: nicknames, rosters and history kept in memory (or a file).

Pure: no I/O but the optional ``sqlite_store.SqliteStore``. What ``redis.RedisBackplane``
keeps in Redis, with the same methods and return shapes (the interface is in ``__init__``).
"""

import secrets

from chatwsgi.errors import ChatError
from chatwsgi.rooms import CATCH_UP_PAGE, DEFAULT_ROOM, OLDER_PAGE, CatchUp, MemoryStore, Retention


class NoListener:
    """Delivers nothing: the listener of a backplane no service uses (unit tests of Chat)."""

    def deliver(self, room, frame, exclude=None):
        pass

    def deliver_message(self, message):
        pass

    def receives(self, room):
        return False


class LocalBackplane:
    """Nicknames, rosters and history of one process, kept in memory."""

    name = "local"

    def __init__(
        self,
        history_size=15,
        max_rooms=1000,
        new_epoch=lambda: secrets.token_urlsafe(6),
        retention=None,
        store=None,
    ):
        self.retention = retention or Retention(shown=history_size)
        self.max_rooms = max_rooms
        # Where rooms' history lives: memory by default, or a file (sqlite_store.SqliteStore).
        self.store = store or MemoryStore(self.retention, new_epoch)
        self.rooms = {DEFAULT_ROOM: self.store.open(DEFAULT_ROOM)}
        self.listener = NoListener()
        self._nicknames = {}  # folded nickname -> (owner, token)
        self._rooms_of = {}  # owner -> rooms whose roster holds it

    def state(self):
        """'local': this backplane cannot be down."""
        return "local"

    def claim(self, nickname, owner, token, new_token, restoring=False):
        """Own ``nickname`` (unique case-insensitively); return (token, evicted owner or None).

        The holder's token takes it over from a stale owner, who is returned as evicted.
        ``restoring``: a node putting back what its member held (see RedisBackplane).
        """
        folded = nickname.casefold()
        holder = self._nicknames.get(folded)
        evicted = None
        if holder is None:
            token = new_token()
        elif holder[0] == owner:
            token = holder[1]
        elif token and token == holder[1]:
            evicted = holder[0]
        else:
            raise ChatError("nickname_taken", "The nickname %r is taken." % nickname)
        self._nicknames[folded] = (owner, token)
        return token, evicted

    def release(self, nickname, owner):
        """Free ``nickname`` if ``owner`` still holds it."""
        folded = nickname.casefold()
        if self._nicknames.get(folded, (None,))[0] == owner:
            del self._nicknames[folded]

    def depart(self, owner, nickname=""):
        """A connection ended: off every roster, its nickname freed; return the rooms it left."""
        rooms = [name for name in sorted(self._rooms_of.get(owner, ())) if self.exit(name, owner)]
        self._rooms_of.pop(owner, None)
        if nickname:
            self.release(nickname, owner)
        return rooms

    def evict(self, owner):
        """Depart an owner that another node holds; in one process there is none."""
        return []

    def enter(self, name, owner, nickname):
        """Put ``owner`` on the room's roster; return whether it was not on it before."""
        room = self._room(name)
        newly = owner not in room.members
        room.members[owner] = nickname
        self._rooms_of.setdefault(owner, set()).add(name)
        return newly

    def exit(self, name, owner):
        """Take ``owner`` off the room's roster; return whether it was on it."""
        self._rooms_of.get(owner, set()).discard(name)
        room = self.rooms.get(name)
        return room is not None and room.members.pop(owner, None) is not None

    def rename(self, name, owner, nickname):
        """Show ``owner`` under its new nickname in the room's roster."""
        self.rooms[name].members[owner] = nickname

    def roster(self, name):
        """Nicknames in a room, sorted case-insensitively (empty for an unknown room)."""
        room = self.rooms.get(name)
        return room.roster() if room else []

    def count(self, name):
        """How many members a room has."""
        room = self.rooms.get(name)
        return len(room.members) if room else 0

    def room_list(self):
        """Rooms with members, and the lobby, with member counts."""
        return [
            {"name": name, "count": len(room.members)}
            for name, room in sorted(self.rooms.items())
            if room.members or name == DEFAULT_ROOM
        ]

    def post(self, name, author, message_id, text, ts):
        """Store a message once per (author, id) and deliver it; return (message, created)."""
        message, created = self.rooms[name].post(author, message_id, text, ts)
        if created:
            self.listener.deliver_message(message)
        return message, created

    def history(self, name, after=None, epoch=None, limit=CATCH_UP_PAGE):
        """The room's recent history, or a page of it after sequence number ``after`` of
        history ``epoch``."""
        room = self.rooms.get(name)
        if room is None:
            return CatchUp(name, (), True)
        return room.recent() if after is None else room.after(after, epoch, limit)

    def older(self, name, before, limit=OLDER_PAGE):
        """A page of the room's history before sequence number ``before``, newest last."""
        room = self.rooms.get(name)
        return room.before(before, limit) if room is not None else CatchUp(name, (), True)

    def publish(self, name, frame, exclude=None):
        """Deliver a frame to the room's members but ``exclude``."""
        self.listener.deliver(name, frame, exclude)

    def _room(self, name):
        if name not in self.rooms:
            if len(self.rooms) >= self.max_rooms and not self._drop_an_empty_room():
                raise ChatError("too_many_rooms", "The server holds no more rooms.")
            self.rooms[name] = self.store.open(name)
        return self.rooms[name]

    def _drop_an_empty_room(self):
        for name, room in self.rooms.items():
            if not room.members and name != DEFAULT_ROOM:
                del self.rooms[name]
                return True
        return False
