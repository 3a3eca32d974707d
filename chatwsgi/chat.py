"""Chat state and its rules: nicknames, rooms, rosters, history, message shapes.

Pure: plain data in, plain data out, no I/O. A *member* is any hashable key the
caller uses for one connection (the server uses the session id).
"""

import re
import secrets
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from chatwsgi.errors import ChatError

DEFAULT_ROOM = "lobby"
NICKNAME_MAX = 32
ROOM_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
MESSAGE_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def clean_nickname(raw):
    """Trim and check a nickname: 1-32 printable characters."""
    if not isinstance(raw, str):
        raise ChatError("bad_nickname", "A nickname must be text.")
    nickname = raw.strip()
    if not 1 <= len(nickname) <= NICKNAME_MAX:
        raise ChatError("bad_nickname", "A nickname has 1 to 32 characters.")
    if not nickname.isprintable():
        raise ChatError("bad_nickname", "A nickname cannot hold control or invisible characters.")
    return nickname


def clean_room_name(raw):
    """Fold and check a room name: 1-32 of a-z, 0-9, '-' and '_'."""
    name = raw.strip().lower() if isinstance(raw, str) else ""
    if not ROOM_NAME_RE.fullmatch(name):
        raise ChatError("bad_room", "A room name has 1 to 32 letters, digits, '-' or '_'.")
    return name


def clean_text(raw, max_chars):
    """Check a message body: text, not blank, at most ``max_chars`` characters."""
    if not isinstance(raw, str) or not raw.strip():
        raise ChatError("empty_message", "A message needs some text.")
    if len(raw) > max_chars:
        raise ChatError("too_long", "A message has at most %d characters." % max_chars)
    return raw


def clean_message_id(raw):
    """Check a client message id: 1-64 characters of [A-Za-z0-9_.:-]."""
    if not isinstance(raw, str) or not MESSAGE_ID_RE.fullmatch(raw):
        raise ChatError("bad_id", "A message id has 1 to 64 letters, digits or _.:-")
    return raw


def clean_sequence(raw):
    """Check a last-seen sequence number (a whole number >= 0)."""
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        raise ChatError("bad_sequence", "'after' must be a whole number >= 0.")
    return raw


def clean_epoch(raw):
    """Check a history epoch sent back by a client: None, or the text it was given."""
    if raw is None or (isinstance(raw, str) and len(raw) <= 64):
        return raw
    raise ChatError("bad_epoch", "'epoch' must be the text the server sent.")


@dataclass(frozen=True, slots=True)
class Message:
    """One stored chat message."""

    room: str
    seq: int
    id: str
    author: str
    text: str
    ts: float

    def as_dict(self):
        """The shape clients receive."""
        return {
            "room": self.room,
            "seq": self.seq,
            "id": self.id,
            "author": self.author,
            "text": self.text,
            "ts": self.ts,
        }


@dataclass(frozen=True, slots=True)
class CatchUp:
    """Messages after a sequence number; ``complete`` is False when history lost some.

    ``epoch`` names this history: sequence numbers restart in a new one (a restarted
    in-memory server), so a client's ``after`` only means something with its epoch.
    """

    room: str
    messages: tuple
    complete: bool
    epoch: str = ""

    def as_dict(self):
        """The shape clients receive."""
        return {
            "room": self.room,
            "messages": [m.as_dict() for m in self.messages],
            "complete": self.complete,
            "epoch": self.epoch,
        }


class Room:
    """Members, bounded history and per-room sequence numbers of one room."""

    def __init__(self, name, history_size, remembered_ids=1000, epoch=""):
        self.name = name
        self.epoch = epoch
        self.members = {}  # member -> nickname, in join order
        self.history = deque(maxlen=history_size)
        self.last_seq = 0
        self._stored_ids = OrderedDict()  # (author folded, id) -> Message
        self._remembered_ids = max(remembered_ids, history_size)

    def roster(self):
        """Nicknames of the members, sorted case-insensitively."""
        return sorted(self.members.values(), key=str.casefold)

    def post(self, author, message_id, text, ts):
        """Store a message once per (author, id); return (message, created)."""
        key = (author.casefold(), message_id)
        if key in self._stored_ids:
            return self._stored_ids[key], False
        self.last_seq += 1
        message = Message(self.name, self.last_seq, message_id, author, text, ts)
        self.history.append(message)
        self._stored_ids[key] = message
        if len(self._stored_ids) > self._remembered_ids:
            self._stored_ids.popitem(last=False)
        return message, True

    def after(self, seq, epoch=None):
        """Messages with a sequence number above ``seq`` that history still holds."""
        if seq > self.last_seq or (epoch is not None and epoch != self.epoch):
            # The client saw a history this room no longer has (the server restarted).
            return CatchUp(self.name, tuple(self.history), False, self.epoch)
        messages = tuple(m for m in self.history if m.seq > seq)
        oldest = self.history[0].seq if self.history else self.last_seq + 1
        return CatchUp(self.name, messages, seq >= oldest - 1, self.epoch)

    def recent(self):
        """The whole of history, as sent on a join without ``after``."""
        return CatchUp(self.name, tuple(self.history), True, self.epoch)


@dataclass(slots=True)
class Member:
    """One connection's identity: its nickname, reclaim token and rooms."""

    nickname: str = ""
    token: str = ""
    rooms: set = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class NicknameChange:
    """Result of claiming a nickname; ``evicted`` held it before and left ``evicted_rooms``."""

    nickname: str
    token: str
    previous: str
    evicted: object = None
    evicted_rooms: tuple = ()


