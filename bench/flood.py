"""What one flooding connection costs everyone else: witnesses' ack latency, /healthz, server CPU and RSS.

For each kind of flood (and a baseline with none) this starts a fresh chat server from a source
tree (``TREE/serve.py`` run by the repository's ``.venv/bin/python``: the script's own folder comes
first on sys.path, so the tree's own ``chatwsgi`` is imported) on 127.0.0.1 and a free port,
pinned to core 0 (``taskset -c 0``, as bench/run.py), with its shipped settings (rate 5/s,
burst 10) and ``--log-level WARNING``. The measuring process runs on core 1:

- **witnesses**: 5 raw websocket users (w0..w4) with nicknames in room ``lobby``, each emitting
  one acked ``message`` every 500 ms (open loop: on schedule whatever the acks do), emit->ack
  timed; an ack that takes over 10 s counts as timed out; plus a ``/healthz`` GET every 200 ms,
  each on a fresh connection, timed;
- **one attacker** in its own process (also core 1, ``nice +10`` so that it does not take the
  core from the witnesses' readers), connected and in ``lobby`` beforehand, that floods for
  ``--seconds`` (8) and at most ``--max-packets`` packets, reading everything the server sends
  it (so it is not a slow consumer), then sends one acked ``nickname`` "attacker-last" and waits
  up to 5 s for its ack (how long the server needs to get through what it queued), then closes.

Flood kinds (``--kinds all`` runs the baseline and all of them, each once):
  heartbeat          ``2::`` packets, 1000 websocket frames per write, as fast as the socket takes them
  join-leave         join/leave of ``lobby`` in a loop, acked, acks not awaited
  rename             nickname changes (fresh names) in a loop
  message            messages to ``lobby``, unique ids (the rate limit refuses most)
  reconnect-message  ``1::/chat`` (namespace connect) again before every burst of 20 messages
  typing             typing notices in ``lobby``
  no-namespace       never sends ``1::/chat``, only ``nickname`` events with fresh names
  polling-no-get     an xhr-polling session in ``lobby`` that POSTs ``2::`` (one keep-alive
                     connection, one request at a time, back to back unless ``--poll-interval``)
                     and never GETs while the witnesses chat: its queue grows

Reported per kind, over the flood window: the witnesses' ack p50/p99/max (ms) and acks
ok / failed (``ok: false``, e.g. rate_limited) / timed out, whether a witness was disconnected by
the server (and when, s after the flood began), ``/healthz`` p50/max (ms), the server's CPU
seconds in the window (/proc/PID/stat) and how much of core 0 other processes took meanwhile
(/proc/stat: this machine is shared, so the figures are indicative), its RSS before and after,
whether the attacker was disconnected (and when), how long its final ack took; after it left,
``/healthz`` members (5 expected) and whether a fresh client can claim the attacker's last sure
nickname ("attacker-last" once acked, else "attacker" unless the flood renamed it): no means it
is squatted. "attacker packets written" counts what the kernel accepted, not what the server
read. The JSON also has each ack's (emit time, latency), the server's CPU every 0.5 s, the
frames the witnesses received by event, the server's log and, for a git checkout, HEAD and a
hash of the uncommitted changes at each run. Load: the 1-minute load average as a run began.

    .venv/bin/python bench/flood.py --kinds all                  # the working tree
    mkdir -p /tmp/chatwsgi-before && git archive 218a9c8 | tar -x -C /tmp/chatwsgi-before
    .venv/bin/python bench/flood.py --tree /tmp/chatwsgi-before --kinds all --json /tmp/before.json
    .venv/bin/python bench/flood.py --kinds baseline,heartbeat --seconds 4   # a quick look
    .venv/bin/python bench/flood.py --kinds polling-no-get --poll-interval 0.1  # paced POSTs, no flood

Prints a markdown table (and with ``--json PATH`` writes every figure). Every loop is bounded in
count and time; everything is on 127.0.0.1; the server and attacker are stopped on exit, Ctrl-C
or an error (and get SIGTERM if this process dies: PR_SET_PDEATHSIG).
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import contextlib  # noqa: E402
import ctypes  # noqa: E402
import hashlib  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
from gevent.event import AsyncResult, Event  # noqa: E402
from loadgen import cpu_seconds, own_cpu_seconds  # noqa: E402  (bench/ is this script's folder)

ROOT = Path(__file__).resolve().parent.parent
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
PYTHON = str(VENV_PYTHON) if VENV_PYTHON.exists() else sys.executable
KINDS = (
    "heartbeat",
    "join-leave",
    "rename",
    "message",
    "reconnect-message",
    "typing",
    "no-namespace",
    "polling-no-get",
)
ROOM = "lobby"
WITNESSES = 5
WITNESS_PERIOD = 0.5  # one acked message per witness every 500 ms (under the 5/s limit)
HEALTHZ_PERIOD = 0.2
ACK_TIMEOUT = 10.0  # a witness waiting longer than this counts the ack as timed out
FINAL_NICK = "attacker-last"
FINAL_ACK = 999999999
FINAL_WAIT = 5.0  # how long the attacker waits for its final ack
START_TIMEOUT = 30.0
CPU_SAMPLE_PERIOD = 0.5
now = time.perf_counter


# --- small helpers -------------------------------------------------------------------------------


def die_with_parent():
    """In a child before exec: get SIGTERM if the bench process dies, however it dies."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


