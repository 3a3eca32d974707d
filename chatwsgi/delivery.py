"""How packets reach a websocket session's socket and leave it: our own fast path.

``FrameWriter`` writes a session's frames straight to its socket, each broadcast's frame
built once and corked until the loop turn ends; ``EventReader`` reads a session's packets
only while its socket has data, a budget of frames per turn. Neither keeps a greenlet per
idle connection. The library's own path (a queue and two greenlets per session) is what
compat/transports.py replaces with these.
"""

import logging
import os
import struct
from collections import deque

import gevent
from gevent.socket import wait_write
from geventwebsocket import WebSocketError

from chatwsgi import protocol
from chatwsgi.compat.websocket import TOO_LARGE, TOO_MANY_FRAMES, unmask

log = logging.getLogger(__name__)

# Frames a websocket session's reader handles before letting everyone else run.
FRAMES_PER_TURN = 32
# A client's heartbeat as it comes: a final text frame, masked, of 3 bytes ("2::").
HEARTBEAT_HEAD = b"\x81\x83"
HEARTBEAT_FRAME_SIZE = 9  # the head, a 4-byte mask, the payload
HEARTBEAT_PAYLOAD = protocol.HEARTBEAT.encode()


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


def _ignore():
    """What a closed writer calls in place of its session's ``on_slow``."""


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
        """Write nothing more (the session ended; its file descriptor may be reused).

        Lets go of the session too (``on_slow`` is its bound method): with no cycle left
        through its writer and reader, an ended session is freed at once by reference
        counting, not by the next full collection (see memory.py's collection policy).
        """
        self.connection = None
        self.on_slow = _ignore
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


class EventReader:
    """Reads a websocket session's packets only while its socket has data (B9 kept).

    Idle, a session costs this object and one libev io watcher: no greenlet and no
    saved stack. When the socket becomes readable, one short-lived greenlet reads every
    complete message there is, dispatches each (packets of a session stay in order),
    and re-arms the watcher. End of stream or an error ends the session at once.
    """

    __slots__ = ("session", "websocket", "rfile", "watcher", "pause")

    def __init__(self, session, websocket, rfile, fileno):
        self.session, self.websocket, self.rfile = session, websocket, rfile
        self.watcher = gevent.get_hub().loop.io(fileno, 1)  # 1: readable
        self.pause = None  # a zero timer, made when a turn's budget runs out
        if self._buffered():  # frames that came with the upgrade request are read already
            gevent.spawn(self._drain)
        else:
            self.watcher.start(self._readable)

    def _readable(self):
        self.watcher.stop()
        if not self._took_heartbeat():
            gevent.spawn(self._drain)

    def _took_heartbeat(self):
        """Handle a lone heartbeat here, in the loop's callback, without a greenlet: all an
        idle client sends (every 25 s: with 19,000 connected, 760 a second). Anything else
        (or more) is left in the buffer for ``_drain``: False."""
        try:
            head = self._peek(HEARTBEAT_FRAME_SIZE)
        except (OSError, ValueError):
            return False  # _drain meets the error and ends the session
        if (
            len(head) != HEARTBEAT_FRAME_SIZE
            or head[:2] != HEARTBEAT_HEAD
            or unmask(head[6:9], head[2:6]) != HEARTBEAT_PAYLOAD
        ):
            return False
        self.rfile.read(HEARTBEAT_FRAME_SIZE)  # buffered: never blocks
        session = self.session
        session.receive_all([protocol.HEARTBEAT])  # spends a packet token, proves it alive
        if session.connection is not None and not session.closing:
            self.watcher.start(self._readable)
        return True

    def _drain(self):
        session, websocket = self.session, self.websocket
        if session is None:
            return  # closed since this turn was scheduled
        budget = FRAMES_PER_TURN
        try:
            while True:
                message = websocket.receive()
                if message is None:
                    break
                if message is TOO_MANY_FRAMES:
                    session.end_flood("Far too many websocket frames for one message: disconnected.")
                elif message is TOO_LARGE:
                    if session.admit_packet():
                        session.refuse_too_large()
                else:
                    session.receive_all([message])
                budget -= websocket.frames  # pings and fragments cost their share of the turn
                if session.connection is None:
                    break  # the session was ended meanwhile
                if session.closing:
                    return  # its end is scheduled, after what it was told goes out
                if not self._buffered():
                    self.watcher.start(self._readable)
                    return
                if budget <= 0:
                    self._resume_next_turn()
                    return
        except (WebSocketError, OSError, ValueError) as error:
            log.debug("websocket read ended for %s: %s", session.sessid, error)
        self.end()

    def _resume_next_turn(self):
        # Fairness: a connection that always has data (a flood) yields after its budget. A
        # zero timer fires after the loop's next poll, so every other ready socket, timer
        # and greenlet runs first; the flood costs its own latency, not everyone's.
        if self.pause is None:
            self.pause = gevent.get_hub().loop.timer(0.0)
        self.pause.start(self._readable)

    def _buffered(self):
        """Whether a byte waits in the read buffer or the kernel (a peek that never blocks)."""
        try:
            return bool(self._peek(1))
        except (OSError, ValueError):
            return True  # let receive() meet the error and end the session

    def _peek(self, size):
        """Up to about ``size`` bytes of what is next, never blocking (the hub may be the
        caller): what waits in the read buffer, or if it is empty what one read from the
        kernel brings; b"" once the session has no connection. A failed read raises."""
        session = self.session
        connection = None if session is None else session.connection
        if connection is None:
            return b""
        connection.settimeout(0.0)
        try:
            return self.rfile.peek(size)
        finally:
            connection.settimeout(None)

    def end(self):
        """The connection ended: end the session (which closes this reader)."""
        session = self.session
        self.close()
        if session is not None and session.connection is not None:  # not killed yet
            session.kill(detach=True)

    def close(self):
        """Stop watching, release the connection (this reader holds its last reference) and
        let go of the session and its websocket: no cycle keeps an ended session alive."""
        self.watcher.stop()
        if self.pause is not None:
            self.pause.stop()
        rfile, self.rfile = self.rfile, None
        if rfile is not None:
            rfile.close()
        self.session = self.websocket = None
