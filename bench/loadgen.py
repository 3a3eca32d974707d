"""Load generator: N raw websocket clients on gevent, one sender, deliveries counted unparsed.

Speaks just enough of each protocol:
  sio09  Socket.IO 0.9 (chatwsgi; ``--naive`` for the stock BroadcastMixin baseline)
  sio5   Engine.IO 4 / Socket.IO 5 (python-socketio, Node socket.io)
Frames are recognised by a byte marker, never JSON-decoded, so the clients cost far less
than the server. Each client connects on gevent; once ready, a receiver's socket joins one
epoll drained by a single watcher in the hub (``Receivers``), so a delivery costs the load
generator a read, not a greenlet's wake-up. Prints one JSON object with the measurements. Options for a
cluster (bench/cluster.py): ``--sender-port`` puts the sender on another node than the receivers,
the ``ack`` scenario times emit-to-ack, ``--report-on-stdin`` lets a receivers-only process
tell its delivery count. With ``--rooms R`` every client joins one of R rooms (``join``,
acked, for every protocol) and reads through the epoll loop: the ``steady`` scenario has random
members send at each of ``--steps`` rates, their text carrying a send timestamp at a fixed
offset after a marker (``STAMP``) that the receivers parse without decoding the frame;
``--window W`` keeps at most W clients connecting at once (the reconnect storm: the
``connected`` report gives joins/s and the server's CPU per join). Try:
  python bench/loadgen.py --protocol sio09 --port 8080 --clients 100 --messages 10
  python bench/loadgen.py --protocol sio09 --port 8080 --clients 500 --rooms 5 --window 500 \
      --scenarios steady --steps 10,50 --step-seconds 3
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import collections  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import select  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402
from gevent.event import Event  # noqa: E402
from gevent.pool import Pool  # noqa: E402

PAYLOAD_TEXT = "x" * 96  # with the envelope, a ~130-byte chat frame
RUN_ID = "r%d%d" % (os.getpid(), time.time())  # message ids are stored once per author: keep runs apart
MESSAGE_NUMBERS = itertools.count()
MARKERS = {"sio09": b'"message"', "naive": b'"chat"', "sio5": b'"chat"'}
# Heartbeats: the server's ping payload and the client's answer, a zero-masked text frame.
PINGS = {"sio09": (b"2::", b"\x81\x83\0\0\0\0" + b"2::"), "sio5": (b"2", b"\x81\x81\0\0\0\0" + b"3")}
EPOLL = monkey.get_original("select", "epoll")  # patch_all removes select.epoll: it would block
# steady: a message's text is STAMP, its send time (CLOCK_MONOTONIC, µs, 16 digits), padding.
STAMP = b"~T"
STAMP_DIGITS = 16
BUCKET_US = 100  # latency histogram: 100 µs buckets up to 10 s, the last one holds the rest
BUCKETS = 100_000


def now_us():
    return time.monotonic_ns() // 1000


def stamped_text():
    """A chat text of PAYLOAD_TEXT's length holding the send time right after STAMP."""
    head = "%s%0*d" % (STAMP.decode(), STAMP_DIGITS, now_us())
    return head + PAYLOAD_TEXT[len(head) :]


def room_name(number):
    """Room ``number`` of ``--rooms``; room 0 is chatwsgi's default room, which always exists
    and counts towards its 1,000-room limit (the peers take any name)."""
    return "lobby" if number == 0 else "r%d" % number


