"""B16: a gevent-websocket WebSocket that caps message size and unmasks in C."""

import contextlib
import struct

from geventwebsocket.exceptions import ProtocolError, WebSocketError
from geventwebsocket.websocket import Header, WebSocket

TOO_LARGE = object()  # what receive() returns for a refused (and skipped) message


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


class CappedWebSocket(WebSocket):
    """Refuses messages over ``max_message`` bytes before reading them (B16)."""

    __slots__ = ("max_message", "skip_limit", "message_bytes")

    def __init__(self, environ, stream, handler, max_message=65536, skip_limit=1 << 20):
        super().__init__(environ, stream, handler)
        self.max_message = max_message
        self.skip_limit = skip_limit
        self.message_bytes = 0

    def read_frame(self):
        """Read one frame, checking its length against the cap before its payload."""
        header = Header.decode_header(self.stream)
        if header.flags:
            raise ProtocolError("reserved bits set")
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

    def receive(self):
        """The next message, TOO_LARGE for a skipped oversized one, None once closed."""
        try:
            return super().receive()
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
