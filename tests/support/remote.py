"""Socket.IO 0.9 clients we did not write, each in a driver subprocess, driven from gevent tests.

The tests run the chat server in-process under gevent and are not monkey-patched, so a
third-party client (Node's event loop, or a blocking Python library) runs in a subprocess
and a greenlet reads what it reports. Drivers: ``tests/thirdparty/node_client.js`` (npm
socket.io-client 0.9.16) and ``tests/thirdparty/pypi_client.py`` (PyPI socketIO-client
0.5.7.4). Both speak one protocol, a JSON object per line.

Commands, on the driver's stdin::

    {"op": "connect", "url": "http://127.0.0.1:PORT", "namespace": "/chat", "transport": "websocket"}
    {"op": "emit", "event": "message", "args": [{...}], "ack": 7}     ack null: no callback
    {"op": "disconnect"}                                              the client's own, polite
    {"op": "exit"}

Records, on its stdout::

    {"kind": "ready", "client": "socket.io-client 0.9.16", ...}      the driver has loaded
    {"kind": "connected", "session": "<sid>", "transport": "websocket"}   the namespace is connected
                                                                      (again after a reconnect)
    {"kind": "event", "name": "announce", "args": [...], "endpoint": "/chat"}   an event from the server
    {"kind": "ack", "ack": 7, "args": [...]}                         the ack of emit 7
    {"kind": "disconnect", "reason": "..."}                          the client saw its connection end
    {"kind": "reconnect", "transport": "..."}                        the client reconnected by itself
    {"kind": "error", "message": "..."}   an error packet, or the driver's or client's own failure
    {"kind": "log", "message": "..."}     anything else worth keeping (the client's warnings)
"""

import contextlib
import json
import statistics
import sys
import time
from pathlib import Path
from subprocess import PIPE

import gevent
from gevent.event import Event
from gevent.subprocess import Popen

from tests.support.chatting import wait_until

ROOT = Path(__file__).resolve().parents[2]
THIRDPARTY = ROOT / "tests" / "thirdparty"
DRIVERS = {
    "node": ["node", str(THIRDPARTY / "node_client.js")],
    "pypi": [sys.executable, str(THIRDPARTY / "pypi_client.py")],
}
KINDS = tuple(DRIVERS)
TRANSPORTS = ("websocket", "xhr-polling")


