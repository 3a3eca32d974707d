"""The chat's use cases: each client request checked, applied to the state, fanned out.

Pure like ``chat.py``: it knows rooms and frames, not sockets or greenlets. Every
method takes the member and the client's request object and returns the ack body.
"""

import functools
import logging
import time

from chatwsgi import protocol
from chatwsgi.chat import Chat, clean_room_name
from chatwsgi.errors import ChatError
from chatwsgi.hub import LocalHub
from chatwsgi.limits import EVENT_RATES, EventLimits
from chatwsgi.metrics import NO_METRICS
from chatwsgi.presence import PresenceBatches

ENDPOINT = "/chat"
PRESENCE_KINDS = ("join", "leave")
log = logging.getLogger(__name__)


def _request(value):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ChatError("bad_request", "Send one JSON object as the event's argument.")
    return value


class ChatService:
    """Shared by every connection of one app: the chat state, the fan-out and the limits.

    It is its backplane's listener: frames the backplane delivers (from this node or,
    with Redis, from any node) go to this node's members through the hub.

    Every request is refused (``not_connected``) from a member that has not connected, so
    nothing is claimed that a disconnect would not release, and costs a token of its kind
    (``limits.EVENT_RATES``) from the member's EventLimits, which the caller may keep across
    reconnects of the same session so that reconnecting never refills them.
    """

    def __init__(
        self,
        chat=None,
        hub=None,
        endpoint=ENDPOINT,
        rate=5.0,
        burst=10,
        typing_rate=2.0,
        rates=None,
        announce_limit=200,
        clock=time.monotonic,
        metrics=NO_METRICS,
        schedule=None,
        presence_interval=0.5,
    ):
        self.chat = chat if chat is not None else Chat()
        self.backplane = self.chat.backplane
        self.backplane.listener = self
        self.metrics = metrics
        self.hub = hub if hub is not None else LocalHub(metrics)
        self.endpoint = endpoint
        self.rates = dict(EVENT_RATES, message=(rate, burst), typing=(typing_rate, typing_rate * 2))
        self.rates.update(rates or {})  # (rate, burst) by event kind, over the defaults
        self.clock = clock
        # Above this many members a room stops announcing each join and leave: announcing
        # to everyone makes a room's filling up cost O(members squared) frames.
        self.announce_limit = announce_limit
        # Joins and leaves of a busy room go out at most once per ``presence_interval``
        # (presence.py); ``schedule(seconds, function)`` calls back later (none: each at once).
        self.schedule, self.presence_interval = schedule, presence_interval
        self.presence = PresenceBatches() if schedule is not None and presence_interval > 0 else None
        self._sinks = {}
        self._closers = {}
        self._limits = {}

    def frame(self, name, *args):
        """One encoded event for this chat's endpoint."""
        return protocol.event_frame(self.endpoint, name, *args)

    def new_limits(self):
        """Fresh rate limits for one session."""
        return EventLimits(self.rates, self.clock)

    def connect(self, member, sink, close=None, limits=None):
        """A connection whose frames go to ``sink``; ``close()`` ends it (when evicted).

        ``limits`` are the session's (kept by the caller across reconnects); a member that
        connects again keeps the ones it has.
        """
        self.chat.connect(member)
        self._sinks[member] = sink
        self._closers[member] = close
        if limits is not None or member not in self._limits:
            self._limits[member] = limits or self.new_limits()

    def _spend(self, member, kind):
        """Refuse a member that has not connected; spend a token of ``kind``."""
        limits = self._limits.get(member)
        if limits is None:
            raise ChatError("not_connected", "Connect to %s first (send 1::%s)." % ((self.endpoint,) * 2))
        try:
            limits.take(kind)
        except ChatError:
            self.metrics.rate_limited(kind)
            raise

    def nickname(self, member, request):
        """Claim a nickname; return (ack, member evicted by a reclaim or None)."""
        self._spend(member, "nickname")
        request = _request(request)
        change = self.chat.set_nickname(member, request.get("nickname"), request.get("token"))
        self._named(member, change)
        ack = {"ok": True, "nickname": change.nickname, "token": change.token}
        return ack, change.evicted

    def assign(self, member, name):
        """Name a member as the host app signed its user in (``name`` from ChatMiddleware's
        ``identify``; None: not signed in); return the body of the ``nickname`` event telling
        the client. Another connection holding the name (the same user's other tab) is closed,
        as after a token reclaim."""
        self._spend(member, "nickname")
        if name is None:
            raise ChatError("not_signed_in", "Sign in to use the chat.")
        change = self.chat.assign_nickname(member, name)
        self._named(member, change)
        return {"nickname": change.nickname}

    def _named(self, member, change):
        """After a claim: close the connection it evicted, tell the member's rooms of a rename."""
        if change.evicted is not None:
            self.close(change.evicted)
            self._forget(change.evicted, change.evicted_rooms, change.nickname)
        if change.previous and change.previous != change.nickname:
            for room in sorted(self.chat.members[member].rooms):
                self._announce(room, "rename", change.nickname, previous=change.previous)

    def join(self, member, request):
        """Enter a room: history (or catch-up after ``after``) and roster in the ack."""
        self._spend(member, "room")
        request = _request(request)
        room = clean_room_name(request.get("room"))
        # Subscribed before history is read: a message stored meanwhile (on any node) then
        # arrives live, maybe in the history too (clients drop repeats by id), never in neither.
        self.hub.subscribe(room, member, self._sinks[member])
        try:
            history, newly = self.chat.join(member, room, request.get("after"), request.get("epoch"))
        except ChatError:
            if room not in self.chat.members[member].rooms:
                self.hub.unsubscribe(room, member)
            raise
        if newly:
            self._announce(history.room, "join", self.chat.nickname_of(member))
        ack = {"ok": True, "roster": self.chat.roster(history.room)}
        ack.update(history.as_dict())
        return ack

    def leave(self, member, request):
        """Leave a room."""
        self._spend(member, "room")
        room = self.chat.leave(member, _request(request).get("room"))
        self.hub.unsubscribe(room, member)
        self._announce(room, "leave", self.chat.nickname_of(member))
        return {"ok": True, "room": room}

    def message(self, member, request):
        """Store and broadcast a message once per id; ack {id, seq} after both."""
        self._spend(member, "message")
        request = _request(request)
        self._send_waiting_notices(request.get("room"))  # a member who joins and speaks: in order
        # Stored once per id; the backplane delivers it on every node, in sequence order.
        message, created = self.chat.post(member, request.get("room"), request.get("id"), request.get("text"))
        if created:
            self.metrics.message_posted()
        return {"ok": True, "id": message.id, "seq": message.seq}

    def typing(self, member, request):
        """Tell the others in a room that this member is typing (excess is dropped)."""
        try:
            self._spend(member, "typing")
        except ChatError as refusal:
            if refusal.code != "rate_limited":
                raise
            return {"ok": False, "code": "rate_limited"}
        room, nickname = self.chat.typing(member, _request(request).get("room"))
        self._send_waiting_notices(room)
        self.backplane.publish(room, self.frame("typing", {"room": room, "nickname": nickname}), member)
        return {"ok": True}

    def catch_up(self, member, request):
        """Messages of a joined room after the client's last seen sequence number."""
        self._spend(member, "query")
        request = _request(request)
        history = self.chat.catch_up(member, request.get("room"), request.get("after"), request.get("epoch"))
        return dict(history.as_dict(), ok=True)

    def history(self, member, request):
        """A page of a joined room's older messages, before sequence number ``before``."""
        self._spend(member, "query")
        request = _request(request)
        older = self.chat.older(member, request.get("room"), request.get("before"), request.get("limit"))
        return dict(older.as_dict(), ok=True)

    def roster(self, member, request):
        """Nicknames in a joined room."""
        self._spend(member, "query")
        request = _request(request)
        room = self.chat.joined_room(member, request.get("room"))
        return {"ok": True, "room": room, "members": self.chat.roster(room)}

    def rooms(self, member, request=None):
        """Rooms with their member counts."""
        self._spend(member, "query")
        return {"ok": True, "rooms": self.chat.room_list()}

    def disconnect(self, member):
        """A connection ended: leave its rooms and free its nickname."""
        nickname, rooms = self.chat.disconnect(member)
        self._forget(member, rooms, nickname)

    def close(self, member):
        """End this node's connection ``member`` (its nickname was reclaimed elsewhere)."""
        close = self._closers.get(member)
        if close is not None:
            close()

    def shutdown(self, message):
        """Tell every connected client the server is going away."""
        frame = self.frame("shutdown", {"message": message})
        for sink in list(self._sinks.values()):
            sink(frame)

    # --- the backplane's listener ------------------------------------------------------------

    def deliver(self, room, frame, exclude=None):
        """A frame for the room's members on this node."""
        self.hub.publish(room, frame, exclude)

    def deliver_message(self, message):
        """A stored message for the room's members on this node: encoded once here."""
        self.hub.publish(message.room, self.frame("message", message.as_dict()))

    def receives(self, room):
        """Whether any member on this node receives the room's frames."""
        return self.hub.members(room) > 0

    def restore(self):
        """The backplane is back after an outage: reclaim what this node's members held.

        A member whose nickname another took meanwhile is closed. Returns the members here.
        """
        for member in self.chat.restore():
            self.close(member)
        return set(self.chat.members)

    def left(self, room, nickname):
        """A member of a node that died was taken off the room's roster."""
        self._announce(room, "leave", nickname)

    def _forget(self, member, rooms, nickname):
        self._sinks.pop(member, None)
        self._closers.pop(member, None)
        self._limits.pop(member, None)
        self.hub.drop(member)
        for room in rooms:
            self._announce(room, "leave", nickname)

    def _announce(self, room, kind, nickname, **extra):
        count = self.backplane.count(room)
        if kind in PRESENCE_KINDS and count > self.announce_limit:
            return
        notice = {
            "room": room,
            "kind": kind,
            "nickname": nickname,
            "count": count,
            "ts": self.chat.clock(),
        }
        notice.update(extra)
        frame = self.frame("announce", notice)
        if kind in PRESENCE_KINDS and self.presence is not None:
            self._publish_notices(room, self.presence.offer(room, frame))
        else:
            self._send_waiting_notices(room)
            self.backplane.publish(room, frame)

    def _publish_notices(self, room, frames):
        """Send a batch of presence notices; the room's next batch waits one interval."""
        if frames:
            # The tick first: a publish that fails must not leave the room hot for ever.
            self.schedule(self.presence_interval, functools.partial(self._presence_tick, room))
            for frame in frames:
                self.backplane.publish(room, frame)

    def _presence_tick(self, room):
        try:
            self._publish_notices(room, self.presence.tick(room))
        except Exception as error:  # the backplane went down: the notices are lost, not the room
            log.warning("presence notices for %r not sent: %s", room, error)
            self.presence.waiting.pop(room, None)

    def _send_waiting_notices(self, room):
        """Before anything else goes to ``room`` (raw or clean name): its waiting notices."""
        if self.presence is None or not self.presence.waiting:
            return
        try:
            room = clean_room_name(room)
        except ChatError:
            return  # not a room: the request is refused as it would have been
        for frame in self.presence.take(room):
            self.backplane.publish(room, frame)