def pinned(core, command):
    """``command`` pinned to ``core`` with taskset (when there is one and the core exists)."""
    if shutil.which("taskset") and (os.cpu_count() or 1) > core:
        return ["taskset", "-c", str(core)] + command
    return command


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rss_bytes(pid):
    with open("/proc/%d/status" % pid) as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return None


def core_times(core=0):
    """(busy, total) clock ticks of one core since boot, every process counted (/proc/stat)."""
    with open("/proc/stat") as stat:
        for line in stat:
            if line.startswith("cpu%d " % core):
                ticks = [int(field) for field in line.split()[1:]]
                return sum(ticks) - ticks[3] - ticks[4], sum(ticks)  # idle and iowait are not busy
    return 0, 0


def load_average():
    with open("/proc/loadavg") as loadavg:
        return float(loadavg.read().split()[0])


def percentile(values, share):
    """Nearest-rank percentile of ``values`` (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(share * len(ordered) + 0.999999) - 1))]


def ms(seconds):
    return None if seconds is None else round(seconds * 1000, 1)


def client_frame(text):
    """A masked websocket text frame with a zero key (XOR with zero is free)."""
    data = text.encode()
    size = len(data)
    if size < 126:
        header = struct.pack("!BB", 0x81, 0x80 | size)
    elif size < 65536:
        header = struct.pack("!BBH", 0x81, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 0x80 | 127, size)
    return header + b"\0\0\0\0" + data


def event(name, args, ack_id=None):
    """A Socket.IO 0.9 event packet on /chat, asking for a data ack when ``ack_id`` is given."""
    body = json.dumps({"name": name, "args": [args]}, separators=(",", ":"))
    return "5:%s:/chat:%s" % ("%d+" % ack_id if ack_id else "", body)


def read_head(sock, closed_early):
    """(response head, the bytes read past it); ConnectionError(``closed_early``) at EOF first."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(closed_early)
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    return head, rest


def read_response(sock):
    """Status and body of one HTTP/1.1 response (Content-Length framed, else until EOF)."""
    head, body = read_head(sock, "closed before the response head")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    while length is None or len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            if length is None:
                break
            raise ConnectionError("closed inside the response body")
        body += chunk
    return status, body


def http_get(port, path, timeout):
    """One GET on a fresh connection (Connection: close): (status, body)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        request = "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n" % (path, port)
        sock.sendall(request.encode())
        return read_response(sock)
    finally:
        sock.close()


def handshake(port, timeout=10):
    """A Socket.IO 0.9 handshake: the new session's id."""
    status, body = http_get(port, "/socket.io/1/?t=%d" % time.time(), timeout)
    if status != 200:
        raise ConnectionError("handshake answered %d" % status)
    return body.split(b":", 1)[0].decode()