class RemoteClient:
    """One third-party client in its driver subprocess, recording everything it reports.

    Its API follows tests.support.sioclient.SocketIOClient: ``connect``, ``call``, ``emit``,
    ``wait_event``, ``events``, ``disconnect``, ``close``.
    """

    def __init__(self, kind, address, transport="websocket", namespace="/chat"):
        self.kind = kind
        self.address = address
        self.requested = transport  # what we asked for; ``transport`` is what it used
        self.namespace = namespace
        self.records = []  # every record, in arrival order, each with "t": perf_counter() on arrival
        self.stderr = []
        self.ack_times = []  # (event, seconds from emit to ack) of every call()
        self.exited = False
        self.nickname = self.token = None  # set by whoever claims one (RemoteClients.chatter)
        self.changed = Event()
        self._next_ack = 0
        self.process = Popen(DRIVERS[kind], stdin=PIPE, stdout=PIPE, stderr=PIPE, cwd=ROOT)
        self._readers = [gevent.spawn(self._read_records), gevent.spawn(self._read_stderr)]

    def __repr__(self):
        return "<%s %s %s>" % (self.kind, self.requested, self.session_id)

    # Reading -------------------------------------------------------------

    def _read_records(self):
        for line in self.process.stdout:
            arrived = time.perf_counter()
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if not isinstance(record, dict):  # something the client printed itself
                record = {"kind": "log", "message": line.decode("utf-8", "replace").rstrip()}
            record["t"] = arrived
            self.records.append(record)
            self.changed.set()
        self.exited = True
        self.changed.set()

    def _read_stderr(self):
        for line in self.process.stderr:
            self.stderr.append(line.decode("utf-8", "replace").rstrip())

    def describe(self):
        """The last records and stderr lines, for failure messages."""
        recent = [{k: v for k, v in r.items() if k != "t"} for r in self.records[-12:]]
        return "%r%s: last records %s; stderr %s" % (
            self,
            " (driver exited)" if self.exited else "",
            json.dumps(recent, ensure_ascii=False)[-3000:],
            self.stderr[-10:],
        )

    def wait_for(self, predicate, timeout=10, start=0):
        """The first record from index ``start`` matching ``predicate``, waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            self.changed.clear()  # before looking: a record arriving meanwhile sets it again
            for record in self.records[start:]:
                if predicate(record):
                    return record
            if self.exited:
                raise ConnectionError("the driver exited; " + self.describe())
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no matching record within %.1f s; %s" % (timeout, self.describe()))
            self.changed.wait(remaining)

    def of_kind(self, kind):
        """Every record of ``kind``."""
        return [r for r in self.records if r["kind"] == kind]

    def events(self, name):
        """Arguments of every ``name`` event received so far."""
        return [r["args"] for r in self.records if r["kind"] == "event" and r["name"] == name]

    def wait_event(self, name, predicate=lambda args: True, timeout=10, start=0):
        """The args of the first ``name`` event whose args match ``predicate``."""
        record = self.wait_for(
            lambda r: r["kind"] == "event" and r["name"] == name and predicate(r["args"]), timeout, start
        )
        return record["args"]

    @property
    def sessions(self):
        """Session ids of every connection the client made, in order."""
        return [r["session"] for r in self.of_kind("connected")]

    @property
    def session_id(self):
        """The current session id (None before connecting)."""
        sessions = self.sessions
        return sessions[-1] if sessions else None

    @property
    def transport(self):
        """The transport the client actually uses (None before connecting)."""
        connected = self.of_kind("connected")
        return connected[-1]["transport"] if connected else None

    @property
    def disconnected(self):
        """Whether the client has seen its connection end."""
        return bool(self.of_kind("disconnect"))

    @property
    def reconnected(self):
        """Whether the client has reconnected by itself."""
        return bool(self.of_kind("reconnect")) or len(self.sessions) > 1

    # Commands ------------------------------------------------------------

    def send(self, **command):
        """Write one command to the driver."""
        self.process.stdin.write((json.dumps(command) + "\n").encode("utf-8"))
        self.process.stdin.flush()

    def connect(self, timeout=10):
        """Connect to the namespace; raise unless the client reports it connected."""
        host, port = self.address
        url = "http://%s:%d" % (host, port)
        self.send(op="connect", url=url, namespace=self.namespace, transport=self.requested)
        record = self.wait_for(lambda r: r["kind"] in ("connected", "error"), timeout)
        if record["kind"] == "error":
            raise ConnectionError("could not connect: %s; %s" % (record["message"], self.describe()))
        return self

    def emit(self, event, *args, ack=True):
        """Emit an event, asking for an ack unless ``ack`` is false; return the ack id (or None)."""
        ack_id = None
        if ack:
            self._next_ack += 1
            ack_id = self._next_ack
        self.send(op="emit", event=event, args=list(args), ack=ack_id)
        return ack_id

    def call(self, event, *args, timeout=10):
        """Emit an event and return the first argument of its ack; the round trip is recorded."""
        started = time.perf_counter()
        ack_id = self.emit(event, *args)
        record = self.wait_for(lambda r: r["kind"] == "ack" and r["ack"] == ack_id, timeout)
        self.ack_times.append((event, record["t"] - started))
        return record["args"][0] if record["args"] else None

    def disconnect(self, timeout=10):
        """Leave politely with the client's own disconnect; wait until it reports the end."""
        self.send(op="disconnect")
        self.wait_for(lambda r: r["kind"] == "disconnect", timeout)

    def wait_disconnected(self, timeout=10):
        """Wait until the client sees its connection end."""
        self.wait_for(lambda r: r["kind"] == "disconnect", timeout)

    def close(self):
        """Kill the driver (the client vanishes, as a killed process would)."""
        if self.process.returncode is None:
            with contextlib.suppress(OSError):
                self.process.kill()
            self.process.wait()
        gevent.joinall(self._readers, timeout=5)
        gevent.killall(self._readers)
        for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
            with contextlib.suppress(OSError):
                pipe.close()