def raise_open_files():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def cpu_seconds(pid):
    """user+system CPU seconds of a process, from /proc (0 when no pid is given)."""
    if not pid:
        return 0.0
    with open("/proc/%d/stat" % pid) as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def core_busy_seconds(core):
    """Seconds core ``core`` was busy (not idle or iowait) since boot, from /proc/stat."""
    with open("/proc/stat") as stat:
        for line in stat:
            if line.startswith("cpu%d " % core):
                ticks = [int(x) for x in line.split()[1:]]
                return (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
    return 0.0


def own_cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Connection:
    """A client websocket: zero-mask frames out (XOR with zero is free), frames in."""

    def __init__(self, port, path):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.sendall(
            (
                "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                % (path, port)
            ).encode()
        )
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during the upgrade")
            self.buffer += chunk
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(head[:80])

    def send(self, text):
        data = text.encode()
        size = len(data)
        if size < 126:
            header = struct.pack("!BB", 0x81, 0x80 | size)
        else:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, size)
        self.sock.sendall(header + b"\0\0\0\0" + data)

    def frames(self):
        """Yield text payloads until the connection closes; ``self.buffer`` keeps what follows."""
        while self.fill(2):
            size, start = self.buffer[1] & 0x7F, 2
            if size == 126:
                if not self.fill(4):
                    return
                size, start = struct.unpack("!H", self.buffer[2:4])[0], 4
            elif size == 127:
                if not self.fill(10):
                    return
                size, start = struct.unpack("!Q", self.buffer[2:10])[0], 10
            if not self.fill(start + size):
                return
            buffer = self.buffer
            opcode = buffer[0] & 0x0F
            payload, self.buffer = buffer[start : start + size], buffer[start + size :]
            if opcode == 8:
                return
            yield payload

    def fill(self, size):
        """Read until the buffer holds ``size`` bytes; False when the connection closes first."""
        while len(self.buffer) < size:
            chunk = self.sock.recv(65536)
            if not chunk:
                return False
            self.buffer += chunk
        return True


