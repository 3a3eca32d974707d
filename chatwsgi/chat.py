"""Chat state and its rules: nicknames, rooms, rosters, history, message shapes.

Pure: plain data in, plain data out, no I/O of its own. A *member* is the key the
caller uses for one connection (the server uses the session id, unique in a cluster);
what members share with other nodes (nickname owners, rosters, history) is the
backplane's (``backplane/``).
"""

import contextlib
import hashlib
import re
import secrets
import time
from dataclasses import dataclass, field

from chatwsgi.backplane import LocalBackplane
from chatwsgi.errors import ChatError
from chatwsgi.rooms import DEFAULT_ROOM, OLDER_PAGE, OLDER_PAGE_MAX

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


def user_token(name):
    """The reclaim token of a user the host app signed in (ChatMiddleware's ``identify``): the
    same for each of that user's connections, so the newest takes the name over from an older one.

    Not a secret: where users are signed in, nickname events (the only way a client sends a
    token) are refused.
    """
    return "user:" + hashlib.sha256(str(name).encode("utf-8", "replace")).hexdigest()[:40]


def clean_token(raw):
    """Check a reclaim token sent back by a client: None, or the text it was given."""
    if raw is None or (isinstance(raw, str) and len(raw) <= 64):
        return raw
    raise ChatError("bad_request", "'token' must be the text the server sent.")


MAX_SEQUENCE = 2**53 - 1  # the largest whole number a JavaScript client holds exactly


def clean_sequence(raw):
    """Check a last-seen sequence number (a whole number from 0 to 2**53 - 1)."""
    if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= MAX_SEQUENCE:
        raise ChatError("bad_sequence", "'after' must be a whole number from 0 to 2**53 - 1.")
    return raw


def clean_limit(raw):
    """Check how many older messages a client asks for: None (the default page) or 1 to 200."""
    if raw is None:
        return OLDER_PAGE
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= OLDER_PAGE_MAX:
        raise ChatError("bad_request", "'limit' must be a whole number from 1 to %d." % OLDER_PAGE_MAX)
    return raw