def open_websocket(port, sid, timeout=10):
    """The upgraded websocket of session ``sid``: (socket, bytes already read after the head)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.sendall(
        (
            "GET /socket.io/1/websocket/%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n" % (sid, port)
        ).encode()
    )
    head, rest = read_head(sock, "closed during the upgrade")
    if b" 101 " not in head.split(b"\r\n", 1)[0]:
        sock.close()
        raise ConnectionError(head[:80])
    sock.settimeout(None)
    return sock, rest


# --- witnesses (in the measuring process) --------------------------------------------------------


class Witness:
    """An ordinary websocket user in ``lobby``: acked messages every 500 ms, emit->ack timed."""

    def __init__(self, port, name, run_id):
        self.port, self.name, self.run_id = port, name, run_id
        self.ids = itertools.count(1)
        self.waiters = {}  # ack id -> AsyncResult (setup calls)
        self.emitted = {}  # ack id -> emit time (measured messages)
        self.acked = {}  # ack id -> (arrival time, ok)
        self.received = {}  # event name -> frames received since the window began
        self.closed_at = None
        self.closing = False
        self.sock = None
        self.reader = None
        self.changed = Event()

    def connect(self):
        sid = handshake(self.port)
        self.sock, buffer = open_websocket(self.port, sid)
        self.reader = gevent.spawn(self.read, buffer)
        self.send("1::/chat")
        for name, args in (("nickname", {"nickname": self.name}), ("join", {"room": ROOM})):
            ack = self.call(name, args)
            if b'"ok":true' not in ack:
                raise RuntimeError("%s: %s refused: %r" % (self.name, name, ack[:200]))
        return self

    def send(self, text):
        self.sock.sendall(client_frame(text))

    def call(self, name, args, timeout=10):
        """Emit and wait for the ack: its raw packet."""
        ack_id = next(self.ids)
        result = self.waiters[ack_id] = AsyncResult()
        self.send(event(name, args, ack_id))
        return result.get(timeout=timeout)

    def read(self, buffer):
        """Frames until the connection ends: heartbeats answered, acks timed, events counted."""
        sock = self.sock
        try:
            while True:
                pos, end = 0, len(buffer)  # frames walked by offset: no copy of the rest per frame
                while end - pos >= 2:
                    size, start = buffer[pos + 1] & 0x7F, pos + 2
                    if size == 126:
                        if end - pos < 4:
                            break
                        size, start = struct.unpack("!H", buffer[pos + 2 : pos + 4])[0], pos + 4
                    elif size == 127:
                        if end - pos < 10:
                            break
                        size, start = struct.unpack("!Q", buffer[pos + 2 : pos + 10])[0], pos + 10
                    if end < start + size:
                        break
                    opcode = buffer[pos] & 0x0F
                    if opcode == 8:
                        return
                    if opcode == 1:
                        self.handle(buffer[start : start + size])
                    pos = start + size
                buffer = buffer[pos:]
                chunk = sock.recv(65536)
                if not chunk:
                    return
                buffer += chunk
        except OSError:
            return
        finally:
            if not self.closing:  # ended by the server, not by our close()
                self.closed_at = now()
            self.changed.set()

    def handle(self, payload):
        if payload == b"2::":
            gevent.spawn(self.quietly, "2::")
        elif payload.startswith(b"6::/chat:"):
            arrived = now()
            plus = payload.find(b"+", 9)
            ack_id = int(payload[9:plus]) if plus > 9 else -1
            waiter = self.waiters.pop(ack_id, None)
            if waiter is not None:
                waiter.set(payload)
            elif ack_id in self.emitted:
                self.acked[ack_id] = (arrived, b'"ok":true' in payload)
                self.changed.set()
        elif payload.startswith(b'5::/chat:{"name":"'):
            name = payload[18 : payload.find(b'"', 18)].decode("ascii", "replace")
            self.received[name] = self.received.get(name, 0) + 1

    def quietly(self, text):
        with contextlib.suppress(OSError):
            self.send(text)

    def chat(self, start, seconds, offset):
        """One acked message every WITNESS_PERIOD from ``start + offset`` until the window ends."""
        for number in range(int(seconds / WITNESS_PERIOD) + 1):
            at = start + offset + number * WITNESS_PERIOD
            if at >= start + seconds or self.closed_at is not None:
                return
            gevent.sleep(max(0.0, at - now()))
            ack_id = next(self.ids)
            text = "witness %s says %d" % (self.name, number)
            packet = event(
                "message",
                {"room": ROOM, "id": "%s-%s-%d" % (self.run_id, self.name, number), "text": text},
                ack_id,
            )
            self.emitted[ack_id] = now()
            try:
                self.send(packet)
            except OSError:
                return

    def outstanding(self):
        return [ack_id for ack_id in self.emitted if ack_id not in self.acked]

    def close(self):
        self.closing = True
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
        if self.reader is not None:
            self.reader.kill(block=False)


def healthz_sampler(port, start, seconds, samples):
    """A /healthz GET every HEALTHZ_PERIOD from ``start``, each on a fresh connection in its own
    greenlet (open loop); ``samples`` gets (elapsed or None, status). Returns the greenlets."""

    def one():
        began = now()
        try:
            status, _ = http_get(port, "/healthz", ACK_TIMEOUT)
            samples.append((now() - began, status))
        except (OSError, ConnectionError):
            samples.append((None, None))

    greenlets = []
    for number in range(int(seconds / HEALTHZ_PERIOD) + 1):
        at = start + number * HEALTHZ_PERIOD
        if at >= start + seconds:
            break
        gevent.sleep(max(0.0, at - now()))
        greenlets.append(gevent.spawn(one))
    return greenlets


def members_now(port):
    """``members`` of /healthz (None if it does not answer)."""
    try:
        status, body = http_get(port, "/healthz", 5)
        return json.loads(body).get("members") if status == 200 else None
    except (OSError, ConnectionError, ValueError):
        return None


def probe_nickname(kind, attack):
    """The nickname the attacker surely held last (None when unknown): "attacker-last" once its
    ack came, else "attacker" as set up, unless the flood itself renamed it."""
    if not attack or kind == "polling-no-get":
        return None
    if attack["final_ack_after_s"] is not None:
        return FINAL_NICK
    return None if kind in ("rename", "no-namespace") else "attacker"


def nickname_free(port, nickname):
    """Whether a fresh client can claim ``nickname`` now: True, or the refusal's code."""
    client = Witness(port, "probe", "probe")
    try:
        sid = handshake(port, 5)
        client.sock, buffer = open_websocket(port, sid, 5)
        client.reader = gevent.spawn(client.read, buffer)
        client.send("1::/chat")
        ack = client.call("nickname", {"nickname": nickname}, timeout=5)
        if b'"ok":true' in ack:
            return True
        found = json.loads(ack[ack.find(b"+") + 1 :])[0]
        return found.get("code", "refused")
    except (OSError, ConnectionError, gevent.Timeout, ValueError) as error:
        return "probe failed: %s" % type(error).__name__
    finally:
        client.close()


