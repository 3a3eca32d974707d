"""Building the SocketIOServer with our hooks, settings and one session tender (B14, B17, B19)."""

import contextlib
import logging
import socket as socketlib
import time

import gevent
from socketio.server import SocketIOServer

from chatwsgi import connections, memory, protocol
from chatwsgi.compat.handler import TRANSPORTS, ChatHandler
from chatwsgi.compat.socket import ChatSocket
from chatwsgi.liveness import SETTINGS as LIVENESS_SETTINGS
from chatwsgi.liveness import Liveness
from chatwsgi.metrics import NO_METRICS

log = logging.getLogger(__name__)

ADVERTISED = tuple(TRANSPORTS)
SESSION_DEFAULTS = {
    "handshake_timeout": 30,
    "max_packet_bytes": 64 * 1024,
    "max_body_bytes": 1024 * 1024,
    # A websocket client this far behind (bytes written but unread) is dropped.
    "max_backlog_bytes": 1024 * 1024,
    # Inbound packets per session (heartbeats included): a rate and a burst; far past the
    # burst is a flood and ends the session.
    "max_packet_rate": 50.0,
    "max_packet_burst": 100,
    "allowed_origins": (),
}


def unknown_transports(transports):
    """What is wrong with a transport list: names we do not advertise, or "(none)" if empty."""
    return sorted(set(transports) - set(ADVERTISED)) or ([] if transports else ["(none)"])


def pop_session_config(settings):
    """Take the session settings out of ``settings``: (Liveness, the config every session reads)."""
    # Heartbeats, timeouts, poll duration and the tender's pace: Liveness derives the heartbeat
    # schedule from them, so a client always hears from us inside its timeout.
    liveness = Liveness(**{k: settings.pop(k) for k in LIVENESS_SETTINGS if k in settings})
    config = {k: settings.pop(k, v) for k, v in SESSION_DEFAULTS.items()}
    config["allowed_origins"] = tuple(config["allowed_origins"])
    heartbeat_timeout, close_timeout = liveness.advertised
    config.update(
        heartbeat_interval=liveness.heartbeat_every,
        heartbeat_timeout=heartbeat_timeout,
        close_timeout=close_timeout,
        poll_duration=liveness.poll_hold,
    )
    return liveness, config