class Client:
    """One chat client of a protocol; ``counter`` counts chat deliveries.

    With ``receivers`` (every client but the sender) it reads its own frames only until it is
    ready, then hands its socket to that epoll loop; the sender keeps a greenlet reader.
    """

    def __init__(self, options, index, counter, receivers=None):
        self.options, self.index, self.counter = options, index, counter
        self.receivers = receivers
        self.port = options.port
        self.ready = Event()
        self.conn = None
        self.acks = None  # the ack scenario's sender: ack id -> (arrival time, ok)
        self.acked = Event()
        self.rooms = options.rooms  # 0: the historical single room ("bench"; none for the peers)
        self.room = room_name(index % options.rooms) if options.rooms else "bench"

    def open(self):
        port = self.port
        if self.options.protocol == "sio5":
            self.conn = Connection(port, "/socket.io/?EIO=4&transport=websocket")
            self.conn.send("40")
        else:
            sid = handshake_09(port)
            self.conn = Connection(port, "/socket.io/1/websocket/" + sid)
            self.conn.send("1::/chat")
            if not self.options.naive:
                self.conn.send('5:1+:/chat:{"name":"nickname","args":[{"nickname":"b%d"}]}' % self.index)
            if self.rooms or not self.options.naive:
                self.conn.send('5:2+:/chat:{"name":"join","args":[{"room":"%s"}]}' % self.room)
        if self.receivers is None:
            gevent.spawn(self.read)
            if not self.ready.wait(60):
                raise TimeoutError("client %d not ready" % self.index)
            return
        with gevent.Timeout(60, TimeoutError("client %d not ready" % self.index)):
            for payload in self.conn.frames():
                self.handle(payload)
                if self.ready.is_set():
                    break
            else:
                self.counter.closed += 1
                raise ConnectionError("client %d closed before it was ready" % self.index)
        self.receivers.add(self.conn)

    def read(self):
        for payload in self.conn.frames():
            self.handle(payload)
        self.counter.closed += 1

    def handle(self, payload):
        """One frame's payload: count a delivery, answer a heartbeat, note readiness or an ack."""
        marker = STAMP if self.rooms else MARKERS["naive" if self.options.naive else self.options.protocol]
        if marker in payload:
            self.counter.delivered()
        elif self.options.protocol == "sio5":
            if payload == b"2":
                self.conn.send("3")
            elif payload.startswith(b"40"):
                if self.rooms:  # join once the namespace is open (node drops earlier events)
                    self.conn.send('421["join",{"room":"%s"}]' % self.room)
                else:
                    self.ready.set()
            elif payload.startswith(b"431"):
                self.ready.set()  # the join's ack
        elif payload == b"2::":
            self.conn.send("2::")
        elif payload.startswith(b"6::/chat:2+") or (
            self.options.naive and not self.rooms and payload == b"1::/chat"
        ):
            if b'"ok":false' in payload:
                self.counter.join_failures += 1  # refused (e.g. Redis unavailable): counted, not retried
                self.counter.refused(payload)
            self.ready.set()  # the join's ack (or, for the baseline, the namespace connect)
        elif payload.startswith(b"6::/chat:1+") and b'"ok":false' in payload:
            self.counter.refused(payload)  # the nickname: its join is refused too, and counted
        elif self.acks is not None and payload.startswith(b"6::/chat:"):
            self.acks[payload[9 : payload.find(b"+", 9)]] = (time.perf_counter(), b'"ok":true' in payload)
            self.acked.set()

    def emit_chat(self, number, room="bench", text=PAYLOAD_TEXT):
        """Send one chat message; ``room`` only for chatwsgi (the peers know the sender's room)."""
        if self.options.protocol == "sio5":
            self.conn.send('42["chat",{"n":%d,"t":"%s"}]' % (number, text))
        elif self.options.naive:
            self.conn.send('5::/chat:{"name":"chat","args":[{"n":%d,"t":"%s"}]}' % (number, text))
        else:
            self.conn.send(
                '5:%d+:/chat:{"name":"message","args":[{"room":"%s","id":"%s-%d","text":"%s"}]}'
                % (number + 10, room, RUN_ID, next(MESSAGE_NUMBERS), text)
            )

    def wait_ack(self, ack_id, timeout):
        """(arrival time, ok) of the ack with this id, or None after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while ack_id not in self.acks:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.acked.clear()
            self.acked.wait(remaining)
        return self.acks.pop(ack_id)


def handshake_09(port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    sock.sendall(b"GET /socket.io/1/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    sock.close()
    return data.split(b"\r\n\r\n", 1)[1].split(b":", 1)[0].decode()


class Receivers:
    """Every ready receiver's socket in one epoll, drained by one gevent watcher with ``os.read``.

    The watcher on the epoll fd is started once and never stopped, and drains in the hub: no
    greenlet per socket, no switch per wake-up, and no libev re-adding the epoll fd to its own
    (the kernel checks every nested socket on each add). Frames are walked by their headers
    without copying their payloads; as in ``Client.handle``, a frame counts as one delivery
    when its payload holds the marker, a ping payload is answered with a pong frame, a close
    frame or EOF or a read error counts the connection as closed. A partial frame waits in
    ``buffers`` for the rest.
    """

    BATCH = 1024  # ready sockets per drain: then the hub runs the others (the sender, the waiters)

    def __init__(self, options, counter):
        self.counter = counter
        self.marker = STAMP if options.rooms else MARKERS["naive" if options.naive else options.protocol]
        self.ping, self.pong = PINGS[options.protocol]
        # steady: a latency histogram (BUCKET_US buckets) filled from each delivery's stamp
        self.histogram = None
        self.now = 0  # when the data being walked was read, µs
        self.epoll = EPOLL()
        self.buffers = {}  # fd -> the bytes of an incomplete frame (b"" when none)
        self.sockets = {}  # fd -> socket: keeps it open while registered
        self.watcher = None

    def add(self, conn):
        """Take over ``conn`` for reading from now on, its already buffered bytes first."""
        fd = conn.sock.fileno()
        self.sockets[fd], self.buffers[fd] = conn.sock, b""
        self.epoll.register(fd, select.EPOLLIN)
        pending, conn.buffer = conn.buffer, b""
        if pending:
            self.counter.add(self.consume(fd, pending))
        if self.watcher is None:
            self.watcher = gevent.get_hub().loop.io(self.epoll.fileno(), 1)
            self.watcher.start(self.drain)

    def drain(self):
        """In the hub, when the epoll fd is readable: read every ready socket (up to BATCH)."""
        buffers, read, delivered, stamped = self.buffers, os.read, 0, self.histogram is not None
        for fd, _ in self.epoll.poll(0, self.BATCH):
            try:
                data = read(fd, 65536)
                if stamped:
                    self.now = now_us()
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                self.drop(fd)
                continue
            pending = buffers[fd]
            delivered += self.consume(fd, pending + data if pending else data)
        if delivered:
            self.counter.add(delivered)
        if not buffers:  # every connection closed: nothing left to watch
            self.watcher.close()
            self.watcher = None

    def consume(self, fd, data):
        """Walk the complete frames in ``data``, keep the rest; the deliveries among them."""
        marker, ping, find = self.marker, self.ping, data.find
        delivered, pos, end = 0, 0, len(data)
        while end - pos >= 2:
            size, start = data[pos + 1] & 0x7F, pos + 2
            if size == 126:
                if end - pos < 4:
                    break
                size, start = (data[pos + 2] << 8) | data[pos + 3], pos + 4
            elif size == 127:
                if end - pos < 10:
                    break
                size, start = int.from_bytes(data[pos + 2 : pos + 10], "big"), pos + 10
            stop = start + size
            if stop > end:
                break
            if data[pos] & 0x0F == 8:  # a close frame: read no further, as the greenlet reader
                self.drop(fd)
                return delivered
            at = find(marker, start, stop)
            if at >= 0:
                delivered += 1
                if self.histogram is not None:
                    at += len(marker)
                    waited = (self.now - int(data[at : at + STAMP_DIGITS])) // BUCKET_US
                    self.histogram[waited if 0 <= waited < BUCKETS else BUCKETS - 1] += 1
            elif size == len(ping) and data.startswith(ping, start) and not self.answer(fd):
                return delivered
            pos = stop
        self.buffers[fd] = data[pos:] if pos < end else b""
        return delivered

    def answer(self, fd):
        """Send the pong; the rest by a greenlet if the socket's buffer is full. False if closed."""
        try:
            sent = os.write(fd, self.pong)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.drop(fd)
            return False
        if sent < len(self.pong):
            gevent.spawn(self.sockets[fd].sendall, self.pong[sent:])
        return True

    def drop(self, fd):
        """The connection closed (EOF, close frame or error): stop reading it, count it."""
        self.epoll.unregister(fd)
        del self.buffers[fd]
        self.counter.closed += 1