# --- the attacker (its own process) --------------------------------------------------------------


class WebsocketAttacker:
    """One websocket connection that reads everything it is sent (counting bytes) while it floods."""

    def __init__(self, port):
        self.port = port
        self.sock, buffer = open_websocket(port, handshake(port))
        self.bytes_in = len(buffer)
        self.tail = buffer[-64:]
        self.markers = {}  # marker bytes -> Event, set when seen in the stream
        self.closed_at = None
        self.closing = False
        self.reader = gevent.spawn(self.read)

    def expect(self, marker):
        self.markers[marker] = Event()
        return self.markers[marker]

    def read(self):
        try:
            while True:
                chunk = self.sock.recv(262144)
                if not chunk:
                    break
                self.bytes_in += len(chunk)
                if self.markers:
                    window = self.tail + chunk
                    for marker, seen in self.markers.items():
                        if not seen.is_set() and marker in window:
                            seen.set()
                self.tail = chunk[-64:]
        except OSError:
            pass
        if not self.closing:
            self.closed_at = now()

    def call(self, packet_text, ack_id, timeout=10):
        seen = self.expect(b"6::/chat:%d+" % ack_id)
        self.sock.sendall(client_frame(packet_text))
        if not seen.wait(timeout):
            raise TimeoutError("no ack %d" % ack_id)

    def setup(self, kind):
        """Connected (except no-namespace), nicknamed and in ``lobby`` before the flood."""
        if kind == "no-namespace":
            return
        self.sock.sendall(client_frame("1::/chat"))
        self.call(event("nickname", {"nickname": "attacker"}, 1), 1)
        self.call(event("join", {"room": ROOM}, 2), 2)

    def flood(self, kind, seconds, limit):
        """Send ``kind`` packets for ``seconds`` (at most ``limit``), then the final acked nickname."""
        batch = flood_batches(kind, os.getpid())
        started = now()
        deadline = started + seconds
        sent, stuck = 0, False
        while sent < limit and self.closed_at is None:
            remaining = deadline - now()
            if remaining <= 0:
                break
            data, count = next(batch)
            self.sock.settimeout(remaining + 5.0)  # a batch started in time may finish late, not forever
            try:
                self.sock.sendall(data)
            except TimeoutError:
                stuck = True  # part of a frame may be out: nothing more can be framed on this stream
                break
            except OSError:
                if self.closed_at is None:
                    self.closed_at = now()
                break
            sent += count
            gevent.sleep(0)  # let the reader drain what the server sends back
        ended = now()
        final = None
        if self.closed_at is None and not stuck:
            seen = self.expect(b"6::/chat:%d+" % FINAL_ACK)
            try:
                self.sock.settimeout(FINAL_WAIT)
                self.sock.sendall(client_frame(event("nickname", {"nickname": FINAL_NICK}, FINAL_ACK)))
                if seen.wait(FINAL_WAIT):
                    final = now() - ended
            except OSError:
                pass
        disconnected = self.closed_at
        self.closing = True
        self.sock.close()
        return {
            "packets": sent,
            "flood_seconds": round(ended - started, 3),
            "stuck_writing": stuck,
            "bytes_in": self.bytes_in,
            "disconnected_after_s": None if disconnected is None else round(disconnected - started, 3),
            "final_ack_after_s": None if final is None else round(final, 3),
        }


def flood_batches(kind, pid):
    """Endless (bytes, packet count) batches of one kind's packets, each written in one sendall."""
    ack_ids = itertools.count(10)
    numbers = itertools.count()
    if kind == "heartbeat":
        data = client_frame("2::") * 1000
        while True:
            yield data, 1000
    while True:
        texts = []
        if kind == "join-leave":
            for _ in range(50):
                texts.append(event("join", {"room": ROOM}, next(ack_ids)))
                texts.append(event("leave", {"room": ROOM}, next(ack_ids)))
        elif kind in ("rename", "no-namespace"):
            prefix = "r" if kind == "rename" else "s"
            for _ in range(100):
                texts.append(
                    event("nickname", {"nickname": "%s%d-%d" % (prefix, pid, next(numbers))}, next(ack_ids))
                )
        elif kind in ("message", "reconnect-message"):
            for _ in range(5):
                if kind == "reconnect-message":
                    texts.append("1::/chat")
                for _ in range(20):
                    number = next(numbers)
                    args = {"room": ROOM, "id": "f%d-%d" % (pid, number), "text": "flood %d" % number}
                    texts.append(event("message", args, next(ack_ids)))
        elif kind == "typing":
            for _ in range(100):
                texts.append(event("typing", {"room": ROOM}, next(ack_ids)))
        else:
            raise ValueError("unknown kind %r" % kind)
        yield b"".join(client_frame(text) for text in texts), len(texts)


