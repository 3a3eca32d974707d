"""The HTTP side of Socket.IO 0.9: handshake, transport requests, refusals.

Replaces gevent-socketio's ``handle_one_response`` flow (B4, B10, B11, B12) while
keeping gevent's own request loop, error handling and logging around it. Also the
per-request time limits (``request_timeout``, ``idle_timeout``), clear 4xx answers to
malformed HTTP, and a session's binding to the one transport it connected on.
"""

import contextlib
import logging

import gevent
from gevent import pywsgi
from gevent.pywsgi import MAX_REQUEST_LINE, Input, WSGIHandler
from geventwebsocket.websocket import Stream
from socketio.handler import SocketIOHandler

from chatwsgi import protocol
from chatwsgi.compat.transports import JSONPPollingTransport, PollingTransport, WebsocketTransport
from chatwsgi.compat.websocket import CappedWebSocket, retire
from chatwsgi.connections import CROWDED_REQUEST_TIMEOUT, RETRY_AFTER, canned_response
from chatwsgi.delivery import EventReader
from chatwsgi.http_headers import read_headers
from chatwsgi.security import origin_allowed, transport_conflict

log = logging.getLogger(__name__)


class NoBody:
    """Stands in for a finished request's body reader (gevent discards what is unread)."""

    def _discard(self):
        pass


NO_BODY = NoBody()


# What gevent's Input raises for broken chunked framing (private: nothing if it goes away).
BROKEN_BODY = getattr(pywsgi, "_InvalidClientInput", ())


class RequestTimeout(Exception):
    """A request's line and headers, or its body, did not arrive within ``request_timeout``."""


BAD_REQUEST = canned_response("400 Bad Request", "Malformed HTTP request.")
REQUEST_TIMEOUT = canned_response("408 Request Timeout", "The request took too long to arrive.")
URI_TOO_LONG = canned_response("414 URI Too Long", "The request line is too long.")

TRANSPORTS = {
    "websocket": WebsocketTransport,
    "xhr-polling": PollingTransport,
    "jsonp-polling": JSONPPollingTransport,
}


