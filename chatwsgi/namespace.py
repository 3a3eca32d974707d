"""ChatNamespace: the thin greenlet-side adapter from Socket.IO events to ChatService.

Each ``on_<event>`` takes the client's one request object, calls the service and
returns the ack body. A refusal becomes an ``error`` event and a failed ack.
"""

import functools
import logging

from chatwsgi.compat.namespace import CompatNamespace
from chatwsgi.errors import ChatError
from chatwsgi.limits import Flood

log = logging.getLogger(__name__)


def answers(handler):
    """Turn a ChatError into an ``error`` event plus an ``{ok: false, ...}`` ack; a flood
    also ends the session."""

    @functools.wraps(handler)
    def answer(self, request=None):
        try:
            return handler(self, request)
        except ChatError as refusal:
            self.service.metrics.refused(refusal.code)
            body = refusal.as_dict()
            body["event"] = handler.__name__[3:]
            if isinstance(request, dict) and isinstance(request.get("id"), str):
                body["id"] = request["id"][:64]
            self.emit("error", body)
            if isinstance(refusal, Flood):
                self.socket.end_flood(refusal.message, told=True)
            return dict(body, ok=False)

    return answer


class ChatNamespace(CompatNamespace):
    """One connection's view of the chat; ``self.request`` is the shared ChatService."""

    @property
    def service(self):
        """The ChatService handed to socketio_manage as its ``request``."""
        return self.request

    @property
    def member(self):
        """This connection's member key: its session id."""
        return self.socket.sessid

    def recv_connect(self):
        """The client opened the namespace: register it with no nickname yet.

        The rate limits belong to the session, so opening the namespace again (even after
        closing it) never refills them.
        """
        session = self.socket
        if session.event_limits is None:
            session.event_limits = self.service.new_limits()
        self.connected_to_chat = True
        self.service.connect(self.member, session.put_client_msg, self.end_session, session.event_limits)

    @answers
    def on_nickname(self, request):
        return self.service.nickname(self.member, request)[0]

    @answers
    def on_join(self, request):
        return self.service.join(self.member, request)

    @answers
    def on_leave(self, request):
        return self.service.leave(self.member, request)

    @answers
    def on_message(self, request):
        return self.service.message(self.member, request)

    @answers
    def on_typing(self, request):
        return self.service.typing(self.member, request)

    @answers
    def on_catch_up(self, request):
        return self.service.catch_up(self.member, request)

    @answers
    def on_history(self, request):
        return self.service.history(self.member, request)

    @answers
    def on_roster(self, request):
        return self.service.roster(self.member, request)

    @answers
    def on_rooms(self, request):
        return self.service.rooms(self.member, request)

    def end_session(self):
        """End this session (its nickname was reclaimed by a newer connection); the client is
        told, so it does not reconnect and reclaim it back."""
        self.socket.boot(linger=True)

    def disconnect(self, silent=False):
        """Leave the chat once, whichever way the connection ended."""
        if getattr(self, "connected_to_chat", False):
            self.connected_to_chat = False
            self.service.disconnect(self.member)
        super().disconnect(silent=silent)


class IdentifiedNamespace(ChatNamespace):
    """The chat where the host app signs users in (ChatMiddleware's ``identify``): a connection
    is named as its session's user on connecting, and keeps that name.

    ``self.socket.identity`` is what ``identify`` returned for the session's first request, or
    the ChatError refusing it when ``identify`` failed.
    """

    def recv_connect(self):
        """Connect and take the user's name (told in a ``nickname`` event); a connection the
        chat refuses (not signed in) is told why, and its session ends."""
        super().recv_connect()
        identity = getattr(self.socket, "identity", None)
        try:
            if isinstance(identity, ChatError):
                raise identity
            named = self.service.assign(self.member, identity)
        except ChatError as refusal:
            self.emit("error", dict(refusal.as_dict(), event="connect"))
            if refusal.code == "unavailable":
                self.socket.end()  # the chat's store is restoring: the client reconnects later
            else:
                self.socket.boot(linger=True)  # told, so it does not reconnect to be refused again
            return
        self.emit("nickname", named)

    @answers
    def on_nickname(self, request):
        raise ChatError("nickname_fixed", "Your name here is the one you signed in with.")