class PollingAttacker:
    """An xhr-polling session in ``lobby`` that POSTs and never GETs: its queue only grows."""

    def __init__(self, port, interval=0.0):
        self.port, self.interval = port, interval
        self.path = "/socket.io/1/xhr-polling/%s" % handshake(port)
        self.sock = None
        self.reconnects = 0

    def post(self, body, timeout=10):
        """One POST on the keep-alive connection (reopened if the server closed it): its status."""
        data = body.encode()
        request = (
            "POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: text/plain;charset=UTF-8\r\n"
            "Content-Length: %d\r\n\r\n" % (self.path, self.port, len(data))
        ).encode() + data
        for attempt in range(2):
            if self.sock is None:
                self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
                self.reconnects += attempt
            self.sock.settimeout(timeout)
            try:
                self.sock.sendall(request)
                return read_response(self.sock)[0]
            except (OSError, ConnectionError):
                self.sock.close()
                self.sock = None
                if attempt:
                    raise
        return None

    def setup(self, kind):
        # The session's first transport request is answered "1::" whatever it carries: a POST
        # establishes it, so this session never makes a single GET.
        for body in (
            "2::",
            "1::/chat",
            event("nickname", {"nickname": "poller"}, 1),
            event("join", {"room": ROOM}, 2),
        ):
            status = self.post(body)
            if status != 200:
                raise ConnectionError("setup POST answered %s" % status)

    def flood(self, kind, seconds, limit):
        started = now()
        deadline = started + seconds
        sent, disconnected = 0, None
        while sent < limit and now() < deadline:
            try:
                status = self.post("2::", timeout=max(0.1, deadline - now()) + 5.0)
            except (OSError, ConnectionError):
                status = None
            if status != 200:
                disconnected = now() - started
                break
            sent += 1
            if self.interval:  # paced: one POST every ``interval`` seconds, no flood
                gevent.sleep(max(0.0, started + sent * self.interval - now()))
        ended = now()
        if self.sock is not None:
            self.sock.close()
        return {
            "packets": sent,
            "flood_seconds": round(ended - started, 3),
            "stuck_writing": False,
            "bytes_in": None,
            "reconnects": self.reconnects,
            "disconnected_after_s": None if disconnected is None else round(disconnected, 3),
            "final_ack_after_s": None,
        }


