"""B16, B24: a gevent-websocket WebSocket that caps message size and frames per message and
unmasks in C. (Our own fast path, the reader and writer of a session, is in delivery.py.)"""

import contextlib
import logging
import struct

from geventwebsocket.exceptions import ProtocolError, WebSocketError
from geventwebsocket.websocket import Header, WebSocket

TOO_LARGE = object()  # what receive() returns for a refused (and skipped) message
TOO_MANY_FRAMES = object()  # what receive() returns when one message took too many frames
# Frames one receive() may read: a message's fragments and the pings and pongs between them.
# Clients send a message in one frame; without a bound, pings or empty continuations were
# read and answered in one call for ever, with no packet counted and no yield.
MAX_FRAMES_PER_MESSAGE = 16
OPCODES = (0x0, 0x1, 0x2, 0x8, 0x9, 0xA)  # continuation, text, binary, close, ping, pong
log = logging.getLogger(__name__)


class NoApp:
    """Hears nothing: the app gevent-websocket reports closes to."""

    def on_close(self, *reason):
        pass


NO_APP = NoApp()


class RetiredWebSocket(WebSocket):
    """The library's WebSocket once the upgrade is done and a CappedWebSocket took over.

    W2 (found here, not in LIBRARY-BUGS): gevent-websocket's ``close()`` on a closed socket
    (as in ``__del__``) builds a new class (``MockApp``) each time when the application has
    no ``current_app``, and then fails to send a close frame: per connection, two classes
    made and left as cyclic garbage, and a caught exception. Retired, it closes as nothing.
    """

    __slots__ = ()

    def close(self, code=1000, message=b""):
        self.closed = True
        self.stream = self.raw_write = self.raw_read = self.environ = self.handler = None


def retire(websocket):
    """Stop the library's ``websocket`` from sending or reporting anything when it goes."""
    websocket.__class__ = RetiredWebSocket
    websocket.close()


class MessageTooLarge(Exception):
    """A data frame (or the message it continues) is over the cap."""

    def __init__(self, header):
        super().__init__(header.length)
        self.header = header


def unmask(payload, mask):
    """XOR the payload with the 4-byte mask as one big integer (B16: ~100x the byte loop)."""
    size = len(payload)
    if not size:
        return b""
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")


class TooManyFrames(Exception):
    """One message took more than MAX_FRAMES_PER_MESSAGE frames."""


class CappedWebSocket(WebSocket):
    """Refuses messages over ``max_message`` bytes before reading them (B16), and messages
    of too many frames (B24); answers pings through ``pong`` when given."""

    __slots__ = ("max_message", "skip_limit", "message_bytes", "frames", "pong")

    def __init__(self, environ, stream, handler, max_message=65536, skip_limit=1 << 20):
        super().__init__(environ, stream, handler)
        self.max_message = max_message
        self.skip_limit = skip_limit
        self.message_bytes = 0
        self.frames = 0  # read by the current receive()
        self.pong = None  # a callable taking a pong frame, to write it in turn with the rest

    @property
    def logger(self):
        """Its own logger: the handler that made it is gone once the session reads by events."""
        return log

    @property
    def current_app(self):
        """gevent-websocket tells its app about closes; the session's reader handles them."""
        return NO_APP

    def read_frame(self):
        """Read one frame, checking its length against the cap before its payload."""
        self.frames += 1
        if self.frames > MAX_FRAMES_PER_MESSAGE:
            raise TooManyFrames()
        header = Header.decode_header(self.stream)
        if header.flags:
            raise ProtocolError("reserved bits set")
        # Checked before reading: a reserved data opcode (3-7) declaring 2**40 bytes was read
        # whole, past the cap below (MemoryError, found by tests/live/test_fuzz.py). Control
        # frames (8-15) are held to 125 bytes by Header.decode_header itself.
        if header.opcode not in OPCODES:
            raise ProtocolError("unknown opcode %d" % header.opcode)
        if header.opcode in (self.OPCODE_TEXT, self.OPCODE_BINARY):
            self.message_bytes = 0
        if header.opcode <= self.OPCODE_BINARY:
            self.message_bytes += header.length
            if self.message_bytes > self.max_message:
                raise MessageTooLarge(header)
        payload = self._read_exactly(header.length)
        if header.mask:
            payload = unmask(payload, header.mask)
        return header, payload

    def _read_exactly(self, length):
        payload = self.raw_read(length) if length else b""
        if len(payload) != length:
            raise ProtocolError("unexpected end of stream in a frame")
        return payload

    def validate_utf8(self, payload):
        """Per-frame check skipped: the whole message is decoded (strictly, in C) at the end."""

    def handle_ping(self, header, payload):
        """Answer through ``pong``, in order with the session's other frames: written here
        straight to the socket it could land inside a frame the session left half written."""
        if self.pong is None:
            return super().handle_ping(header, payload)
        self.pong(struct.pack("!BB", 0x8A, len(payload)) + payload)  # control payloads: <= 125

    def receive(self):
        """The next message; TOO_LARGE for a skipped oversized one, TOO_MANY_FRAMES when it took
        too many frames, None once closed."""
        self.frames = 0
        try:
            return super().receive()
        except TooManyFrames:
            return TOO_MANY_FRAMES
        except MessageTooLarge as refused:
            header = refused.header
            if header.fin and header.opcode and header.length <= self.skip_limit:
                self._skip(header.length)
                return TOO_LARGE
            self.close(1009, b"message too big")
            return None

    def close(self, code=1000, message=b""):
        """Send a close frame that carries its status code, then drop the stream.

        gevent-websocket's close() sends ``str(message)`` and never the code (found
        here, not in LIBRARY-BUGS: call it W1), so clients saw 1005 for every close.
        """
        if not self.closed:
            reason = message if isinstance(message, bytes) else str(message or "").encode()
            with contextlib.suppress(WebSocketError, OSError):
                self.send_frame(struct.pack("!H", code) + reason[:123], self.OPCODE_CLOSE)
        self.closed = True
        self.stream = self.raw_write = self.raw_read = self.environ = None

    def _skip(self, length):
        while length:
            chunk = self.raw_read(min(length, 65536))
            if not chunk:
                raise ProtocolError("unexpected end of stream in a frame")
            length -= len(chunk)