class Counter:
    """Deliveries so far; wakes a waiter when a target count is reached."""

    def __init__(self):
        self.count = 0
        self.closed = 0
        self.join_failures = 0
        self.join_failure = None  # the first refused nickname's or join's ack, as a sample
        self.target = None
        self.reached = Event()

    def refused(self, payload):
        if self.join_failure is None:
            self.join_failure = payload[:200].decode("utf-8", "replace")

    def delivered(self):
        self.add(1)

    def add(self, number):
        self.count += number
        if self.target is not None and self.count >= self.target:
            self.reached.set()

    def wait_for(self, target, timeout):
        self.target = target
        if self.count >= target:
            return True
        self.reached.clear()
        return self.reached.wait(timeout)


def connect_all(options, counter):
    # With rooms, exactly --clients members and no separate sender (random members send).
    count = options.clients + (0 if options.receivers_only or options.rooms else 1)
    receivers = counter.receivers = Receivers(options, counter)
    # Every client reads through ``receivers`` once ready, except the sender (clients[0]).
    clients = [
        Client(
            options,
            options.first_index + i,
            counter,
            receivers if i or options.receivers_only or options.rooms else None,
        )
        for i in range(count)
    ]
    if options.sender_port and not options.receivers_only:
        clients[0].port = options.sender_port  # the sender on another node than its receivers
    if options.window:  # a sliding window: at most ``window`` clients connecting at any moment
        Pool(options.window).map(Client.open, clients)
        return clients[0], clients
    for start in range(0, len(clients), options.batch):
        batch = clients[start : start + options.batch]
        gevent.joinall([gevent.spawn(c.open) for c in batch], raise_error=True)
    return clients[0], clients