class RemoteClients:
    """Remote clients opened for one test, all killed by ``close`` (a fixture's teardown)."""

    def __init__(self, address):
        self.address = address
        self.opened = []

    def open(self, kind, transport="websocket", **options):
        """A new, unconnected client (killed at close even if it never connects)."""
        client = RemoteClient(kind, self.address, transport, **options)
        self.opened.append(client)
        return client

    def connect(self, kind, transport="websocket", **options):
        """A connected client, checked to use the transport it was asked for."""
        client = self.open(kind, transport, **options).connect()
        assert client.transport == transport, client.describe()
        return client

    def chatter(self, kind, nickname, transport="websocket", room="lobby"):
        """A connected client with ``nickname`` that has joined ``room`` (as chatting.chatter)."""
        client = self.connect(kind, transport)
        claimed = client.call("nickname", {"nickname": nickname})
        assert claimed["ok"], claimed
        client.nickname, client.token = claimed["nickname"], claimed["token"]
        if room:
            client.joined = client.call("join", {"room": room})
            assert client.joined["ok"], client.joined
        return client

    def close(self):
        """Kill every driver."""
        gevent.joinall([gevent.spawn(client.close) for client in self.opened])


def remote_client(kind, address, transport="websocket"):
    """A RemoteClient of ``kind`` ("node" or "pypi") connected over ``transport`` (checked to be
    the one it uses); the caller must close() it."""
    client = RemoteClient(kind, address, transport)
    try:
        client.connect()
        assert client.transport == transport, client.describe()
    except BaseException:
        client.close()
        raise
    return client


def ack_summary(ack_times, event="message"):
    """(count, median ms, p90 ms) of the recorded emit->ack times of ``event``."""
    times = sorted(seconds * 1000 for name, seconds in ack_times if name == event)
    if not times:
        return 0, None, None
    p90 = times[min(len(times) - 1, int(round(0.9 * (len(times) - 1))))]
    return len(times), statistics.median(times), p90


def stay_idle(clients, witness, seconds, room="lobby", within=10):
    """Check that each client keeps one session through ``seconds`` of silence, then receives a
    message within ``within`` seconds; return {nickname: seconds from its ack to arrival}.

    ``clients`` are all in ``room`` and silent meanwhile (they run concurrently, so the
    silence is paid once). Each needs ``nickname``, ``session_id`` (its current session),
    ``disconnected`` (it saw its connection end) and ``wait_event(name, predicate, timeout)``:
    a RemoteClient has them; wrap a browser page to give it the same. ``witness`` (a
    SocketIOClient or RemoteClient in ``room``) must see no one leave, then posts the message.
    """
    before = {client.nickname: client.session_id for client in clients}
    assert all(before.values()), before
    quiet_until = time.monotonic() + seconds
    problems = []

    def quiet_over():
        problems[:] = _idle_problems(clients, before) + _witness_problems(witness, before)
        return problems or time.monotonic() >= quiet_until

    # The silence is the test: wait it out, but stop at the first sign of a drop.
    wait_until(quiet_over, timeout=seconds + 5, interval=0.5)
    assert not problems, "after %s s of silence: %s" % (seconds, "; ".join(problems))

    probe = "idle-%d" % int(time.monotonic() * 1000)
    ack = witness.call("message", {"room": room, "id": probe, "text": "still there after %s s?" % seconds})
    assert ack["ok"], ack
    acked = time.perf_counter()
    arrival = {}
    for client in clients:  # one after the other: each time is an upper bound of the true one
        try:
            client.wait_event(
                "message", lambda args: args[0]["id"] == probe, acked + within - time.perf_counter()
            )
        except TimeoutError:
            problems.append("%s did not receive the message within %s s" % (client.nickname, within))
        else:
            arrival[client.nickname] = time.perf_counter() - acked
    problems += _idle_problems(clients, before)
    assert not problems, "after the message (arrivals %s): %s" % (arrival, "; ".join(problems))
    return arrival


def _witness_problems(witness, before):
    if getattr(witness, "closed", False) or getattr(witness, "disconnected", False):
        return ["the witness itself lost its connection"]  # then it can tell nothing
    left = [a[0]["nickname"] for a in witness.events("announce") if a[0]["kind"] == "leave"]
    return ["the witness saw %s leave" % n for n in left if n in before]


def _idle_problems(clients, before):
    problems = []
    for client in clients:
        if client.disconnected:
            problems.append("%s saw its connection end" % client.nickname)
        if client.session_id != before[client.nickname]:
            problems.append(
                "%s changed session %s -> %s" % (client.nickname, before[client.nickname], client.session_id)
            )
    return problems
