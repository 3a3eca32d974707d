"""What a live server in this process reports as going wrong, for tests that assert nothing did.

gevent reports an exception that escapes a greenlet, a WSGI app or the accept loop
through the hub's ``handle_error`` (which prints a traceback to stderr); pywsgi writes
its complaints to the server's ``error_log`` (a logger, ``chatwsgi.http``, for servers
from ``make_server``); our code logs through ``logging``. ``Faults`` records all of them.
"""

import logging
import time
import traceback

import gevent


class Faults(logging.Handler):
    """Records hub errors (tracebacks) and log records at WARNING and above while started."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.hub_errors = []  # formatted tracebacks of exceptions the hub was handed
        self.records = []
        self._hub = None

    def start(self):
        """Start recording (wraps the hub's handle_error, listens on the root logger)."""
        self._hub = gevent.get_hub()
        original = self._hub.handle_error

        def handle_error(context, kind, value, tb):
            if kind is not None and not issubclass(kind, self._hub.NOT_ERROR):
                self.hub_errors.append("".join(traceback.format_exception(kind, value, tb)))
            return original(context, kind, value, tb)

        self._hub.handle_error = handle_error
        logging.getLogger().addHandler(self)
        return self

    def stop(self):
        """Stop recording."""
        logging.getLogger().removeHandler(self)
        if self._hub is not None:
            self._hub.__dict__.pop("handle_error", None)
            self._hub = None

    def emit(self, record):
        self.records.append(record)

    def tracebacks(self):
        """Every traceback reported: hub errors and log records carrying an exception."""
        logged = ["".join(traceback.format_exception(*r.exc_info)) for r in self.records if r.exc_info]
        return self.hub_errors + logged

    def errors(self):
        """Messages logged at ERROR and above (pywsgi's error_log included)."""
        return [r.getMessage() for r in self.records if r.levelno >= logging.ERROR]

    def warnings(self):
        """Messages logged at WARNING."""
        return [r.getMessage() for r in self.records if r.levelno == logging.WARNING]

    def assert_clean(self):
        """Fail with what was reported if any traceback or error was."""
        assert not self.tracebacks(), "\n".join(self.tracebacks())
        assert not self.errors(), self.errors()


def chat_state_leftovers(service):
    """What a ChatService still holds for connections, by kind: {} once every session ended.

    Rooms themselves (their history) are kept on purpose; their rosters are not.
    """
    backplane, hub, chat = service.backplane, service.hub, service.chat
    held = {
        "members": dict(chat.members),
        "sinks": dict(getattr(service, "_sinks", {})),
        "closers": dict(getattr(service, "_closers", {})),
        "limits": dict(getattr(service, "_limits", {})),
        "hub rooms": {room: list(members) for room, members in getattr(hub, "_rooms", {}).items()},
        "hub members": dict(getattr(hub, "_joined", {})),
        "nicknames": dict(getattr(backplane, "_nicknames", {})),
        "rooms of": dict(getattr(backplane, "_rooms_of", {})),
        "rosters": {name: dict(room.members) for name, room in backplane.rooms.items() if room.members},
    }
    return {kind: things for kind, things in held.items() if things}


def assert_chat_state_back_to_empty(service, timeout=5):
    """Wait (up to ``timeout``) for the chat to hold nothing for any connection; fail with
    what it still holds."""
    deadline = time.monotonic() + timeout
    while chat_state_leftovers(service) and time.monotonic() < deadline:
        gevent.sleep(0.02)  # polling a condition, with a deadline
    assert chat_state_leftovers(service) == {}