def run(options):
    """Connect everyone, then run the scenarios in order; one JSON line per phase."""
    raise_open_files()
    counter = Counter()
    server_cpu, own_cpu, started = cpu_seconds(options.server_pid), own_cpu_seconds(), time.monotonic()
    sender, clients = connect_all(options, counter)
    joined = time.monotonic() - started  # every client connected and joined (the storm's figure)
    server_cpu, own_cpu = cpu_seconds(options.server_pid) - server_cpu, own_cpu_seconds() - own_cpu
    receivers = len(clients)  # the sender receives its own broadcast too
    gevent.sleep(options.settle)
    report(
        {
            "phase": "connected",
            "clients": options.clients,
            "connect_seconds": elapsed_since(started),
            "joined_seconds": round(joined, 3),
            "joins_per_second": round(len(clients) / joined, 1),
            "server_cpu_us_per_join": round(server_cpu / len(clients) * 1e6, 1),
            "loadgen_core_share": round(own_cpu / joined, 3),
            "join_failures": counter.join_failures,
            "join_failure_sample": counter.join_failure,
        }
    )
    if options.wait_stdin:
        sys.stdin.readline()  # the orchestrator reads the server's memory, then releases us
    if options.receivers_only and options.report_on_stdin:
        # Hold the receivers; each line on stdin asks for the deliveries so far, EOF ends.
        read_line = gevent.get_hub().threadpool.apply
        while read_line(sys.stdin.readline, ()):
            report({"phase": "held", "clients": options.clients, "delivered": counter.count})
        return
    if options.receivers_only:
        # One of several load generator processes: hold the receivers until stopped.
        while True:
            gevent.sleep(60)
    for scenario in filter(None, options.scenarios.split(",")):  # "": connect only (the storm)
        counter.count = 0
        result = SCENARIOS[scenario](options, sender, counter, receivers, clients)
        report(dict(result, phase=scenario, clients=options.clients))
        gevent.sleep(options.settle)


def report(result):
    print(json.dumps(result), flush=True)


def elapsed_since(started):
    return round(time.monotonic() - started, 2)


def fanout(options, sender, counter, receivers, clients):
    """B messages sent at ``rate``; server CPU per delivery until all are delivered."""
    target = receivers * options.messages
    server_cpu, own_cpu, started = cpu_seconds(options.server_pid), own_cpu_seconds(), time.monotonic()
    for number in range(options.messages):
        sender.emit_chat(number)
        gevent.sleep(1.0 / options.rate)
    complete = counter.wait_for(target, options.timeout)
    elapsed = time.monotonic() - started
    server_cpu = cpu_seconds(options.server_pid) - server_cpu
    own_cpu = own_cpu_seconds() - own_cpu
    # Receivers in other load generator processes get the same messages (they are not
    # counted here: their share is taken as complete when ours is).
    delivered = counter.count + options.other_receivers * options.messages
    return {
        "messages": options.messages,
        "delivered": delivered,
        "complete": bool(complete),
        "seconds": round(elapsed, 3),
        "deliveries_per_second": round(delivered / elapsed, 1),
        "server_cpu_us_per_delivery": round(server_cpu / max(delivered, 1) * 1e6, 3),
        "loadgen_core_share": round(own_cpu / elapsed, 3),
    }


def latency(options, sender, counter, receivers, clients):
    """One message at a time: time from send to the last of all recipients, and the server's
    CPU per delivery when each broadcast goes out alone (not corked with others)."""
    samples, own_cpu, started = [], own_cpu_seconds(), time.monotonic()
    server_cpu = cpu_seconds(options.server_pid)
    for number in range(options.messages):
        counter.count = 0
        sent = time.perf_counter()
        sender.emit_chat(number)
        if not counter.wait_for(receivers, options.timeout):
            break
        samples.append((time.perf_counter() - sent) * 1000)
        gevent.sleep(options.gap)
    server_cpu = cpu_seconds(options.server_pid) - server_cpu
    samples.sort()
    elapsed = time.monotonic() - started

    def pick(q):
        return round(samples[min(len(samples) - 1, int(q * len(samples)))], 2) if samples else None

    return {
        "broadcasts": len(samples),
        # The gaps between broadcasts (heartbeats, timers) are in it too: a little above.
        "single_broadcast_cpu_us_per_delivery": round(server_cpu / max(len(samples) * receivers, 1) * 1e6, 3),
        "p50_ms": pick(0.50),
        "p99_ms": pick(0.99),
        "max_ms": round(samples[-1], 2) if samples else None,
        "loadgen_core_share": round((own_cpu_seconds() - own_cpu) / elapsed, 3),
    }


