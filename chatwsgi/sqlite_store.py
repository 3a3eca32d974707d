"""Rooms whose history lives in a SQLite file: it survives a restart of the process.

The single-process chat's durable store (``LocalBackplane(store=SqliteStore(path))``):
members stay in memory (a restart ends every connection anyway); messages, each room's
sequence numbers and history epoch are in the file, so a page that reconnects after a
restart catches up with nothing missing.

The file is in WAL mode with ``synchronous=NORMAL``: a commit is one write to the log,
no fsync, so posting costs tens of microseconds on the event loop (an fsync per message
would stall every connection for milliseconds). A crash of the process loses nothing
committed (the write is in the kernel); a crash of the machine may lose the last commits.
A message is acknowledged after its commit.

Retention is applied as in Redis: past the ``most`` newest, messages go at once; past
the ``shown`` ones, those older than ``seconds`` go, two per post at most.
"""

import secrets
import sqlite3

from chatwsgi.rooms import (
    CATCH_UP_PAGE,
    OLDER_PAGE,
    CatchUp,
    Message,
    Retention,
    catch_up,
    older,
    saw_another_history,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS rooms (
    name TEXT PRIMARY KEY,
    epoch TEXT NOT NULL,
    last_seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    room TEXT NOT NULL,
    seq INTEGER NOT NULL,
    id TEXT NOT NULL,
    author TEXT NOT NULL,
    author_key TEXT NOT NULL,
    text TEXT NOT NULL,
    ts REAL NOT NULL,
    PRIMARY KEY (room, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS message_ids ON messages (room, author_key, id);
"""

COLUMNS = "room, seq, id, author, text, ts"
NEW_ROOM = "INSERT OR IGNORE INTO rooms (name, epoch, last_seq) VALUES (?, ?, 0)"
ROOM = "SELECT epoch, last_seq FROM rooms WHERE name = ?"
SEQ_OF_ID = "SELECT seq FROM messages WHERE room = ? AND author_key = ? AND id = ?"
INSERT = "INSERT INTO messages (room, seq, id, author, author_key, text, ts) VALUES (?, ?, ?, ?, ?, ?, ?)"

# Thirty days, and a million messages per room: history worth scrolling back through.
DURABLE_RETENTION = Retention(shown=15, seconds=30 * 86400, most=1_000_000)


class SqliteStore:
    """A SQLite file holding every room's history (``:memory:`` for none)."""

    def __init__(self, path, retention=DURABLE_RETENTION, new_epoch=lambda: secrets.token_urlsafe(6)):
        self.path, self.retention, self.new_epoch = str(path), retention, new_epoch
        # Autocommit: each post is one explicit transaction (see SqliteRoom.post).
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    def open(self, name):
        """Room ``name``, with the history the file holds (made if new)."""
        self.db.execute(NEW_ROOM, (name, self.new_epoch()))
        epoch, last_seq = self.db.execute(ROOM, (name,)).fetchone()
        return SqliteRoom(self, name, epoch, last_seq)

    def close(self):
        """Close the file."""
        self.db.close()


class SqliteRoom:
    """One room: its members in memory, its history in the store's file."""

    def __init__(self, store, name, epoch, last_seq):
        self.store, self.db, self.retention = store, store.db, store.retention
        self.name, self.epoch, self.last_seq = name, epoch, last_seq
        self.members = {}  # owner (a session id) -> nickname, in join order

    def roster(self):
        """Nicknames of the members, sorted case-insensitively."""
        return sorted(self.members.values(), key=str.casefold)

    def post(self, author, message_id, text, ts):
        """Store a message once per (author, id); return (message, created)."""
        key = author.casefold()
        seen = self.db.execute(SEQ_OF_ID, (self.name, key, message_id)).fetchone()
        if seen is not None:
            return Message(self.name, seen[0], message_id, author, text, ts), False
        seq = self.last_seq + 1
        with self.db:  # one transaction: the message, the room's counter, the trimming
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute(INSERT, (self.name, seq, message_id, author, key, text, ts))
            self.db.execute("UPDATE rooms SET last_seq = ? WHERE name = ?", (seq, self.name))
            self._trim(seq, ts)
        self.last_seq = seq
        return Message(self.name, seq, message_id, author, text, ts), True

    def _trim(self, last_seq, now):
        keep = self.retention
        oldest = self._oldest_seq(last_seq)
        if last_seq - oldest + 1 > keep.most:
            oldest = last_seq - keep.most + 1
            self.db.execute("DELETE FROM messages WHERE room = ? AND seq < ?", (self.name, oldest))
        for _ in range(2):  # an aged room empties faster than it fills, and no post pays for it all
            kept = last_seq - oldest + 1
            if kept <= keep.shown:
                break
            (ts,) = self.db.execute(
                "SELECT ts FROM messages WHERE room = ? AND seq = ?", (self.name, oldest)
            ).fetchone()
            if ts >= now - keep.seconds:
                break
            self.db.execute("DELETE FROM messages WHERE room = ? AND seq = ?", (self.name, oldest))
            oldest += 1

    def _oldest_seq(self, last_seq):
        (oldest,) = self.db.execute("SELECT MIN(seq) FROM messages WHERE room = ?", (self.name,)).fetchone()
        return last_seq + 1 if oldest is None else oldest  # sequence numbers kept are consecutive

    def _messages(self, where, order, args, limit):
        rows = self.db.execute(
            "SELECT %s FROM messages WHERE room = ? AND %s ORDER BY seq %s LIMIT ?" % (COLUMNS, where, order),
            (self.name, *args, limit),
        )
        return [Message(*row) for row in rows]

    def after(self, seq, epoch=None, limit=CATCH_UP_PAGE):
        """A page of the retained messages with a sequence number above ``seq``; the recent
        ones, incomplete, if ``seq`` belongs to another history."""
        if saw_another_history(self.epoch, self.last_seq, seq, epoch):
            return CatchUp(self.name, self.recent().messages, False, self.epoch)
        newer = self._messages("seq > ?", "ASC", (seq,), limit + 1)
        return catch_up(self.name, self.epoch, self._oldest_seq(self.last_seq), newer, seq, limit)

    def recent(self):
        """The last ``shown`` messages, as sent on a join without ``after``."""
        newest_first = self._messages("seq > ?", "DESC", (0,), self.retention.shown)
        return CatchUp(self.name, tuple(reversed(newest_first)), True, self.epoch)

    def before(self, seq, limit=OLDER_PAGE):
        """A page of the retained messages with a sequence number below ``seq``, newest last."""
        return older(self.name, self.epoch, self._messages("seq < ?", "DESC", (seq,), limit + 1), limit)