def attacker_main(options):
    """The attacker process: set up, say ready, flood on 'go' from stdin, print the result."""
    with contextlib.suppress(OSError):
        os.nice(options.attacker_nice)
    kind = options.attacker
    if kind == "polling-no-get":
        attacker = PollingAttacker(options.port, options.poll_interval)
    else:
        attacker = WebsocketAttacker(options.port)
    attacker.setup(kind)
    print(json.dumps({"ready": True}), flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    cpu = own_cpu_seconds()
    result = attacker.flood(kind, options.seconds, options.max_packets)
    result["cpu_share"] = round((own_cpu_seconds() - cpu) / max(result["flood_seconds"], 1e-3), 3)
    print(json.dumps(result), flush=True)
    return 0


# --- the server and one run ----------------------------------------------------------------------


class Server:
    """``TREE/serve.py`` on 127.0.0.1 and a free port, pinned to core 0, warnings logged to a file."""

    def __init__(self, tree):
        self.port = free_port()
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (read, then closed, after the run)
        command = [PYTHON, str(tree / "serve.py"), "--host", "127.0.0.1", "--port", str(self.port)]
        self.process = subprocess.Popen(
            pinned(0, command + ["--log-level", "WARNING"]),
            stdout=subprocess.PIPE,
            stderr=self.log,
            stdin=subprocess.DEVNULL,
            cwd=str(tree),
            start_new_session=True,  # Ctrl-C reaches only us: we stop it, in order
            preexec_fn=die_with_parent,
        )
        self.pid = self.process.pid
        try:
            with gevent.Timeout(START_TIMEOUT, RuntimeError("the server did not start")):
                while True:
                    line = self.process.stdout.readline().decode()
                    if "serving on" in line:
                        return
                    if not line and self.process.poll() is not None:
                        raise RuntimeError("the server exited: %s" % self.log_text()[-500:])
        except BaseException:
            self.stop()
            self.log.close()
            raise

    def alive(self):
        return self.process.poll() is None

    def log_text(self):
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(8)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process.stdout.close()


def start_attacker(kind, port, options):
    command = [PYTHON, str(Path(__file__).resolve()), "--attacker", kind, "--port", str(port)]
    command += ["--seconds", str(options.seconds), "--max-packets", str(options.max_packets)]
    command += ["--attacker-nice", str(options.attacker_nice), "--poll-interval", str(options.poll_interval)]
    return subprocess.Popen(
        pinned(1, command),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )


def read_json_line(process, timeout, what):
    with gevent.Timeout(timeout, RuntimeError("no %s from the attacker in %g s" % (what, timeout))):
        line = process.stdout.readline()
    if not line:
        raise RuntimeError("the attacker exited before its %s" % what)
    return json.loads(line)


def stop_process(process):
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def cpu_sampler(pid, start, samples, stop):
    """(seconds since ``start``, server CPU seconds) every CPU_SAMPLE_PERIOD until ``stop`` is set
    (at most 120 samples): when in the run the server was busy."""
    for _ in range(120):
        try:
            samples.append((round(now() - start, 2), cpu_seconds(pid)))
        except OSError:
            return
        if stop.wait(CPU_SAMPLE_PERIOD):
            return


def one_run(kind, tree, options, run_number):
    """Baseline (``kind`` None) or one flood: a dict of figures."""
    facts = {"kind": kind or "baseline", "load_1min": load_average()}
    run_id = "f%d-%d-%d" % (os.getpid(), int(time.time()), run_number)
    server = Server(tree)
    witnesses, attacker, attack = [], None, None
    cpu_samples, samples, stop_cpu = [], [], Event()
    try:
        for index in range(WITNESSES):
            witnesses.append(Witness(server.port, "w%d" % index, run_id).connect())
        for witness in witnesses:  # warm-up: one acked message each
            witness.call("message", {"room": ROOM, "id": "%s-%s-warm" % (run_id, witness.name), "text": "hi"})
        if kind is not None:
            attacker = start_attacker(kind, server.port, options)
            read_json_line(attacker, START_TIMEOUT, "ready line")
        gevent.sleep(0.2)  # let the setup's announces settle
        facts["rss_before"] = rss_bytes(server.pid)
        for witness in witnesses:
            witness.received = {}
        core_before = core_times(0)
        cpu_before, own_before, start = cpu_seconds(server.pid), own_cpu_seconds(), now()
        if attacker is not None:
            attacker.stdin.write(b"go\n")
            attacker.stdin.flush()
        seconds = options.seconds
        chatters = [
            gevent.spawn(w.chat, start, seconds, i * WITNESS_PERIOD / WITNESSES)
            for i, w in enumerate(witnesses)
        ]
        sampler = gevent.spawn(healthz_sampler, server.port, start, seconds, samples)
        cpu_watch = gevent.spawn(cpu_sampler, server.pid, start, cpu_samples, stop_cpu)
        gevent.sleep(max(0.0, start + seconds - now()))
        facts["window"] = now() - start
        facts["cpu_window"] = cpu_seconds(server.pid) - cpu_before if server.alive() else None
        facts["own_share"] = (own_cpu_seconds() - own_before) / facts["window"]
        busy, total = (after - before for after, before in zip(core_times(0), core_before, strict=True))
        facts["core0_busy"] = busy / total if total else None
        gevent.joinall(chatters, timeout=2)
        # Outstanding acks: wait until each has come or its 10 s are up.
        last_emit = max((t for w in witnesses for t in w.emitted.values()), default=now())
        while (
            any(w.outstanding() and w.closed_at is None for w in witnesses)
            and now() < last_emit + ACK_TIMEOUT
        ):
            gevent.sleep(0.05)
        gevent.joinall(sampler.get(timeout=5), timeout=ACK_TIMEOUT + 1)  # each GET gives up after 10 s
        if attacker is not None:
            attack = read_json_line(attacker, options.seconds + FINAL_WAIT + 20, "result")
            attacker.wait(10)
        gevent.sleep(0.5)  # the attacker's disconnect is handled
        stop_cpu.set()
        cpu_watch.join(1)
        facts["alive"] = server.alive()
        facts["rss_after"] = rss_bytes(server.pid) if facts["alive"] else None
        facts["members"] = members_now(server.port) if facts["alive"] else None
        held = probe_nickname(kind, attack)
        facts["probe"] = (
            {"nickname": held, "free": nickname_free(server.port, held)} if held and facts["alive"] else None
        )
    finally:
        stop_cpu.set()
        for witness in witnesses:
            witness.close()
        stop_process(attacker)
        server.stop()
        facts["log"] = server.log_text()
        server.log.close()
    facts.update(start=start, samples=samples, attack=attack)
    facts["cpu_timeline"] = [(t, round(cpu - cpu_before, 2)) for t, cpu in cpu_samples]
    return summarize(facts, witnesses)


def summarize(facts, witnesses):
    """The figures of one run from what it observed."""
    start = facts["start"]
    latencies, failed, timed_out, ok = [], 0, 0, 0
    disconnected, timeline = [], []
    for witness in witnesses:
        for ack_id, emitted in witness.emitted.items():
            arrival = witness.acked.get(ack_id)
            latency = None if arrival is None else arrival[0] - emitted
            timeline.append((round(emitted - start, 2), ms(latency)))
            if latency is None or latency > ACK_TIMEOUT:
                timed_out += 1
                continue
            latencies.append(latency)
            if arrival[1]:
                ok += 1
            else:
                failed += 1
        if witness.closed_at is not None:
            disconnected.append((witness.name, round(witness.closed_at - start, 2)))
    received = {}
    for witness in witnesses:
        for name, count in witness.received.items():
            received[name] = received.get(name, 0) + count
    samples = facts["samples"]
    health = [elapsed for elapsed, status in samples if elapsed is not None and status == 200]
    log_lines = [line for line in facts["log"].splitlines() if line.strip()]
    cpu_window = facts["cpu_window"]
    return {
        "kind": facts["kind"],
        "load_1min": facts["load_1min"],
        "window_s": round(facts["window"], 3),
        "acks_emitted": sum(len(w.emitted) for w in witnesses),
        "acks_ok": ok,
        "acks_failed": failed,
        "acks_timed_out": timed_out,
        "ack_p50_ms": ms(percentile(latencies, 0.5)),
        "ack_p99_ms": ms(percentile(latencies, 0.99)),
        "ack_max_ms": ms(max(latencies) if latencies else None),
        "ack_timeline": sorted(timeline),  # (emitted s after the flood began, latency ms or None)
        "witnesses_disconnected": disconnected,
        "witness_frames_received": received,
        "healthz_samples": len(samples),
        "healthz_failed": len(samples) - len(health),
        "healthz_p50_ms": ms(percentile(health, 0.5)),
        "healthz_max_ms": ms(max(health) if health else None),
        "server_cpu_s": None if cpu_window is None else round(cpu_window, 2),
        "server_cpu_timeline": facts["cpu_timeline"],  # (s after the flood began, CPU s since)
        # Core 0's busy share in the window, every process counted: minus the server's own
        # share, what other work on the machine took from the server's core.
        "core0_busy_share": None if facts["core0_busy"] is None else round(facts["core0_busy"], 3),
        "core0_others_share": None
        if facts["core0_busy"] is None or cpu_window is None
        else round(max(0.0, facts["core0_busy"] - cpu_window / facts["window"]), 3),
        "server_rss_before_bytes": facts["rss_before"],
        "server_rss_after_bytes": facts["rss_after"],
        "server_alive_after": facts["alive"],
        "members_after": facts["members"],
        "nickname_probe": facts["probe"],
        "measuring_cpu_share": round(facts["own_share"], 3),
        "attacker": facts["attack"],
        "server_log_lines": len(log_lines),
        "server_log_warnings": sum(" WARNING " in line for line in log_lines),
        "server_log_errors": sum(" ERROR " in line or "Traceback" in line for line in log_lines),
        "server_log_head": log_lines[:40],
    }


# --- output --------------------------------------------------------------------------------------


COLUMNS = (
    "kind",
    "load",
    "attacker packets written",
    "ack p50 / p99 / max ms",
    "acks ok / failed / timed out",
    "witness disc.",
    "/healthz p50 / max ms",
    "server CPU s (core 0 others)",
    "RSS before → after MB",
    "attacker disc.",
    "final ack s",
    "members after",
    "nick freed",
    "server log W/E",
)


def cell(value, fmt="%g"):
    return "–" if value is None else fmt % value


def row_cells(row):
    attack = row["attacker"] or {}
    if attack:
        packets = "%d in %.2f s" % (attack["packets"], attack["flood_seconds"])
        attacker_gone = (
            "yes, %.2f s" % attack["disconnected_after_s"]
            if attack["disconnected_after_s"] is not None
            else "no"
        )
        final = cell(attack["final_ack_after_s"], "%.2f") if row["kind"] != "polling-no-get" else "n/a"
    else:
        packets, attacker_gone, final = "–", "–", "–"
    gone = ", ".join("%s %.1f s" % item for item in row["witnesses_disconnected"]) or "no"
    mib = 1024 * 1024
    rss = "%s → %s" % (
        cell(row["server_rss_before_bytes"] and row["server_rss_before_bytes"] / mib, "%.1f"),
        cell(row["server_rss_after_bytes"] and row["server_rss_after_bytes"] / mib, "%.1f"),
    )
    probe = row["nickname_probe"]
    if probe is None:
        freed = "–"
    else:
        freed = "%s: %s" % (probe["nickname"], "yes" if probe["free"] is True else "no (%s)" % probe["free"])
    health = "%s / %s" % (cell(row["healthz_p50_ms"]), cell(row["healthz_max_ms"]))
    if row["healthz_failed"]:
        health += " (%d failed)" % row["healthz_failed"]
    return [
        row["kind"],
        "%.2f" % row["load_1min"],
        packets,
        "%s / %s / %s" % (cell(row["ack_p50_ms"]), cell(row["ack_p99_ms"]), cell(row["ack_max_ms"])),
        "%d / %d / %d" % (row["acks_ok"], row["acks_failed"], row["acks_timed_out"]),
        gone,
        health,
        cell(row["server_cpu_s"], "%.2f")
        + (
            "" if row["core0_others_share"] is None else " (others %d %%)" % (100 * row["core0_others_share"])
        ),
        rss,
        attacker_gone,
        final,
        cell(row["members_after"], "%d"),
        freed,
        "%d/%d" % (row["server_log_warnings"], row["server_log_errors"]),
    ]


def markdown(rows):
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    lines += ["| " + " | ".join(row_cells(row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def tree_revision(tree):
    """``git rev-parse HEAD`` of the tree and whether it differs from it (read-only), if it is a checkout."""
    git = ["git", "--no-optional-locks", "-C", str(tree)]
    try:
        head = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if head.returncode != 0 or not (tree / ".git").exists():
            return None
        status = subprocess.run(git + ["status", "--porcelain"], capture_output=True, text=True, timeout=30)
        diff = subprocess.run(git + ["diff", "HEAD"], capture_output=True, timeout=30).stdout
        return {
            "head": head.stdout.strip(),
            "uncommitted": [line for line in status.stdout.splitlines() if line],
            # of the tracked files' changes against HEAD: tells two dirty trees apart
            "diff_sha256": hashlib.sha256(diff).hexdigest(),
        }
    except (OSError, subprocess.SubprocessError):
        return None


def describe_changes(revision, rows):
    """Whether the measured tree had uncommitted changes, and whether they moved during the runs."""
    if not revision["uncommitted"]:
        return ", no uncommitted changes"
    states = {row.get("tree_diff_sha256") for row in rows}
    moved = "the same in every run" if len(states) == 1 else "CHANGED between runs"
    return ", uncommitted changes %s (diff sha256 %s…)" % (moved, revision["diff_sha256"][:12])


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tree", default=str(ROOT), help="source tree whose serve.py runs (default: this repo)"
    )
    parser.add_argument(
        "--kinds", default="all", help="'all' or a comma list of baseline,%s" % ",".join(KINDS)
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="flood window")
    parser.add_argument("--max-packets", type=int, default=3_000_000, help="the most packets one flood sends")
    parser.add_argument("--attacker-nice", type=int, default=10)
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=0.0,
        help="polling-no-get: seconds between its POSTs (0: back to back, a flood)",
    )
    parser.add_argument("--json", help="write every figure to this file")
    parser.add_argument("--attacker", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if not 0 < options.seconds <= 60 or not 0 < options.max_packets < FINAL_ACK // 4:
        parser.error("--seconds is in (0, 60], --max-packets in (0, %d)" % (FINAL_ACK // 4))
    return options


def main(argv=None):
    options = parse(argv)
    if options.attacker:
        return attacker_main(options)
    tree = Path(options.tree).resolve()
    if not (tree / "serve.py").exists() or not (tree / "chatwsgi").is_dir():
        sys.exit("%s has no serve.py and chatwsgi/" % tree)
    kinds = ["baseline", *KINDS] if options.kinds == "all" else [k for k in options.kinds.split(",") if k]
    unknown = set(kinds) - {"baseline", *KINDS}
    if unknown:
        sys.exit("unknown kinds: %s" % ", ".join(sorted(unknown)))
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})  # the measuring process on core 1, the server on core 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # finally blocks stop what we started
    revision = tree_revision(tree)
    rows = []
    began = now()
    for number, kind in enumerate(kinds):
        state = tree_revision(tree) if revision else None  # others may be editing the tree meanwhile
        row = one_run(None if kind == "baseline" else kind, tree, options, number)
        if state is not None:
            row["tree_diff_sha256"] = state["diff_sha256"]
        print(json.dumps(row), file=sys.stderr, flush=True)
        rows.append(row)
    record = {
        "command": " ".join(
            [os.path.relpath(sys.executable), "bench/flood.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "tree": str(tree),
        "revision": revision,
        "revision_after": tree_revision(tree) if revision else None,
        "python": platform.python_version(),
        "seconds": options.seconds,
        "witnesses": WITNESSES,
        "total_seconds": round(now() - began, 1),
        "rows": rows,
    }
    if options.json:
        Path(options.json).write_text(json.dumps(record, indent=2) + "\n")
    print(
        "Tree %s%s; flood window %g s; %d witnesses; total %.0f s."
        % (
            tree,
            " (HEAD %s%s)" % (revision["head"][:12], describe_changes(revision, rows)) if revision else "",
            options.seconds,
            WITNESSES,
            record["total_seconds"],
        )
    )
    print()
    print(markdown(rows), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