def clean_epoch(raw):
    """Check a history epoch sent back by a client: None, or the text it was given."""
    if raw is None or (isinstance(raw, str) and len(raw) <= 64):
        return raw
    raise ChatError("bad_epoch", "'epoch' must be the text the server sent.")


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
    """This node's connections and the chat's rules, over a backplane holding the shared state."""

    def __init__(
        self,
        history_size=15,
        max_chars=2000,
        max_rooms=1000,
        max_rooms_per_member=10,
        max_solo_rooms_per_member=3,
        clock=time.time,
        new_token=lambda: secrets.token_urlsafe(16),
        new_epoch=lambda: secrets.token_urlsafe(6),
        backplane=None,
        retention=None,
    ):
        self.max_chars = max_chars
        self.max_rooms_per_member = max_rooms_per_member
        # Rooms only this member is in: without a bound a few connections could open
        # every room the server holds (max_rooms) and nobody else could open one.
        self.max_solo_rooms_per_member = max_solo_rooms_per_member
        self.clock = clock
        self.new_token = new_token
        if backplane is None:
            backplane = LocalBackplane(history_size, max_rooms, new_epoch, retention)
        self.backplane = backplane
        self.members = {}  # this node's connections -> Member

    def connect(self, member):
        """Register a connection that has no nickname yet."""
        self.members.setdefault(member, Member())

    def nickname_of(self, member):
        """The member's nickname; ChatError('no_nickname') before it has one."""
        state = self.members.get(member)
        if state is None or not state.nickname:
            raise ChatError("no_nickname", "Choose a nickname first.")
        return state.nickname

    def set_nickname(self, member, raw, token=None, new_token=None):
        """Claim a nickname, unique case-insensitively; a matching token reclaims it.

        ``new_token`` makes the token of a nickname nobody holds (``self.new_token`` by default).
        """
        nickname = clean_nickname(raw)
        token = clean_token(token)
        state = self.members.setdefault(member, Member())
        state.token, evicted = self.backplane.claim(nickname, member, token, new_token or self.new_token)
        evicted_rooms = []
        if evicted in self.members:
            # The same person reconnecting: the stale connection goes, its token stays.
            evicted_rooms = self.disconnect(evicted)[1]
        elif evicted is not None:
            evicted_rooms = self.backplane.evict(evicted)  # it was connected to another node
        previous = state.nickname
        if previous and previous.casefold() != nickname.casefold():
            self.backplane.release(previous, member)
        state.nickname = nickname
        for room in sorted(state.rooms):
            self.backplane.rename(room, member, nickname)
        return NicknameChange(nickname, state.token, previous, evicted, tuple(evicted_rooms))

    def assign_nickname(self, member, name):
        """Name ``member`` as the host app signed its user in: every connection of one user
        claims the name with the same token (``user_token``), so the newest takes it over from
        an older one (another tab) as a reclaim does."""
        token = user_token(name)
        return self.set_nickname(member, name, token, new_token=lambda: token)

    def join(self, member, raw_room, after=None, epoch=None):
        """Enter a room; return (catch-up, newly joined)."""
        nickname = self.nickname_of(member)
        name = clean_room_name(raw_room)
        after = None if after is None else clean_sequence(after)  # refuse before changing anything
        epoch = clean_epoch(epoch)
        state = self.members[member]
        if name not in state.rooms:
            self._check_room_allowance(state, name)
        newly = self.backplane.enter(name, member, nickname)
        try:
            history = self.backplane.history(name, after, epoch)
        except ChatError:
            if newly:  # not in the room after all: a refused join changes nothing
                with contextlib.suppress(ChatError):  # Redis away: its restore departs it
                    self.backplane.exit(name, member)
            raise
        state.rooms.add(name)
        return history, newly

    def _check_room_allowance(self, state, name):
        if len(state.rooms) >= self.max_rooms_per_member:
            raise ChatError("too_many_rooms", "Leave a room before joining another.")
        if self.backplane.count(name) == 0:  # opening a room
            solo = [r for r in state.rooms if r != DEFAULT_ROOM and self.backplane.count(r) == 1]
            if len(solo) >= self.max_solo_rooms_per_member:
                raise ChatError(
                    "too_many_rooms",
                    "Nobody else is in %s: wait for company before opening another room."
                    % ", ".join(sorted(solo)),
                )

    def joined_room(self, member, raw_room):
        """The name of room ``raw_room``; ChatError('not_in_room') unless the member is in it."""
        name = clean_room_name(raw_room)
        if name not in self.members.get(member, Member()).rooms:
            raise ChatError("not_in_room", "Join the room %r first." % name)
        return name

    def leave(self, member, raw_room):
        """Leave a room; return its name."""
        name = self.joined_room(member, raw_room)
        self.members[member].rooms.discard(name)
        self.backplane.exit(name, member)
        return name

    def post(self, member, raw_room, message_id, text):
        """Store a message in a joined room; return (message, created)."""
        nickname = self.nickname_of(member)
        name = self.joined_room(member, raw_room)
        message_id = clean_message_id(message_id)
        text = clean_text(text, self.max_chars)
        return self.backplane.post(name, nickname, message_id, text, self.clock())

    def catch_up(self, member, raw_room, after, epoch=None):
        """Messages of a joined room after sequence number ``after`` (of history ``epoch``)."""
        name = self.joined_room(member, raw_room)
        return self.backplane.history(name, clean_sequence(after), clean_epoch(epoch))

    def older(self, member, raw_room, before, limit=None):
        """A page of a joined room's messages before sequence number ``before``, newest last."""
        name = self.joined_room(member, raw_room)
        return self.backplane.older(name, clean_sequence(before), clean_limit(limit))

    def typing(self, member, raw_room):
        """Check a typing notice; return (room name, nickname)."""
        nickname = self.nickname_of(member)
        return self.joined_room(member, raw_room), nickname

    def disconnect(self, member):
        """Forget a connection; return (nickname, rooms whose roster it was still on)."""
        state = self.members.pop(member, None)
        if state is None:
            return "", []
        try:
            return state.nickname, self.backplane.depart(member, state.nickname)
        except ChatError:
            return state.nickname, []  # backplane down: its restore departs what is left

    def restore(self):
        """Claim again each member's nickname and rooms (the backplane lost them); return the
        members whose nickname someone else holds now."""
        lost = []
        for member, state in list(self.members.items()):
            if not state.nickname:
                continue
            try:
                self.backplane.claim(
                    state.nickname, member, state.token, lambda t=state.token: t, restoring=True
                )
            except ChatError as refusal:
                if refusal.code != "nickname_taken":
                    raise
                lost.append(member)
                continue
            for room in sorted(state.rooms):
                self.backplane.enter(room, member, state.nickname)
        return lost

    def roster(self, name):
        """Nicknames in a room (empty for an unknown room)."""
        return self.backplane.roster(name)

    def room_list(self):
        """Rooms with members, and the lobby, with member counts."""
        return self.backplane.room_list()
