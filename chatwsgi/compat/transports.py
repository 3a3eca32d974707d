"""The three advertised transports, fixed for Python 3 (B4, B5, B6, B7, B9, B15, B18).

Each transport answers one HTTP request of a session (or, for websocket, greets the
client and leaves the connection to the session's EventReader and FrameWriter, in
chatwsgi/delivery.py) and
moves packets between the wire and the session. Responses are built as bytes with
string headers (B4, B11).
"""

import logging
import socket as socketlib

import gevent
from socketio import transports

from chatwsgi import protocol
from chatwsgi.delivery import FrameWriter

log = logging.getLogger(__name__)


class PollingTransport(transports.XHRPollingTransport):
    """xhr-polling: GET waits for queued packets, POST delivers packets."""

    content_type = "text/plain; charset=UTF-8"

    def __init__(self, handler, config):
        super().__init__(handler, config)
        self.content_type = type(self).content_type

    def do_exchange(self, socket, request_method):
        """Answer one request of an established or establishing session."""
        if not socket.connection_established:
            return self.respond(protocol.CONNECT)
        method = getattr(self, "on_" + request_method.lower(), None)
        if method is None:
            return self.handler.refuse("405 Method Not Allowed", "Use GET, POST or OPTIONS.")
        return method(socket)

    def on_options(self, socket):
        """CORS preflight."""
        return self.respond("")

    def on_get(self, socket):
        """Long poll: hold until packets are queued or the poll duration ends.

        A client that gives up on a poll (a timeout of its own, a page navigating away)
        closes its connection: the poll stops waiting then, so the next packet goes to the
        client's live poll instead of into a dead connection.
        """
        socket.poll_started()
        try:
            try:
                with HangupWatch(self.handler.socket):
                    messages = socket.take_client_msgs(timeout=self.config["poll_duration"])
            except PollAbandoned:
                log.debug("poll of %s abandoned by its client", socket.sessid)
                self.handler.close_connection = True
                return
            try:
                self.respond(protocol.encode_payload(messages) if messages else protocol.NOOP)
                socket.poll_written(messages)
            except OSError:
                # B18: the client went away mid-write; keep the packets for its next poll.
                socket.give_back(messages)
                self.handler.close_connection = True
        finally:
            socket.poll_ended()

    def on_post(self, socket):
        """Deliver the posted packets to the session (B5: the whole body, not one line)."""
        if socket.closing:  # nothing more is taken from it; the connection goes too
            return self.handler.refuse("400 Bad Request", "This session is ending: handshake again.")
        body = self.handler.read_body(self.config["max_body_bytes"])
        if body is None:
            return None
        try:
            messages = protocol.decode_payload(self.decode_body(body))
        except protocol.ProtocolError as error:
            socket.error("invalid_packet", str(error), endpoint="")
        else:
            socket.receive_all(messages)
        return self.respond("1")

    def decode_body(self, body):
        """The payload text of a POST body."""
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            raise protocol.ProtocolError("the body is not UTF-8") from None

    def respond(self, payload):
        """Send the payload as this transport frames it (B4: bytes, never str)."""
        self.handler.respond("200 OK", self.frame(payload).encode("utf-8"), self.content_type)

    def frame(self, payload):
        """The response body for a payload."""
        return payload


class PollAbandoned(Exception):
    """The client closed the connection of a long poll while it was held."""


class HangupWatch:
    """While active, the greenlet that entered it gets PollAbandoned if the peer hangs up.

    A libev io watcher on the connection wakes on readability: end of stream or an error
    there means the client is gone (a client that half-closes after its request is taken
    as gone too: nothing is lost, its packets stay queued). Data there (a request sent
    early) is left for the server to read and the watch stops.
    """

    def __init__(self, connection):
        self.connection = connection
        self.watcher = None
        self.waiter = None

    def __enter__(self):
        self.waiter = gevent.getcurrent()
        self.watcher = gevent.get_hub().loop.io(self.connection.fileno(), 1)  # 1: readable
        self.watcher.start(self._readable)
        return self

    def __exit__(self, *exc):
        self.watcher.stop()
        self.watcher = self.waiter = None

    def _readable(self):
        self.watcher.stop()
        timeout = self.connection.gettimeout()
        self.connection.settimeout(0.0)  # a peek that never blocks (this runs in the hub)
        try:
            hung_up = self.connection.recv(1, socketlib.MSG_PEEK) == b""
        except BlockingIOError:
            self.watcher.start(self._readable)  # woken for nothing: no data, no end
            return
        except OSError:
            hung_up = True
        finally:
            self.connection.settimeout(timeout)
        if hung_up:
            self.waiter.throw(PollAbandoned())


class JSONPPollingTransport(PollingTransport):
    """jsonp-polling: GET answers a script calling io.j[i](...), POST is a form (B7)."""

    content_type = "text/javascript; charset=UTF-8"

    def do_exchange(self, socket, request_method):
        """Refuse a callback index that is not a small number before anything else."""
        if protocol.jsonp_index(self.handler.environ.get("QUERY_STRING")) is None:
            return self.handler.refuse("400 Bad Request", "The 'i' parameter must be a number.")
        return super().do_exchange(socket, request_method)

    def decode_body(self, body):
        """The payload inside the form field ``d`` (B7: parsed, not hand-unquoted)."""
        return protocol.decode_jsonp_body(body)

    def on_post(self, socket):
        """Form posts expect an HTML-ish answer; the body is ignored by the client."""
        self.content_type = "text/plain; charset=UTF-8"
        return super().on_post(socket)

    def frame(self, payload):
        """Wrap the payload in the client's callback, JSON-escaped (B7)."""
        if self.content_type.startswith("text/plain"):
            return payload
        index = protocol.jsonp_index(self.handler.environ.get("QUERY_STRING"))
        return protocol.jsonp_script(index, payload)


class WebsocketTransport(transports.WebsocketTransport):
    """websocket: packets written straight to the socket, read by an EventReader."""

    def do_exchange(self, socket, request_method):
        """Greet the client, then send every packet through a FrameWriter (no sender greenlet)."""
        websocket = self.handler.environ["wsgi.websocket"]
        websocket.send(protocol.CONNECT)
        limit = self.config["max_backlog_bytes"]
        socket.attach_writer(FrameWriter(self.handler.socket, limit, socket.drop_slow_consumer))
