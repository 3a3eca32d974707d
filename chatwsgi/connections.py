"""Connection-level limits: no client may use up the descriptors or the time everyone shares.

Every accepted connection is counted until its descriptor closes (a websocket session's
outlives its request). Below ``max_connections - reserved_connections`` a connection is
served normally. In the reserve only ``/healthz`` is answered and everything else gets a
fast 503, so a load balancer still sees the node and a client learns at once that it is
full instead of waiting for a timeout. Past ``max_connections`` a connection is answered
503 without being read. The default limit leaves descriptors for the server's own use
(listener, logs, Redis, the static file being sent), so accepting never fails with EMFILE;
if it does anyway (another part of the process holds many files), accepting pauses
briefly, quietly.

The time limits (``request_timeout``, ``idle_timeout``) are applied per request by the
handler (``compat/handler.py``).
"""

import contextlib
import errno
import resource
import socket as socketlib

import gevent
from gevent import socket as gsocket

NORMAL, CROWDED, FULL = "normal", "crowded", "full"
SETTINGS = {
    # A request's line and headers (and a Socket.IO POST's body) must arrive within this.
    "request_timeout": 10.0,
    # A keep-alive connection waits this long for its next request, then closes.
    "idle_timeout": 30.0,
    # Handshakes not yet followed by a connection; more are refused with 503.
    "max_pending_sessions": 10_000,
    "max_connections": None,  # None: the descriptor limit less OWN_DESCRIPTORS
    "reserved_connections": None,  # None: a tenth of max_connections, at most 100
}
OWN_DESCRIPTORS = 64
CROWDED_REQUEST_TIMEOUT = 1.0  # a connection in the reserve is read this long at most
FULL_LINGER = 0.2  # how long a refused connection is given to send its request (no reset)
RETRY_AFTER = "5"
EXHAUSTED = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


def descriptor_limit():
    """The process's soft limit on open files (RLIMIT_NOFILE)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 1 << 20 if soft == resource.RLIM_INFINITY else soft


def connection_limits(max_connections, reserved_connections, descriptors):
    """(max_connections, reserved_connections) with defaults filled in from ``descriptors``."""
    if max_connections is None:
        max_connections = max(1, descriptors - OWN_DESCRIPTORS)
    if reserved_connections is None:
        reserved_connections = min(100, max_connections // 10)
    if max_connections < 1 or not 0 <= reserved_connections < max_connections:
        raise ValueError("need max_connections >= 1 and 0 <= reserved_connections < max_connections")
    return max_connections, reserved_connections


def pop_connection_config(settings, descriptors=None):
    """Take the connection settings out of ``settings``, defaults derived and checked."""
    config = {name: settings.pop(name, default) for name, default in SETTINGS.items()}
    config["max_connections"], config["reserved_connections"] = connection_limits(
        config["max_connections"],
        config["reserved_connections"],
        descriptor_limit() if descriptors is None else descriptors,
    )
    if min(config["request_timeout"], config["idle_timeout"]) <= 0 or config["max_pending_sessions"] < 1:
        raise ValueError("request_timeout and idle_timeout must be > 0, max_pending_sessions >= 1")
    return config


class Connections:
    """How many accepted connections still hold a descriptor, against the limits."""

    def __init__(self, limit, reserved):
        self.open = 0
        self.limit, self.reserved = limit, reserved

    def admission(self):
        """How to treat the connection just accepted (already counted): NORMAL, CROWDED or FULL."""
        if self.open > self.limit:
            return FULL
        if self.open > self.limit - self.reserved:
            return CROWDED
        return NORMAL

    def opened(self):
        """A connection was accepted."""
        self.open += 1

    def closed(self):
        """A connection's descriptor was closed."""
        self.open -= 1


class ClientSocket(gsocket.socket):
    """An accepted connection that tells ``connections`` when its descriptor closes.

    gevent's handler closes the underlying socket itself and then this object (whose
    makefile reader may still hold a reference); a websocket session's reader closes it
    last, long after. Either way the count drops once, when the descriptor does.
    """

    __slots__ = ("connections", "admission")

    def __init__(self, connections, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.connections = connections
        connections.opened()
        # Judged now, in accept order: gevent accepts up to 100 connections before any of
        # their handlers runs, and judging each later would count the whole batch against it.
        self.admission = connections.admission()

    def close(self):
        """Close; counted now if the descriptor is already closed underneath."""
        super().close()
        if self.connections is not None and self._sock.fileno() == -1:
            self._settle()

    def _real_close(self, *args):
        super()._real_close(*args)
        self._settle()

    def _settle(self):
        connections, self.connections = self.connections, None
        if connections is not None:
            connections.closed()


def refuse_at_once(sock):
    """A 503 for a connection past the limit, written before reading anything.

    The request is then given a moment to arrive and is read, so that closing does not
    reset the connection before the client has read the answer.
    """
    with contextlib.suppress(OSError):
        sock.sendall(FULL_RESPONSE)
        sock.shutdown(socketlib.SHUT_WR)
        with gevent.Timeout(FULL_LINGER, False):
            sock.recv(65536)


def canned_response(status, text, *headers):
    """A whole HTTP/1.1 response that closes its connection: plain text, clear reason."""
    body = text.encode() + b"\n"
    lines = ["HTTP/1.1 " + status, "Connection: close", "Content-Type: text/plain"]
    lines += ["%s: %s" % header for header in headers]
    lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


FULL_RESPONSE = canned_response(
    "503 Service Unavailable",
    "The server is at its connection limit: try again in a few seconds.",
    ("Retry-After", RETRY_AFTER),
)
