"""A raw Socket.IO 0.9 client on gevent sockets, for live tests: websocket, xhr-polling, jsonp-polling.

It speaks the wire format by hand (HTTP/1.1, RFC 6455 frames, polling payloads) so
tests see exactly what a browser's client would send and receive.
"""

import base64
import contextlib
import json
import os
import re
import struct
import time
from urllib.parse import quote

import gevent
from gevent import socket
from gevent.event import Event

from chatwsgi import protocol

JSONP_RE = re.compile(r'^io\.j\[(\d+)\]\((".*")\);$', re.S)


class HTTPResponse:
    """Status, lower-cased headers and body bytes of one response."""

    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    @property
    def text(self):
        return self.body.decode("utf-8")


def http(address, method, path, body=b"", headers=None, timeout=15):
    """One HTTP/1.1 request on a fresh connection (Connection: close)."""
    sock = socket.create_connection(address, timeout=timeout)
    try:
        lines = ["%s %s HTTP/1.1" % (method, path), "Host: %s:%d" % address, "Connection: close"]
        for name, value in (headers or {}).items():
            lines.append("%s: %s" % (name, value))
        if body or method == "POST":
            lines.append("Content-Length: %d" % len(body))
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        return read_response(sock)
    finally:
        sock.close()


def read_response(sock):
    """Read a whole response from a Connection: close socket."""
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return HTTPResponse(int(status_line.split()[1]), headers, body)


