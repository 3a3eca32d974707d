"""Rooms' shared data: messages, bounded history with sequence numbers, catch-up.

Pure: plain data in, plain data out. ``Room`` is the in-memory form a single process
keeps; the Redis backplane keeps the same data in Redis and returns the same shapes.
"""

from collections import OrderedDict, deque
from dataclasses import dataclass

DEFAULT_ROOM = "lobby"


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

    @classmethod
    def from_dict(cls, fields):
        """A message from the shape clients receive (as the Redis backplane stores it)."""
        return cls(**{name: fields[name] for name in ("room", "seq", "id", "author", "text", "ts")})


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


def catch_up(room, epoch, last_seq, history, after, client_epoch=None):
    """What a client that saw up to ``after`` (of history ``client_epoch``) has missed.

    ``history`` is the room's retained messages, oldest first; ``last_seq`` its newest
    sequence number and ``epoch`` the name of this history.
    """
    if after > last_seq or (client_epoch is not None and client_epoch != epoch):
        # The client saw a history this room no longer has (its store was reset).
        return CatchUp(room, history, False, epoch)
    messages = tuple(m for m in history if m.seq > after)
    oldest = history[0].seq if history else last_seq + 1
    return CatchUp(room, messages, after >= oldest - 1, epoch)


class Room:
    """Members, bounded history and per-room sequence numbers of one room."""

    def __init__(self, name, history_size, remembered_ids=1000, epoch=""):
        self.name = name
        self.epoch = epoch
        self.members = {}  # owner (a session id) -> nickname, in join order
        self.history = deque(maxlen=history_size)
        self.last_seq = 0
        # (author folded, id) -> seq: a bounded window of ids, not of messages (a retry
        # needs its sequence number back, not the text the room already holds).
        self._stored_ids = OrderedDict()
        self._remembered_ids = max(remembered_ids, history_size)

    def roster(self):
        """Nicknames of the members, sorted case-insensitively."""
        return sorted(self.members.values(), key=str.casefold)

    def post(self, author, message_id, text, ts):
        """Store a message once per (author, id); return (message, created)."""
        key = (author.casefold(), message_id)
        if key in self._stored_ids:
            return Message(self.name, self._stored_ids[key], message_id, author, text, ts), False
        self.last_seq += 1
        message = Message(self.name, self.last_seq, message_id, author, text, ts)
        self.history.append(message)
        self._stored_ids[key] = self.last_seq
        if len(self._stored_ids) > self._remembered_ids:
            self._stored_ids.popitem(last=False)
        return message, True

    def after(self, seq, epoch=None):
        """Messages with a sequence number above ``seq`` that history still holds."""
        return catch_up(self.name, self.epoch, self.last_seq, tuple(self.history), seq, epoch)

    def recent(self):
        """The whole of history, as sent on a join without ``after``."""
        return CatchUp(self.name, tuple(self.history), True, self.epoch)
