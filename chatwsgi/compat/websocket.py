"""B16: a gevent-websocket WebSocket that caps message size and unmasks in C; and the
direct frame writer a websocket session sends through."""

import contextlib
import logging
import os
import struct
from collections import deque

import gevent
from gevent.socket import wait_write
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


def text_frame(text):
    """One unmasked, final websocket text frame carrying ``text`` (a server's frame)."""
    payload = text.encode("utf-8")
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x81, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 127, size)
    return header + payload


class FrameWriter:
    """Writes a websocket session's frames straight to its socket: no queue, no greenlet.

    - A broadcast hands the same packet text to every member, so its frame is built once
      (the last text and frame are remembered).
    - Frames are corked until the running greenlet yields: one write per client then
      carries every frame the server produced meanwhile (under load, many broadcasts
      in one system call; alone, one frame without delay).
    - What the kernel does not take at once waits in a backlog that one short-lived
      greenlet flushes. A client whose backlog passes ``limit`` bytes cannot keep up and
      is dropped (``on_slow``): it never grows memory without bound or stalls others.
    """

    __slots__ = ("connection", "limit", "on_slow", "corked", "backlog", "pending", "flusher")
    _last = (None, b"")  # (text, frame) of the latest broadcast, shared by every writer
    _to_uncork = []  # writers with corked frames, written when the loop next runs callbacks

    def __init__(self, connection, limit, on_slow):
        self.connection = connection  # non-blocking underneath: gevent sockets are
        self.limit, self.on_slow = limit, on_slow
        self.corked = []
        self.backlog = None  # a deque once the kernel refuses part of a write
        self.pending = 0  # bytes in the backlog
        self.flusher = None

    def close(self):
        """Write nothing more (the session ended; its file descriptor may be reused)."""
        self.connection = None
        self.corked, self.backlog, self.pending = [], None, 0

    def has_unsent(self):
        """Whether frames still wait to be written."""
        return bool(self.corked or self.backlog)

    def fileno(self):
        """The socket's descriptor now; -1 once closed, never a number since reused."""
        return -1 if self.connection is None else self.connection.fileno()

    def send(self, text):
        """Queue one packet's frame for the write at the end of this loop turn."""
        if self.connection is None:
            return
        last_text, frame = FrameWriter._last
        if text is not last_text:
            frame = text_frame(text)
            FrameWriter._last = (text, frame)
        self.send_frame(frame)

    def send_frame(self, frame):
        """Queue one whole frame (a packet's, or a pong) for the write at the end of this turn."""
        if self.connection is None:
            return
        if not self.corked:
            if not FrameWriter._to_uncork:
                gevent.get_hub().loop.run_callback(FrameWriter._uncork_all)
            FrameWriter._to_uncork.append(self)
        self.corked.append(frame)

    @staticmethod
    def _uncork_all():
        writers, FrameWriter._to_uncork = FrameWriter._to_uncork, []
        for writer in writers:
            writer._write_corked()

    def _write_corked(self):
        frames, self.corked = self.corked, []
        if not frames:
            return
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        if not self.backlog:
            try:
                written = os.write(self.fileno(), data)
            except BlockingIOError:
                written = 0
            except OSError:
                return  # the connection is gone; its reader ends the session
            if written == len(data):
                return
            data = data[written:]
        if self.backlog is None:
            self.backlog = deque()
        self.backlog.append(data)
        self.pending += len(data)
        if self.pending > self.limit:
            self.backlog = None
            self.on_slow()
        elif self.flusher is None:
            self.flusher = gevent.spawn(self._flush)

    def _flush(self):
        backlog = self.backlog
        try:
            while backlog:
                wait_write(self.fileno())
                if self.backlog is not backlog:
                    return  # dropped or closed while waiting: that backlog is gone
                data = backlog[0]
                written = os.write(self.fileno(), data)
                self.pending -= written
                if written == len(data):
                    backlog.popleft()
                else:
                    backlog[0] = data[written:]
        except (OSError, ValueError):  # closed: no descriptor to wait on or write to
            self.backlog = None
        finally:
            self.flusher = None