class Chat:
    """Every room, nickname and member of one chat server."""

    def __init__(
        self,
        history_size=15,
        max_chars=2000,
        max_rooms=1000,
        max_rooms_per_member=10,
        clock=time.time,
        new_token=lambda: secrets.token_urlsafe(16),
        new_epoch=lambda: secrets.token_urlsafe(6),
    ):
        self.history_size = history_size
        self.max_chars = max_chars
        self.max_rooms = max_rooms
        self.max_rooms_per_member = max_rooms_per_member
        self.clock = clock
        self.new_token = new_token
        self.new_epoch = new_epoch
        self.rooms = {DEFAULT_ROOM: Room(DEFAULT_ROOM, history_size, epoch=new_epoch())}
        self.members = {}
        self._owners = {}  # folded nickname -> member

    def connect(self, member):
        """Register a connection that has no nickname yet."""
        self.members.setdefault(member, Member())

    def nickname_of(self, member):
        """The member's nickname; ChatError('no_nickname') before it has one."""
        state = self.members.get(member)
        if state is None or not state.nickname:
            raise ChatError("no_nickname", "Choose a nickname first.")
        return state.nickname

    def set_nickname(self, member, raw, token=None):
        """Claim a nickname, unique case-insensitively; a matching token reclaims it."""
        nickname = clean_nickname(raw)
        state = self.members.setdefault(member, Member())
        folded = nickname.casefold()
        owner = self._owners.get(folded)
        evicted = None
        if owner is not None and owner != member:
            if not token or token != self.members[owner].token:
                raise ChatError("nickname_taken", "The nickname %r is taken." % nickname)
            evicted = owner
        evicted_rooms = []
        if evicted is not None:
            # The same person reconnecting: the stale connection goes, its token stays.
            state.token = self.members[evicted].token
            evicted_rooms = self.disconnect(evicted)[1]
        elif not state.token or state.nickname.casefold() != folded:
            state.token = self.new_token()
        previous = state.nickname
        if previous:
            self._owners.pop(previous.casefold(), None)
        self._owners[folded] = member
        state.nickname = nickname
        for room in state.rooms:
            self.rooms[room].members[member] = nickname
        return NicknameChange(nickname, state.token, previous, evicted, tuple(evicted_rooms))

    def join(self, member, raw_room, after=None, epoch=None):
        """Enter a room; return (catch-up, newly joined)."""
        nickname = self.nickname_of(member)
        name = clean_room_name(raw_room)
        after = None if after is None else clean_sequence(after)  # refuse before changing anything
        epoch = clean_epoch(epoch)
        state = self.members[member]
        if name not in state.rooms and len(state.rooms) >= self.max_rooms_per_member:
            raise ChatError("too_many_rooms", "Leave a room before joining another.")
        room = self._room(name)
        newly = member not in room.members
        room.members[member] = nickname
        state.rooms.add(name)
        history = room.recent() if after is None else room.after(after, epoch)
        return history, newly

    def _room(self, name):
        if name not in self.rooms:
            if len(self.rooms) >= self.max_rooms and not self._drop_an_empty_room():
                raise ChatError("too_many_rooms", "The server holds no more rooms.")
            self.rooms[name] = Room(name, self.history_size, epoch=self.new_epoch())
        return self.rooms[name]

    def _drop_an_empty_room(self):
        for name, room in self.rooms.items():
            if not room.members and name != DEFAULT_ROOM:
                del self.rooms[name]
                return True
        return False

    def joined_room(self, member, raw_room):
        """The room named ``raw_room``; ChatError('not_in_room') unless the member is in it."""
        name = clean_room_name(raw_room)
        if name not in self.members.get(member, Member()).rooms:
            raise ChatError("not_in_room", "Join the room %r first." % name)
        return self.rooms[name]

    def leave(self, member, raw_room):
        """Leave a room; return its name."""
        room = self.joined_room(member, raw_room)
        del room.members[member]
        self.members[member].rooms.discard(room.name)
        return room.name

    def post(self, member, raw_room, message_id, text):
        """Store a message in a joined room; return (message, created)."""
        nickname = self.nickname_of(member)
        room = self.joined_room(member, raw_room)
        message_id = clean_message_id(message_id)
        text = clean_text(text, self.max_chars)
        return room.post(nickname, message_id, text, self.clock())

    def catch_up(self, member, raw_room, after, epoch=None):
        """Messages of a joined room after sequence number ``after`` (of history ``epoch``)."""
        return self.joined_room(member, raw_room).after(clean_sequence(after), clean_epoch(epoch))

    def typing(self, member, raw_room):
        """Check a typing notice; return (room name, nickname)."""
        nickname = self.nickname_of(member)
        return self.joined_room(member, raw_room).name, nickname

    def disconnect(self, member):
        """Forget a connection; return (nickname, rooms it was in)."""
        state = self.members.pop(member, None)
        if state is None:
            return "", []
        rooms = sorted(state.rooms)
        for name in rooms:
            self.rooms[name].members.pop(member, None)
        if state.nickname and self._owners.get(state.nickname.casefold()) == member:
            del self._owners[state.nickname.casefold()]
        return state.nickname, rooms

    def roster(self, name):
        """Nicknames in a room (empty for an unknown room)."""
        room = self.rooms.get(name)
        return room.roster() if room else []

    def room_list(self):
        """Rooms with members, and the lobby, with member counts."""
        return [
            {"name": name, "count": len(room.members)}
            for name, room in sorted(self.rooms.items())
            if room.members or name == DEFAULT_ROOM
        ]