def ack(options, sender, counter, receivers, clients):
    """Emit to ack, one message at a time, in a room where the sender is alone (chatwsgi only).

    The ack comes once the message is stored (with Redis: after the round trip to it), so
    the difference between backplanes is what that storing costs the sender.
    """
    if options.protocol != "sio09" or options.naive:
        raise SystemExit("the ack scenario needs chatwsgi (--protocol sio09, not --naive)")
    sender.acks = {}
    sender.conn.send('5:3+:/chat:{"name":"join","args":[{"room":"%s"}]}' % options.ack_room)
    joined = sender.wait_ack(b"3", options.timeout)
    if not (joined and joined[1]):
        raise SystemExit("the sender could not join the ack room %r" % options.ack_room)
    samples, failed = [], 0
    for number in range(options.messages):
        sent = time.perf_counter()
        sender.emit_chat(number, options.ack_room)
        acked = sender.wait_ack(b"%d" % (number + 10), options.timeout)
        if acked is None:
            break
        samples.append((acked[0] - sent) * 1000)
        failed += not acked[1]
        # Its own copy of the message, so none arrives during the next scenario.
        counter.wait_for(number + 1, options.timeout)
        gevent.sleep(options.gap)
    sender.acks = None
    samples.sort()

    def pick(q):
        return round(samples[min(len(samples) - 1, int(q * len(samples)))], 3) if samples else None

    return {"acks": len(samples), "failed": failed, "p50_ms": pick(0.50), "p99_ms": pick(0.99)}


def hold(options, sender, counter, receivers, clients):
    """Capacity: keep every connection open with heartbeats; count the ones that drop."""
    server_cpu, started = cpu_seconds(options.server_pid), time.monotonic()
    deadline = started + options.hold_seconds
    while time.monotonic() < deadline and counter.closed == 0:
        gevent.sleep(min(1.0, deadline - time.monotonic()))
    elapsed = time.monotonic() - started
    return {
        "held_seconds": round(elapsed, 1),
        "dropped": counter.closed,
        "server_idle_core_share": round((cpu_seconds(options.server_pid) - server_cpu) / elapsed, 4),
    }


def percentile(histogram, total, q):
    """The q-quantile of a BUCKET_US histogram, in ms (a bucket's upper edge); None if empty."""
    if not total:
        return None
    rank, seen = max(1, int(q * total + 0.999999)), 0
    for bucket, count in enumerate(histogram):
        seen += count
        if seen >= rank:
            return round((bucket + 1) * BUCKET_US / 1000, 1)
    return None


def steady(options, sender, counter, receivers, clients):
    """Random members send at each rate of ``--steps`` for ``--step-seconds``: per step, the
    server's CPU per delivery, deliveries/s, send-to-each-recipient latency, all delivered?

    A step's expected deliveries are the sender's room size per message (the sender gets
    its own message back). The step ends when all arrived or ``--drain-timeout`` after the
    last send; the steps stop after the first one that failed (p99 >= ``--p99-limit`` ms or
    something missing), whose backlog would spill into the next. ``idle`` is the server's
    CPU share with every client connected and quiet (heartbeats), over ``--idle-seconds``.
    """
    if not options.rooms:
        raise SystemExit("the steady scenario needs --rooms")
    members = collections.Counter(client.room for client in clients)
    idle_cpu = cpu_seconds(options.server_pid)
    gevent.sleep(options.idle_seconds)
    idle_share = (cpu_seconds(options.server_pid) - idle_cpu) / options.idle_seconds
    picker = random.Random(options.seed)
    steps = []
    for rate in map(float, options.steps.split(",")):
        histogram = counter.receivers.histogram = [0] * BUCKETS
        counter.count, expected, total = 0, 0, int(rate * options.step_seconds)
        server_cpu, own_cpu, started = cpu_seconds(options.server_pid), own_cpu_seconds(), time.monotonic()
        core_busy = core_busy_seconds(options.server_core)
        for number in range(total):
            delay = started + number / rate - time.monotonic()
            if delay > 0:
                gevent.sleep(delay)
            client = clients[picker.randrange(len(clients))]
            client.emit_chat(number, client.room, stamped_text())
            expected += members[client.room]
        sent = time.monotonic() - started
        complete = counter.wait_for(expected, options.drain_timeout)
        elapsed = time.monotonic() - started
        server_cpu = cpu_seconds(options.server_pid) - server_cpu
        own_cpu = own_cpu_seconds() - own_cpu
        core_busy = core_busy_seconds(options.server_core) - core_busy
        counter.receivers.histogram = None
        delivered, timed = counter.count, sum(histogram)
        p99 = percentile(histogram, timed, 0.99)
        held = bool(complete) and p99 is not None and p99 < options.p99_limit
        steps.append(
            {
                "rate": rate,
                "messages": total,
                "sent_per_second": round(total / sent, 1),
                "expected": expected,
                "delivered": delivered,
                "complete": bool(complete),
                "seconds": round(elapsed, 3),
                "deliveries_per_second": round(delivered / elapsed, 1),
                "server_cpu_us_per_delivery": round(server_cpu / max(delivered, 1) * 1e6, 3),
                "server_cpu_us_per_delivery_less_idle": round(
                    max(0.0, server_cpu - idle_share * elapsed) / max(delivered, 1) * 1e6, 3
                ),
                "server_core_share": round(server_cpu / elapsed, 3),
                # The server's core busy with anything else (another process pinned there):
                # a shared machine shows here, and its stalls in p99.
                "others_on_server_core": round(max(0.0, core_busy - server_cpu) / elapsed, 3),
                "p50_ms": percentile(histogram, timed, 0.50),
                "p99_ms": p99,
                "max_ms": percentile(histogram, timed, 1.0),
                "loadgen_core_share": round(own_cpu / elapsed, 3),
                "held": held,
            }
        )
        report(dict(steps[-1], phase="step", clients=options.clients))
        if not held:
            break
        gevent.sleep(options.settle)
    valid = [s for s in steps if s["held"] and s["loadgen_core_share"] <= 0.8]
    return {
        "rooms": options.rooms,
        "room_size": max(members.values()),
        "server_idle_core_share": round(idle_share, 4),
        "steps": steps,
        "highest_rate_held": max((s["rate"] for s in valid), default=None),
    }