class ChatHandler(SocketIOHandler):
    """Serves /socket.io/1/... itself and hands every other request to the WSGI app."""

    # B8, B12: advertise and accept only what current browsers can use.
    handler_types = TRANSPORTS

    # Request state a websocket session keeps after the upgrade; the rest is dropped.
    KEPT_ENVIRON = ("REMOTE_ADDR", "REMOTE_PORT", "REQUEST_METHOD", "PATH_INFO", "QUERY_STRING")
    KEPT_ENVIRON += ("HTTP_ORIGIN", "socketio", "wsgi.websocket")

    crowded = False  # set by the server: this connection is in the reserve (only /healthz)
    requests_read = 0
    request_timer = None
    cors_origin = None  # the request's Origin when it may use the chat (echoed in CORS headers)

    def __init__(self, config, sock, address, server, rfile=None):
        # A 512-byte read buffer, not 8 KiB: every idle websocket keeps its reader for
        # life. Request lines and headers parse the same; larger reads bypass the buffer.
        super().__init__(config, sock, address, server, rfile or sock.makefile("rb", 512))

    @property
    def logger(self):
        """gevent-websocket's WebSocket logs through its handler's ``logger``."""
        return log

    # Reading requests, within their time limits -------------------------------

    def read_requestline(self):
        """The next request line, or '' (the connection closes) when it does not come in time.

        A keep-alive connection waits ``idle_timeout`` for the next request to start; from
        then (from the accept, for the first request) its line and headers must arrive
        within ``request_timeout``: a client sending them a byte at a time cannot hold a
        connection for long.
        """
        if self.requests_read and not self.next_request_started():
            return ""
        self.requests_read += 1
        self.request_timer = gevent.Timeout.start_new(self.request_timeout(), RequestTimeout)
        try:
            line = WSGIHandler.read_requestline(self)
        except RequestTimeout:
            return self.answer_raw(REQUEST_TIMEOUT)
        if len(line) >= MAX_REQUEST_LINE:
            return self.answer_raw(URI_TOO_LONG)
        return line

    def request_timeout(self):
        """Seconds the request's line and headers may take (less in the reserve)."""
        limit = self.config["request_timeout"]
        return min(limit, CROWDED_REQUEST_TIMEOUT) if self.crowded else limit

    def next_request_started(self):
        """Wait up to ``idle_timeout`` for the first byte of the next request."""
        with gevent.Timeout(self.config["idle_timeout"], False):
            try:
                return bool(self.rfile.peek(1))
            except (OSError, ValueError):
                return False
        return False

    def MessageClass(self, rfile, *args):
        """The request's header fields, read without the email package (http_headers.py)."""
        return read_headers(rfile)

    def read_request(self, raw_requestline):
        """Parse the headers; the request's time limit ends with them."""
        try:
            return WSGIHandler.read_request(self, raw_requestline)
        finally:
            self.stop_request_timer()

    def handle_one_request(self):
        """gevent's request cycle, the time limit never outliving the head it bounds."""
        try:
            return WSGIHandler.handle_one_request(self)
        finally:
            self.stop_request_timer()

    def stop_request_timer(self):
        """Cancel the running request's time limit, if any."""
        timer, self.request_timer = self.request_timer, None
        if timer is not None:
            timer.close()

    def _handle_client_error(self, ex):
        """gevent's hook for requests it cannot parse: a clear 400 (408 when too slow),
        logged at debug: a bad request is the client's fault, not worth a traceback."""
        if isinstance(ex, RequestTimeout):
            return ("408", REQUEST_TIMEOUT)
        log.debug("malformed request from %s: %s", self.client_address, ex)
        return ("400", BAD_REQUEST)

    def answer_raw(self, response):
        """Write a canned response and end the connection ('' as the request line)."""
        self.stop_request_timer()
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.socket.sendall(response)
        return ""

    # Answering ----------------------------------------------------------------

    def handle_one_response(self):
        """gevent's response cycle (errors, input discard, logging) around run_application."""
        return WSGIHandler.handle_one_response(self)

    def run_application(self):
        """Socket.IO requests are answered here; the rest go to the application."""
        self.cors_origin = None
        try:
            if self.crowded:
                self.answer_in_reserve()
            else:
                self.answer()
        finally:
            self.skip_unread_body()

    def answer_in_reserve(self):
        """A connection in the reserve: /healthz is answered, anything else refused at once."""
        self.close_connection = True
        if self.environ.get("PATH_INFO") == "/healthz":
            return self.answer()
        return self.refuse(
            "503 Service Unavailable",
            "The server is at its connection limit: try again in a few seconds.",
            ("Retry-After", RETRY_AFTER),
        )

    def answer(self):
        """Route one request: to a Socket.IO answer, or to the application."""
        where = protocol.route(self.environ.get("PATH_INFO", ""), self.server.resource)
        if where is None:
            self.environ["chatwsgi.sessions"] = self.server.connection_count
            return WSGIHandler.run_application(self)
        if not origin_allowed(self.environ, self.config["allowed_origins"]):
            # Refusals echo no foreign Origin: cors_origin stays None.
            return self.refuse("403 Forbidden", "This Origin may not use the chat.")
        self.cors_origin = self.environ.get("HTTP_ORIGIN")
        if where.kind == "handshake":
            return self.handshake()
        if where.kind == "unknown":
            return self.refuse("400 Bad Request", "Not a Socket.IO 0.9 URL.")
        socket = self.server.sockets.get(where.session_id)
        if socket is None:
            # Same answer for every unknown id, so ids cannot be probed.
            return self.refuse("400 Bad Request", "Unknown or expired session: handshake again.")
        if where.kind == "disconnect":  # the 0.9 client's own /1//<id>, for any transport
            return self.disconnect(socket)
        return self.exchange(socket, where.transport)

    def skip_unread_body(self):
        """A body the answer did not read is not drained (a client sending it slowly would
        hold the connection): the connection closes instead."""
        body = self.wsgi_input
        if isinstance(body, Input) and (body.chunked_input or body.position < (body.content_length or 0)):
            self.wsgi_input = NO_BODY
            self.close_connection = True

    def disconnect(self, socket):
        """End the session, as its client asked (a poll it still holds hears ``0::``)."""
        socket.boot()
        return self.respond("200 OK", b"", "text/plain")

    def handshake(self):
        """Create a session and answer ``sid:heartbeat:close:transports`` (B10: as bytes)."""
        self.server.make_room_for_pending()
        socket = self.server.get_socket()
        body = protocol.handshake_body(
            socket.sessid,
            self.config["heartbeat_timeout"],
            self.config["close_timeout"],
            self.transports,
        )
        index = protocol.jsonp_index(self.environ.get("QUERY_STRING"), key="jsonp")
        if "jsonp=" in self.environ.get("QUERY_STRING", "") and index is not None:
            return self.respond("200 OK", protocol.jsonp_script(index, body).encode(), "text/javascript")
        return self.respond("200 OK", body.encode(), "text/plain")

    def exchange(self, socket, transport_name):
        """One transport request of an existing session."""
        transport_class = self.handler_types.get(transport_name)
        if transport_class is None or transport_name not in self.transports:
            return self.refuse("400 Bad Request", "Transport not supported: %s." % transport_name[:40])
        conflict = transport_conflict(socket.bound_transport, transport_name)
        if conflict:
            return self.refuse("409 Conflict", conflict)
        if protocol.asks_disconnect(self.environ.get("QUERY_STRING")):
            return self.disconnect(socket)
        is_websocket = transport_class is WebsocketTransport
        # Claimed before the upgrade (which yields), so a second one cannot slip in meanwhile.
        socket.bound_transport = transport_name
        if is_websocket and not self.accept_websocket():
            socket.bound_transport = None  # it never connected: the client may try another
            return self.refuse("400 Bad Request", "The websocket transport needs a websocket upgrade.")
        socket.is_websocket = is_websocket
        if is_websocket:
            socket.connection = self.socket
        self.environ["socketio"] = socket
        transport = transport_class(self, self.config)
        transport.do_exchange(socket, self.environ["REQUEST_METHOD"])
        if not socket.connection_established:
            self.establish(socket)
        if is_websocket:
            self.hand_over(socket)

    def establish(self, socket):
        """The session's first transport request: mark it connected and start the app."""
        socket.connection_established = True
        socket.state = socket.STATE_CONNECTED

        def no_response(status, headers, exc_info=None):
            return None

        if socket.is_websocket:
            # Runs to its end at once (no receiver loop to wait on): packets are dispatched by
            # this greenlet's reader, so a websocket session costs one greenlet, not four.
            self.application(self.environ, no_response)
        else:
            socket.wsgi_app_greenlet = gevent.spawn(self.application, self.environ, no_response)

    def forget_request(self, socket):
        """Drop the HTTP request's state a websocket session no longer needs (memory per
        idle connection): a small environ, no parsed headers, no request body reader."""
        environ = {key: self.environ[key] for key in self.KEPT_ENVIRON if key in self.environ}
        self.environ = socket.environ = self.websocket.environ = environ
        for namespace in socket.active_ns.values():
            namespace.environ = environ
        self.headers = self.response_headers = None
        self.wsgi_input = NO_BODY

    def hand_over(self, socket):
        """The session takes the upgraded connection; this handler and its greenlet end.

        gevent closes the socket object when the handler returns, but the reader's file
        (a makefile reference) keeps the descriptor open until the reader ends it.
        """
        self.forget_request(socket)
        websocket = self.websocket
        websocket.handler = websocket.stream.handler = None
        websocket.pong = socket.writer.send_frame
        socket.reader = EventReader(socket, websocket, self.rfile, self.socket.fileno())
        self.socket = self.websocket = None
        self.close_connection = True

    def accept_websocket(self):
        """Do the RFC 6455 upgrade with gevent-websocket's handler, then cap frames (B16)."""
        if self.environ.get("HTTP_UPGRADE", "").lower() != "websocket":
            return False
        own_class = self.__class__
        self.__class__ = self.server.ws_handler_class
        try:
            self.prevent_wsgi_call = True
            self.upgrade_websocket()
            upgraded = "wsgi.websocket" in self.environ
            if self.status and not self.headers_sent:
                self.write(b"")
        finally:
            self.__class__ = own_class
        if upgraded:
            # The library's object would send a close frame when collected: retire it first.
            retire(self.websocket)
            self.websocket = CappedWebSocket(
                self.environ,
                Stream(self),
                self,
                max_message=self.config["max_packet_bytes"],
                skip_limit=self.config["max_body_bytes"],
            )
            self.environ["wsgi.websocket"] = self.websocket
        return upgraded

    def read_body(self, limit):
        """The whole request body (B5), or None after a 413 when it is over ``limit`` (a 408
        when it takes longer than ``request_timeout``)."""
        length = self.environ.get("CONTENT_LENGTH") or ""
        if length and (not protocol.is_decimal(length) or int(length) > limit):
            self.refuse("413 Payload Too Large", "A request body has at most %d bytes." % limit)
            return None
        timer = gevent.Timeout.start_new(self.config["request_timeout"], RequestTimeout)
        try:
            body = self.wsgi_input.read(int(length) if length else limit + 1)
        except RequestTimeout:
            self.refuse("408 Request Timeout", "The request body took too long to arrive.")
            return None
        except BROKEN_BODY:
            self.refuse("400 Bad Request", "Malformed request body.")
            return None
        finally:
            timer.close()
        if len(body) > limit:
            self.refuse("413 Payload Too Large", "A request body has at most %d bytes." % limit)
            return None
        return body

    def refuse(self, status, reason, *headers):
        """A clear plain-text refusal; the connection closes after it."""
        log.debug("refused %s %s: %s", self.environ.get("PATH_INFO"), status, reason)
        self.close_connection = True
        self.respond(status, reason.encode() + b"\n", "text/plain", headers)

    def respond(self, status, body, content_type, extra_headers=()):
        """Write a complete response: bytes body, string headers (B4, B11)."""
        headers = [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
            *extra_headers,
        ]
        origin = self.cors_origin
        if origin:
            headers += [
                ("Access-Control-Allow-Origin", origin),
                ("Access-Control-Allow-Credentials", "true"),
                ("Access-Control-Allow-Methods", "POST, GET, OPTIONS"),
                ("Access-Control-Allow-Headers", "Content-Type"),
                ("Vary", "Origin"),
            ]
        self.start_response(status, headers)
        self.write(body)