class WebSocketConnection:
    """A client-side RFC 6455 connection (masked frames) on a gevent socket."""

    def __init__(self, address, path, origin=None, timeout=15, headers=None):
        self.sock = socket.create_connection(address, timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            "GET %s HTTP/1.1" % path,
            "Host: %s:%d" % address,
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: " + key,
            "Sec-WebSocket-Version: 13",
        ]
        if origin:
            lines.append("Origin: " + origin)
        lines.extend("%s: %s" % item for item in (headers or {}).items())
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise ConnectionError("closed during the upgrade")
            head += chunk
        self.status = int(head.split()[1])
        self.buffer = b""
        self.sock.settimeout(None)  # an idle session hears nothing for up to a heartbeat interval

    def send_frame(self, payload, opcode=1, fin=True, length=None):
        """Send one masked frame; ``length`` may lie, to test the server's checks."""
        mask = os.urandom(4)
        size = len(payload) if length is None else length
        first = (0x80 if fin else 0) | opcode
        if size < 126:
            header = struct.pack("!BB", first, 0x80 | size)
        elif size < 65536:
            header = struct.pack("!BBH", first, 0x80 | 126, size)
        else:
            header = struct.pack("!BBQ", first, 0x80 | 127, size)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def send_text(self, text):
        self.send_frame(text.encode("utf-8"))

    def _read(self, size):
        while len(self.buffer) < size:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("websocket closed")
            self.buffer += chunk
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def recv_frame(self):
        """(opcode, payload) of the next frame from the server (never masked)."""
        first, second = self._read(2)
        size = second & 0x7F
        if size == 126:
            size = struct.unpack("!H", self._read(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", self._read(8))[0]
        return first & 0x0F, self._read(size)

    def close(self):
        with contextlib.suppress(OSError):
            self.send_frame(b"", opcode=8)
        self.sock.close()


class SocketIOClient:
    """One Socket.IO 0.9 session over one transport, recording every packet received."""

    def __init__(self, address, transport="websocket", endpoint="/chat", origin=None):
        self.address = address
        self.transport = transport
        self.endpoint = endpoint
        self.origin = origin
        self.packets = []  # decoded packets, in arrival order
        self.raw = []  # raw packet texts, in arrival order
        self.arrived = []  # time.monotonic() of each packet's arrival
        self.changed = Event()
        self.closed = False
        self.close_code = None
        self.ws = None
        self.session_id = None
        self.cookie = None  # a load balancer's stickiness cookie, sent back like a browser would
        self._next_id = 0
        self._greenlets = []
        self.jsonp_index = 0

    # Setup ---------------------------------------------------------------

    def headers(self):
        headers = {"Origin": self.origin} if self.origin else {}
        if self.cookie:
            headers["Cookie"] = self.cookie
        return headers

    def handshake(self):
        """GET /socket.io/1/ and parse ``sid:heartbeat:close:transports``."""
        reply = http(self.address, "GET", "/socket.io/1/?t=%d" % time.time(), headers=self.headers())
        assert reply.status == 200, (reply.status, reply.body)
        if "set-cookie" in reply.headers:
            self.cookie = reply.headers["set-cookie"].split(";")[0]
        sid, heartbeat, close, transports = reply.text.split(":")
        self.session_id = sid
        return sid, int(heartbeat), int(close), transports.split(",")

    def transport_path(self, query=""):
        path = "/socket.io/1/%s/%s" % (self.transport, self.session_id)
        if self.transport == "jsonp-polling":
            query = (query + "&" if query else "") + "i=%d" % self.jsonp_index
        return path + ("?" + query if query else "")

    def connect(self, timeout=10):
        """Handshake, open the transport, connect the endpoint and wait for its echo."""
        self.handshake()
        if self.transport == "websocket":
            headers = {"Cookie": self.cookie} if self.cookie else None
            self.ws = WebSocketConnection(self.address, self.transport_path(), self.origin, headers=headers)
            assert self.ws.status == 101
            self._greenlets.append(gevent.spawn(self._ws_reader))
        else:
            self._greenlets.append(gevent.spawn(self._poller))
        self.wait_for(lambda p: p["type"] == "connect" and p["endpoint"] == "", timeout)
        if self.endpoint:
            self.send(protocol.encode_packet({"type": "connect", "endpoint": self.endpoint}))
            self.wait_for(lambda p: p["type"] == "connect" and p["endpoint"] == self.endpoint, timeout)
        return self

    # Receiving -------------------------------------------------------------

    def _record(self, text):
        self.arrived.append(time.monotonic())
        self.raw.append(text)
        try:
            packet = protocol.decode_packet(text)
        except protocol.ProtocolError:
            packet = {"type": "unparsable", "endpoint": "", "text": text}
        if packet["type"] == "heartbeat":
            gevent.spawn(self._send_quietly, protocol.HEARTBEAT)
        self.packets.append(packet)
        self.changed.set()

    def _send_quietly(self, text):
        with contextlib.suppress(OSError, ConnectionError, AssertionError):
            self.send(text)

    def _ws_reader(self):
        try:
            while True:
                opcode, payload = self.ws.recv_frame()
                if opcode == 8:
                    self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                    break
                if opcode == 1:
                    self._record(payload.decode("utf-8"))
        except (OSError, ConnectionError):
            pass
        self._mark_closed()

    def _poller(self):
        try:
            while not self.closed:
                path = self.transport_path("t=%d" % time.time())
                reply = http(self.address, "GET", path, headers=self.headers(), timeout=90)  # > any poll
                if reply.status != 200:
                    break
                for text in protocol.decode_payload(self.unwrap(reply.text)):
                    self._record(text)
        except (OSError, ConnectionError):
            pass
        self._mark_closed()

    def _mark_closed(self):
        self.closed = True
        self.changed.set()

    def unwrap(self, body):
        """The payload inside a jsonp script, or the body itself."""
        if self.transport != "jsonp-polling":
            return body
        match = JSONP_RE.match(body)
        assert match, body[:80]
        assert int(match.group(1)) == self.jsonp_index
        return json.loads(match.group(2))

    def wait_for(self, predicate, timeout=10, start=0):
        """The first packet from index ``start`` matching ``predicate``, waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            for packet in self.packets[start:]:
                if predicate(packet):
                    return packet
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no matching packet; got %r" % self.raw[-10:])
            if self.closed:
                raise ConnectionError("session closed; got %r" % self.raw[-10:])
            self.changed.clear()
            self.changed.wait(min(remaining, 0.5))

    def events(self, name):
        """Arguments of every ``name`` event received so far."""
        return [p["args"] for p in self.packets if p["type"] == "event" and p.get("name") == name]

    def wait_event(self, name, predicate=lambda args: True, timeout=10):
        """The first ``name`` event whose args match ``predicate``."""
        packet = self.wait_for(
            lambda p: p["type"] == "event" and p.get("name") == name and predicate(p["args"]), timeout
        )
        return packet["args"]

    # Sending -------------------------------------------------------------

    def send(self, text):
        """Send one raw packet text."""
        self.send_payload([text])

    def send_payload(self, texts):
        """Send packets together (framed when more than one)."""
        body = protocol.encode_payload(texts)
        if self.transport == "websocket":
            for text in texts:
                self.ws.send_text(text)
            return None
        return self.post_body(body)

    def post_body(self, payload):
        """POST a polling payload; return the HTTP response."""
        if self.transport == "jsonp-polling":
            data = ("d=" + quote(json.dumps(payload))).encode()
            headers = dict(self.headers(), **{"Content-Type": "application/x-www-form-urlencoded"})
        else:
            data = payload.encode("utf-8")
            headers = dict(self.headers(), **{"Content-Type": "text/plain;charset=UTF-8"})
        reply = http(self.address, "POST", self.transport_path("t=%d" % time.time()), data, headers)
        assert reply.status == 200, (reply.status, reply.body)
        return reply

    def emit(self, name, *args):
        """Send an event asking for a data ack; return its ack id."""
        self._next_id += 1
        packet = {"type": "event", "name": name, "args": list(args), "endpoint": self.endpoint}
        packet.update(id=self._next_id, ack="data")
        self.send(protocol.encode_packet(packet))
        return self._next_id

    def call(self, name, *args, timeout=10):
        """Emit an event and return the first argument of its ack."""
        start = len(self.packets)
        ack_id = self.emit(name, *args)
        packet = self.wait_for(lambda p: p["type"] == "ack" and p["ackId"] == ack_id, timeout, start)
        return packet["args"][0] if packet["args"] else None

    def close(self):
        """Leave abruptly (as a closed tab would)."""
        self.closed = True
        if self.ws is not None:
            self.ws.close()
        gevent.killall(self._greenlets, block=False)

    def disconnect(self):
        """Leave politely: the global disconnect packet."""
        self.send(protocol.encode_packet({"type": "disconnect", "endpoint": ""}))