class ChatServer(SocketIOServer):
    """A SocketIOServer on 127.0.0.1 by default, with our handler, sessions and limits."""

    def __init__(self, listener, application, transports=ADVERTISED, freeze_heap=True, **settings):
        # The app's metrics unless told: a ChatMiddleware has them, another app reports nothing.
        self.metrics = settings.pop("metrics", None) or getattr(application, "metrics", NO_METRICS)
        self.liveness, session_config = pop_session_config(settings)
        session_config.update(connections.pop_connection_config(settings))
        unknown = unknown_transports(transports)
        if unknown:
            raise ValueError(
                "transports must be some of %s, not %s" % (",".join(ADVERTISED), ",".join(unknown))
            )
        settings.setdefault("policy_server", False)  # B19: the Flash policy server always fails
        settings.setdefault("handler_class", ChatHandler)
        super().__init__(listener, application, transports=list(transports), **settings)
        self.config.update(session_config)
        self.metrics.watch_sessions(self.sockets)
        self._tender = None
        self._arrivals = None  # ids of sessions made since the tender last divided them into slices
        self.trim_policy = memory.TrimPolicy()
        # Python's full collections walk what is frozen no more (memory.py): a process
        # hosting the chat may opt out with freeze_heap=False.
        self.freeze_policy = memory.FreezePolicy() if freeze_heap else None
        self.connections = connections.Connections(
            session_config["max_connections"], session_config["reserved_connections"]
        )
        self.pending = {}  # ids of sessions handshaken and maybe not connected yet, oldest first
        self._exhausted_logged = 0.0

    def do_read(self):
        """Accept one connection as a counted ClientSocket; pause quietly when out of descriptors.

        gevent's own ``do_read`` printed a traceback per failed accept at the descriptor limit.
        """
        try:
            fd, address = self.socket._accept()
        except BlockingIOError:
            return None
        except OSError as error:
            if error.errno not in connections.EXHAUSTED:
                raise
            self._pause_accepting(error)
            return None
        listener = self.socket
        sock = connections.ClientSocket(
            self.connections, listener.family, listener.type, listener.proto, fileno=fd
        )
        return sock, address

    def _pause_accepting(self, error):
        now = time.monotonic()
        if now - self._exhausted_logged > 10:  # a warning, not one per connection attempt
            self._exhausted_logged = now
            log.warning("accepting paused: %s (%d connections open)", error, self.connections.open)
        self.stop_accepting()
        gevent.spawn_later(0.1, self._resume_accepting)

    def _resume_accepting(self):
        if self.started:
            self.start_accepting()

    def handle(self, socket, address):
        """Serve one connection: B17 (no Nagle delay, so a poll's headers and body leave at
        once), and the connection limits (see connections.py)."""
        with contextlib.suppress(OSError):  # not TCP (a Unix socket): nothing to tune
            socket.setsockopt(socketlib.IPPROTO_TCP, socketlib.TCP_NODELAY, 1)
        # Judged at accept (see ClientSocket); a socket accepted elsewhere is not counted.
        admission = getattr(socket, "admission", connections.NORMAL)
        if admission is connections.FULL:
            return connections.refuse_at_once(socket)
        handler = self.handler_class(self.config, socket, address, self)
        handler.crowded = admission is connections.CROWDED
        return handler.handle()

    def get_socket(self, sessid=""):
        """The session with this id (None if unknown), or a new one when no id is given."""
        if sessid:
            return self.sockets.get(sessid)
        session = ChatSocket(self, self.config)
        self.sockets[session.sessid] = session
        self.pending[session.sessid] = None
        if self._arrivals is not None:
            self._arrivals.append(session.sessid)
        self.metrics.session_opened()
        return session

    def make_room_for_pending(self):
        """Keep at most ``max_pending_sessions`` sessions handshaken but not connected: past
        it the oldest goes. A real client connects within moments of its handshake, so a
        flood of handshakes pushes out its own, not the next user's (a refusal would)."""
        limit = self.config["max_pending_sessions"]
        if len(self.pending) < limit:
            return
        # Pruned when it looks full (and after a wave, see compact): connected and ended
        # sessions leave no trace elsewhere, and a pass per ``limit`` handshakes is cheap.
        self._prune_pending()
        while len(self.pending) >= limit:
            oldest = next(iter(self.pending))
            del self.pending[oldest]
            log.debug("too many sessions starting: dropped the oldest, %s", oldest)
            self.sockets[oldest].kill(detach=True)

    def _prune_pending(self):
        sockets = self.sockets
        self.pending = {
            sessid: None
            for sessid in self.pending
            if sessid in sockets and not sockets[sessid].connection_established
        }

    def start_accepting(self):
        """Start accepting and the session tender."""
        super().start_accepting()
        if self._tender is None:
            self._tender = gevent.spawn(self._tend_forever)

    def stop(self, timeout=None):
        """Stop the tender, end every session, stop serving."""
        if self._tender is not None:
            self._tender.kill()
            self._tender = None
            self._arrivals = None
        for session in list(self.sockets.values()):
            session.kill(detach=True)
        super().stop(timeout=timeout)

    def _tend_forever(self):
        # Each wake-up tends one slice of the sessions: with 19,000 idle connections a pass
        # over all of them every second was the largest part of the server's idle CPU. The
        # sessions are divided into slices once per round (every ``slices`` wake-ups), not
        # filtered on every wake-up; those made during a round join their slice at once. The
        # slices hold ids, not sessions: one that ends is freed at once, not after the round.
        turn, slices, parts = 0, self.liveness.slices, None
        while True:
            asleep = time.monotonic()
            gevent.sleep(self.liveness.tend_interval)
            # How late the tender woke is how long other greenlets held the loop: the event-loop lag.
            self.metrics.loop_lag(time.monotonic() - asleep - self.liveness.tend_interval)
            try:
                if turn == 0 or parts is None:
                    parts, self._arrivals = self.divide(slices), []
                else:
                    self._sort_arrivals(parts, slices, turn)
                now = time.monotonic()
                self.tend_sessions(now, parts[turn])
                parts[turn] = None  # visited: its sessions may go before the round ends
                self.tend_memory(now)
            except Exception:
                log.exception("session tender failed")
                parts = None
            turn = (turn + 1) % slices

    def tend_memory(self, now):
        """Once per wake-up: after a wave of departures keep nothing of theirs and hand their
        memory back; else freeze the heap as it grows, with a full collection now and then
        (see memory.py)."""
        sessions, freezing = len(self.sockets), self.freeze_policy
        if self.trim_policy.should_trim(sessions):
            self.compact()
            memory.collect_and_release(frozen=freezing is not None)
            if freezing is not None:
                freezing.refreshed_at(now, sessions)
        elif freezing is not None:
            if freezing.should_refresh(now):
                memory.collect_all()
                freezing.refreshed_at(now, sessions)
            elif freezing.should_freeze(sessions):
                memory.freeze_new()

    def compact(self):
        """After a wave of departures: forget the ids of sessions no longer pending, and
        rebuild the session tables at their present size.

        Measured (bench/servers/debughook.py): after a wave of 19,000 left, 9,001 ids of
        ended sessions were still in ``pending`` (pruned only when it looked full), small
        strings scattered over the arenas of Python's allocator that the wave had filled.
        A dict never shrinks on deletion, so the tables are rebuilt too (in place: others
        hold them)."""
        self._prune_pending()
        sockets = self.sockets
        live = dict(sockets)
        sockets.clear()  # frees the table sized for the peak
        sockets.update(live)

    def divide(self, slices):
        """The session ids in ``slices`` stable slices (by the id's hash), in one pass."""
        if slices == 1:
            return [list(self.sockets)]
        parts = [[] for _ in range(slices)]
        for sessid in self.sockets:
            parts[hash(sessid) % slices].append(sessid)
        return parts

    def _sort_arrivals(self, parts, slices, turn):
        # A session made during the round joins its slice if that is still to be visited this
        # round (else the next round's division has it).
        arrivals, self._arrivals = self._arrivals or (), []
        for sessid in arrivals:
            index = hash(sessid) % slices
            if index >= turn:
                parts[index].append(sessid)

    def tend(self, now, turn=0, slices=1):
        """End stale sessions (B14) and queue due heartbeats, for every ``slices``-th
        session from ``turn`` (by default all of them)."""
        self.tend_sessions(now, self.divide(slices)[turn])

    def tend_sessions(self, now, sessids):
        """End the stale ones of these sessions (B14) and queue their due heartbeats."""
        sockets = self.sockets
        for sessid in sessids:
            session = sockets.get(sessid)
            if session is None:
                continue  # ended since the sessions were divided
            if session.is_stale(now):
                log.debug("ending stale session %s", session.sessid)
                session.kill(detach=True)
            elif session.connected and session.heartbeat_due(now):
                session.put_client_msg(protocol.HEARTBEAT)

    def connection_count(self):
        """Sessions by transport, for /healthz."""
        counts = {"websocket": 0, "polling": 0, "pending": 0}
        for session in self.sockets.values():
            if not session.connection_established:
                counts["pending"] += 1
            else:
                counts["websocket" if session.is_websocket else "polling"] += 1
        return counts


LISTEN_BACKLOG = 4096


def make_server(application, host="127.0.0.1", port=8080, **settings):
    """A ChatServer for ``application`` bound to host:port (127.0.0.1 unless told)."""
    settings.setdefault("log", None)
    # The kernel queues this many connections not yet accepted (capped by net.core.somaxconn):
    # gevent's 128 overflowed in a reconnect storm, and each SYN dropped cost a client 1 s.
    settings.setdefault("backlog", LISTEN_BACKLOG)
    # pywsgi's complaints go to logging (at ERROR), not straight to stderr.
    settings.setdefault("error_log", logging.getLogger("chatwsgi.http"))
    return ChatServer((host, port), application, **settings)
