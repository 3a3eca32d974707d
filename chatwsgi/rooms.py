"""Rooms' shared data: messages, retained history with sequence numbers, catch-up.

Pure: plain data in, plain data out. ``Room`` is the in-memory form a single process
keeps; the Redis backplane keeps the same data in Redis and returns the same shapes.

A room shows its last few messages to whoever joins, and keeps more for catch-up: a
client that reconnects within ``Retention.seconds`` misses nothing. Catch-up answers
come in pages (``more`` says another follows), so a client far behind never gets one
answer of megabytes.
"""

import itertools
from collections import OrderedDict, deque
from dataclasses import dataclass

DEFAULT_ROOM = "lobby"
CATCH_UP_PAGE = 500  # messages in one catch-up answer at most
OLDER_PAGE = 50  # messages in one answer for older history, unless the client asks fewer
OLDER_PAGE_MAX = 200  # ... or more, up to this


@dataclass(frozen=True, slots=True)
class Retention:
    """How much history a room keeps: the last ``shown`` messages (sent on a join), and
    for catch-up everything younger than ``seconds``, but never more than ``most``.

    The defaults keep two minutes of a room posting 1,000 messages a second.
    """

    shown: int = 15
    seconds: float = 120.0
    most: int = 120_000

    def __post_init__(self):
        if not 0 <= self.shown <= self.most or self.seconds < 0:
            raise ValueError("need 0 <= shown <= most and seconds >= 0")

    def drops_oldest(self, kept, oldest_ts, now):
        """Whether the oldest of ``kept`` retained messages (posted at ``oldest_ts``) goes."""
        return kept > self.most or (kept > self.shown and oldest_ts < now - self.seconds)


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
    more: bool = False  # newer messages follow: ask again after the last one here

    def as_dict(self):
        """The shape clients receive."""
        return {
            "room": self.room,
            "messages": [m.as_dict() for m in self.messages],
            "complete": self.complete,
            "epoch": self.epoch,
            "more": self.more,
        }


def saw_another_history(epoch, last_seq, after, client_epoch=None):
    """Whether a client's ``after`` (of history ``client_epoch``) belongs to a history this
    room no longer has (its store was reset): its sequence numbers mean nothing here."""
    return after > last_seq or (client_epoch is not None and client_epoch != epoch)


def catch_up(room, epoch, oldest_seq, newer, after, limit=CATCH_UP_PAGE):
    """One page of what a client that saw up to ``after`` has missed.

    ``newer`` holds the retained messages after ``after``, oldest first (up to ``limit`` + 1
    of them: one more tells that another page follows); ``oldest_seq`` is the oldest
    retained sequence number (the next one to be taken when none is retained).
    """
    return CatchUp(room, tuple(newer[:limit]), after >= oldest_seq - 1, epoch, len(newer) > limit)


def older(room, epoch, before, limit=OLDER_PAGE):
    """A page of older history: ``before`` holds the retained messages before the wanted
    sequence number, newest first (up to ``limit`` + 1 of them: one more tells that older
    ones are stored). Newest last in the answer; ``complete`` once the start is reached."""
    return CatchUp(room, tuple(reversed(before[:limit])), len(before) <= limit, epoch)


class MemoryStore:
    """Where a LocalBackplane keeps rooms: in memory, gone with the process."""

    def __init__(self, retention=None, new_epoch=lambda: ""):
        self.retention = retention or Retention()
        self.new_epoch = new_epoch

    def open(self, name):
        """A new room ``name``, empty."""
        return Room(name, self.retention, epoch=self.new_epoch())


class Room:
    """Members, retained history and per-room sequence numbers of one room."""

    def __init__(self, name, retention=Retention(), remembered_ids=1000, epoch=""):
        self.name = name
        self.epoch = epoch
        self.members = {}  # owner (a session id) -> nickname, in join order
        self.retention = retention
        self.history = deque()  # consecutive sequence numbers, oldest first
        self.last_seq = 0
        # (author folded, id) -> seq: a bounded window of ids, not of messages (a retry
        # needs its sequence number back, not the text the room already holds).
        self._stored_ids = OrderedDict()
        self._remembered_ids = max(remembered_ids, retention.shown)

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
        while self.retention.drops_oldest(len(self.history), self.history[0].ts, ts):
            self.history.popleft()
        self._stored_ids[key] = self.last_seq
        if len(self._stored_ids) > self._remembered_ids:
            self._stored_ids.popitem(last=False)
        return message, True

    def after(self, seq, epoch=None, limit=CATCH_UP_PAGE):
        """A page of the retained messages with a sequence number above ``seq``; the recent
        ones, incomplete, if ``seq`` belongs to another history."""
        if saw_another_history(self.epoch, self.last_seq, seq, epoch):
            return CatchUp(self.name, self.recent().messages, False, self.epoch)
        oldest = self.history[0].seq if self.history else self.last_seq + 1
        start = max(0, seq + 1 - oldest)  # sequence numbers in history are consecutive
        newer = tuple(itertools.islice(self.history, start, start + limit + 1))
        return catch_up(self.name, self.epoch, oldest, newer, seq, limit)

    def recent(self):
        """The last ``shown`` messages, as sent on a join without ``after``."""
        shown = self.retention.shown
        start = max(0, len(self.history) - shown)
        return CatchUp(self.name, tuple(itertools.islice(self.history, start, None)), True, self.epoch)

    def before(self, seq, limit=OLDER_PAGE):
        """A page of the retained messages with a sequence number below ``seq``, newest last."""
        oldest = self.history[0].seq if self.history else self.last_seq + 1
        end = min(len(self.history), max(0, seq - oldest))  # consecutive sequence numbers
        newest_first = [self.history[index] for index in range(end - 1, max(-1, end - limit - 2), -1)]
        return older(self.name, self.epoch, newest_first, limit)
