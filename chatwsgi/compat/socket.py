"""The virtual socket of one session, fixed for Python 3 (B2, B3, B13, B14, B18, B20).

Decoding and dispatch use our own strict codec; a bad packet or a failing handler
costs that packet only, never the session.
"""

import contextlib
import logging
import secrets
import time

import gevent
from gevent.event import AsyncResult, Event
from gevent.queue import Empty, Queue
from socketio.virtsocket import Socket

from chatwsgi import protocol
from chatwsgi.errors import ChatError
from chatwsgi.limits import Flood, TokenBucket
from chatwsgi.metrics import NO_METRICS

log = logging.getLogger(__name__)


def send_error(socket, error_name, error_message, endpoint, msg_id, quiet):
    """Error handler for socketio_manage: an ``error`` event {code, message} (B2: endpoint may be None)."""
    log.debug("error %s on %s: %s", error_name, socket.sessid, error_message)
    if quiet:
        return
    getattr(socket, "metrics", NO_METRICS).refused(error_name)  # any socket-like object will do
    packet = {
        "type": "event",
        "name": "error",
        "args": [{"code": error_name, "message": error_message}],
        "endpoint": endpoint or "",
    }
    socket.send_packet(packet)


class ChatSocket(Socket):
    """A session: queues, namespaces, liveness bookkeeping."""

    # Made on first use: only polling sessions need them (memory per idle websocket).
    LAZY = {"client_queue": Queue, "server_queue": Queue, "timeout": Event}

    def __init__(self, server, config, error_handler=None):
        super().__init__(server, config, error_handler or send_error)
        for name in self.LAZY:
            del self.__dict__[name]
        # B13: the session id is the only credential on polling URLs: make it unguessable.
        self.sessid = secrets.token_urlsafe(18)
        self.created = time.monotonic()
        self.last_seen = self.created
        self.last_heartbeat = self.created
        self.polls_open = 0
        self.returned = []  # B18: packets a failed poll write must not lose
        self.connection = None  # the TCP socket a websocket session lives on
        self.writer = None  # a websocket session's FrameWriter: packets go straight out
        self.reader = None  # a websocket session's EventReader
        self.bound_transport = None  # the transport it connected on: no other may use it
        # Every inbound packet, heartbeats included, costs a token of the session's own.
        self.packet_limit = TokenBucket(config["max_packet_rate"], config["max_packet_burst"])
        self.event_limits = None  # the chat's limits, made when the namespace first connects
        # Ending: nothing more is taken from the client or queued for it, and the session is
        # killed soon, from a greenlet of its own (see end).
        self.closing = False
        self.ending = None  # the greenlet that will kill it, once scheduled
        # A polling session's packets not yet written to a poll, in characters (our packets
        # are ASCII: the codec escapes the rest).
        self.queued_bytes = 0

    def kill(self, detach=False):
        """End the session; a websocket's TCP connection is shut so its reader wakes (B9)."""
        ending, self.ending = self.ending, None
        if ending is not None and ending is not gevent.getcurrent():
            ending.kill(block=False)  # a kill scheduled by end(): this one does its work
        super().kill(detach=detach)
        if self.writer is not None:
            self.writer.close()
        connection, self.connection = self.connection, None
        if connection is not None:
            with contextlib.suppress(OSError):
                connection.shutdown(2)  # SHUT_RDWR: a blocked recv returns at once
        if self.reader is not None:
            self.reader.close()
        # The request's environ names the session back: without that cycle an ended session
        # is freed at once, not by a full collection (see memory.py).
        environ = self.environ
        if isinstance(environ, dict) and environ.get("socketio") is self:
            del environ["socketio"]
        # So do its greenlets, through their frames: they are dead or finishing (a running
        # one is held by the hub until it ends).
        self.jobs, self.wsgi_app_greenlet = [], None

    @property
    def metrics(self):
        """The server's ChatMetrics (a server without any reports nothing)."""
        return getattr(self.server, "metrics", NO_METRICS)

    # Inbound --------------------------------------------------------------

    def put_server_msg(self, msg):
        """Take one inbound packet; any traffic proves the client alive.

        A websocket session dispatches it at once in its reader's greenlet (packets are
        read one at a time anyway); a polling session queues it for its receiver loop.
        """
        self.last_seen = time.monotonic()
        if self.is_websocket:
            self.handle_raw(msg)
        else:
            self.server_queue.put_nowait(msg)

    def receive_all(self, messages):
        """Queue inbound packets, refusing ones over the size cap or rate, or not text."""
        for message in messages:
            if self.closing or not self.admit_packet():
                return
            if not isinstance(message, str):
                self.error("invalid_packet", "Packets are text frames.", endpoint="")
            elif len(message) > self.config["max_packet_bytes"]:
                self.refuse_too_large()
            else:
                self.put_server_msg(message)

    def admit_packet(self):
        """Spend a packet token: False (and an error, or the end of a flood) when refused."""
        try:
            self.packet_limit.take("packets")
        except Flood as flood:
            self.metrics.rate_limited("packets")
            self.end_flood(flood.message)
            return False
        except ChatError as refusal:
            self.metrics.rate_limited("packets")
            self.error(refusal.code, refusal.message, endpoint="")
            return False
        return True

    def end_flood(self, reason, told=False):
        """End a session flooding the server: told why (unless ``told`` already), logged
        once at warning with its address, booted."""
        if self.closing:
            return
        address = (self.environ or {}).get("REMOTE_ADDR", "?")
        log.warning("session %s from %s disconnected: %s", self.sessid, address, reason)
        if not told:
            self.error("flood", reason, endpoint="")
        self.boot()

    def boot(self, linger=False):
        """End the session on purpose, telling the client: ``0::`` makes the 0.9 client take
        it as disconnected by the server, and it does not reconnect (as after a plain close).

        A poll the client holds carries it at once; with ``linger`` a polling session without
        one waits for its next poll to carry it (a tab whose nickname was reclaimed must hear
        it, or it reconnects and reclaims it back).
        """
        if self.closing or not self.connected:
            return
        self.put_client_msg(protocol.DISCONNECT)
        self.end(after_goodbye=linger)

    def end(self, after_goodbye=False):
        """Stop taking or queueing packets and kill the session soon, never from here.

        Never killed in the caller's greenlet: it may be a broadcast handing a frame to each
        member (a kill there would cut it short for everyone after this one) or the session's
        own receiver loop (which the kill waits for). A websocket's kill runs after this
        turn's frames are written (their uncork is queued first). With ``after_goodbye``, a
        polling session lives until its next poll has carried what was queued, or one poll
        duration if the client never polls again.
        """
        if self.closing:
            return
        self.closing = True
        wait = 0
        if after_goodbye and self.writer is None and not self.polls_open:
            wait = self.config["poll_duration"]
        self._kill_in(wait)

    def _kill_in(self, seconds):
        if self.ending is not None:
            self.ending.kill(block=False)
        self.ending = gevent.spawn_later(seconds, self.kill, True)

    def refuse_too_large(self):
        """Tell the client a packet was dropped for its size."""
        self.last_seen = time.monotonic()
        limit = self.config["max_packet_bytes"]
        self.error("frame_too_large", "A packet has at most %d bytes." % limit, endpoint="")

    def _spawn_receiver_loop(self):
        """socketio_manage waits on this: a greenlet for polling, nothing to wait for on a
        websocket (its reader dispatches, see put_server_msg)."""
        if not self.is_websocket:
            return super()._spawn_receiver_loop()
        done = AsyncResult()
        done.set()
        return done

    def _receiver_loop(self):
        """Decode and dispatch inbound packets until the session ends (B3: per-packet errors)."""
        while self.connected:
            raw = self.get_server_msg()
            if raw is None:
                break
            self.handle_raw(raw)
        self.kill(detach=True)

    def handle_raw(self, raw):
        """Decode and dispatch one packet; errors become error events."""
        if self.closing:
            return  # queued before the session began to end: not handled
        try:
            packet = protocol.decode_packet(raw)
        except protocol.ProtocolError as error:
            self.error("invalid_packet", str(error), endpoint="")
            return
        try:
            self.dispatch(packet)
        except Exception:
            log.exception("handler failed on %s", self.sessid)
            self.error("server_error", "The server failed on that packet.", endpoint=packet["endpoint"])

    def dispatch(self, packet):
        """Route one decoded packet to its namespace and send any requested ack."""
        kind, endpoint = packet["type"], packet["endpoint"]
        if kind in ("heartbeat", "noop"):
            return
        if kind == "disconnect" and endpoint == "":
            self.boot()
            return
        if kind != "connect" and endpoint in self.namespaces and endpoint not in self.active_ns:
            # A namespace opens with its connect packet only (as in the 0.9 reference): one
            # made by any other packet would never have run recv_connect.
            if kind != "disconnect":
                self.error(
                    "not_connected", "Connect to %s first (send 1::%s)." % (endpoint, endpoint), endpoint
                )
            return
        namespace = self.namespace_for(endpoint)
        if namespace is None:
            self.error("no_such_namespace", "No namespace %r here." % endpoint, endpoint=endpoint)
            return
        result = namespace.process_packet(packet)
        if packet.get("ack") == "data" and "id" in packet:
            args = list(result) if isinstance(result, tuple) else [result]
            self.send_packet({"type": "ack", "ackId": packet["id"], "args": args, "endpoint": endpoint})

    def detach(self):
        """Leave the server's sessions (if the server is still there: a late kill may not)."""
        with contextlib.suppress(ReferenceError):
            if self.sessid in self.server.sockets:
                self.metrics.session_closed()
            super().detach()

    def remove_namespace(self, namespace):
        """The client left a namespace: forget it, the session lives on.

        gevent-socketio ends the whole session when its last namespace goes; the 0.9
        reference does not, and the 0.9 client then reconnected and reopened the namespace
        it had just left.
        """
        self.active_ns.pop(namespace, None)

    def namespace_for(self, endpoint):
        """The endpoint's namespace, created on its first packet; None if unknown."""
        if endpoint in self.active_ns:
            return self.active_ns[endpoint]
        factory = self.namespaces.get(endpoint)
        if factory is None:
            return None
        namespace = factory(self.environ, endpoint, request=self.request)
        for cls in type(namespace).__mro__:
            if "initialize" in vars(cls):
                cls.initialize(namespace)
        self.active_ns[endpoint] = namespace
        return namespace

    # Outbound -------------------------------------------------------------

    def send_packet(self, pkt):
        """Send one packet to the client, encoded by our codec."""
        self.put_client_msg(protocol.encode_packet(pkt))

    def put_client_msg(self, msg):
        """One packet for the client: written now on a websocket, queued for the next poll.

        A polling client more than ``max_backlog_bytes`` behind is dropped like a slow
        websocket consumer: its queue never grows without bound.
        """
        if self.writer is None:
            if msg is not None:
                if self.closing and msg != protocol.DISCONNECT:
                    return
                self.queued_bytes += len(msg)
                if self.queued_bytes > self.config["max_backlog_bytes"] and self.connected:
                    self.drop_slow_consumer()
                    return
            self.client_queue.put_nowait(msg)
        elif msg is not None:  # None is the library's end-of-session mark for a sender loop
            self.writer.send(msg)

    def __getattr__(self, name):
        factory = self.LAZY.get(name)
        if factory is None:
            raise AttributeError(name)
        value = self.__dict__[name] = factory()
        return value

    def attach_writer(self, writer):
        """From now on packets go straight out through ``writer`` (queued ones first)."""
        self.writer = writer
        queued = self.__dict__.get("client_queue")
        while queued is not None and queued.qsize():
            self.put_client_msg(queued.get_nowait())

    def has_unsent(self):
        """Whether packets for the client still wait (to let them out before a shutdown)."""
        if self.writer is not None:
            return self.writer.has_unsent()
        queued = self.__dict__.get("client_queue")
        return bool(queued is not None and queued.qsize())

    def drop_slow_consumer(self):
        """The client reads slower than the chat writes: end its session, keep the memory."""
        if not self.closing:
            log.warning("session %s dropped: its unread backlog passed the limit", self.sessid)
            self.metrics.slow_consumer_dropped()
        self.end()

    def take_client_msgs(self, timeout):
        """Everything queued for one poll, waiting up to ``timeout`` for the first."""
        messages, self.returned = self.returned, []
        if not messages:
            try:
                messages = [self.client_queue.get(timeout=timeout)]
            except Empty:
                return []
        while self.client_queue.qsize():
            messages.append(self.client_queue.get_nowait())
        return [m for m in messages if m is not None]

    def give_back(self, messages):
        """B18: packets a poll could not write go out first on the next poll."""
        self.returned = list(messages) + self.returned

    def poll_written(self, messages):
        """The packets a poll took reached the client's connection: no longer queued (and a
        closing session, its goodbye delivered, can go now)."""
        self.queued_bytes -= sum(map(len, messages))
        if self.closing:
            self._kill_in(0)

    # Liveness (checked by the server's one session tender, see server.py) -

    def poll_started(self):
        """A long poll is open: the client is alive while it waits."""
        self.polls_open += 1
        self.last_seen = time.monotonic()

    def poll_ended(self):
        """A long poll answered."""
        self.polls_open -= 1
        self.last_seen = time.monotonic()

    def is_stale(self, now):
        """True when the session should be ended: never connected, silent, or abandoned."""
        config = self.config
        if not self.connection_established:
            return now - self.created > config["handshake_timeout"]  # B14
        if self.polls_open:
            return False
        limit = config["heartbeat_timeout"] if self.is_websocket else config["close_timeout"]
        return now - self.last_seen > limit

    is_websocket = False

    def heartbeat_due(self, now):
        """True when a heartbeat packet should be queued to the client."""
        if now - self.last_heartbeat < self.config["heartbeat_interval"]:
            return False
        self.last_heartbeat = now
        return True

    def _spawn_heartbeat(self):
        """Replaced by the server's session tender: no per-session timer greenlets."""

    def _spawn_watcher(self):
        """Replaced by the server's session tender: no per-session watcher greenlet."""