SCENARIOS = {"fanout": fanout, "latency": latency, "hold": hold, "ack": ack, "steady": steady}


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", choices=["sio09", "sio5"], required=True)
    parser.add_argument("--naive", action="store_true", help="the BroadcastMixin baseline's events")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--server-pid", type=int, default=0)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--batch", type=int, default=100, help="connections opened at once")
    parser.add_argument("--scenarios", default="fanout,latency", help="fanout, latency, hold, ack")
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--rate", type=float, default=1000.0, help="fanout: messages per second sent")
    parser.add_argument("--gap", type=float, default=0.01, help="latency: pause between broadcasts")
    parser.add_argument("--settle", type=float, default=1.0)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--hold-seconds", type=float, default=600.0, help="hold: how long")
    parser.add_argument("--wait-stdin", action="store_true")
    parser.add_argument("--receivers-only", action="store_true", help="no sender, no scenarios: hold clients")
    parser.add_argument(
        "--first-index", type=int, default=0, help="nicknames start here (unique per process)"
    )
    parser.add_argument("--other-receivers", type=int, default=0, help="clients held by other processes")
    parser.add_argument(
        "--sender-port", type=int, default=0, help="the sender's server (another node), if not --port"
    )
    parser.add_argument("--ack-room", default="ack", help="ack: the room the sender is alone in")
    parser.add_argument("--rooms", type=int, default=0, help="clients spread over this many rooms (steady)")
    parser.add_argument("--window", type=int, default=0, help="at most this many connecting at once")
    parser.add_argument("--steps", default="100,200,500,1000", help="steady: offered messages/s")
    parser.add_argument("--step-seconds", type=float, default=10.0, help="steady: sending time per step")
    parser.add_argument("--drain-timeout", type=float, default=10.0, help="steady: wait after a step")
    parser.add_argument("--idle-seconds", type=float, default=3.0, help="steady: idle CPU measured first")
    parser.add_argument("--p99-limit", type=float, default=100.0, help="steady: a step holds below this")
    parser.add_argument("--seed", type=int, default=1, help="steady: who sends")
    parser.add_argument("--server-core", type=int, default=0, help="steady: the core the server is pinned to")
    parser.add_argument(
        "--report-on-stdin",
        action="store_true",
        help="with --receivers-only, after the release: print the deliveries per stdin line, exit on EOF",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    run(parse())
