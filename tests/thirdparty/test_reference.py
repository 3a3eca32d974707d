"""The Socket.IO 0.9 reference server (npm socket.io@0.9.16) as an oracle: a differential test.

The same raw exchanges go to the reference (``reference_server.js``, under Node) and to
chatwsgi (the in-process ``server`` fixture), with the same settings. Every observation is
asserted equal on both, or asserted to be the entry of ``DIFFERENCES`` for that side: a
difference we keep on purpose, with its reason (docs/reference-differences.md says more).
Where chatwsgi differs and should not, the test asserts the reference's behaviour and is
marked with one of ``BUGS``, so it starts passing, and must be unmarked, once fixed.

Run: ``make thirdparty`` (installs Node and the npm packages first), or
``.venv/bin/python -m pytest tests/thirdparty/test_reference.py``.
"""

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, quote_plus

import gevent
import pytest
from gevent import socket, subprocess

from chatwsgi import make_app, make_server, protocol
from tests.support import sioclient
from tests.support.chatting import wait_until
from tests.support.sioclient import HTTPResponse, SocketIOClient, WebSocketConnection, http

pytestmark = pytest.mark.live

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "reference_server.js"
REFERENCE_PACKAGE = HERE / "node_modules" / "socket.io" / "package.json"
NODE_DEPS = "tests/thirdparty/node_modules/.installed"
TRANSPORTS = "websocket,xhr-polling,jsonp-polling"
SESSION_ID_ALPHABET = re.compile(r"[A-Za-z0-9_-]+")
HANDSHAKE_RE = re.compile(r"([^:]+):([0-9]*):([0-9]*):(.*)")
JSONP_RE = re.compile(r"io\.j\[([0-9]+)\]\((\".*\")\);", re.S)

# Settings on both sides. QUIET: heartbeats and timeouts out of the way, short polls.
QUIET = {"heartbeat_interval": 25, "heartbeat_timeout": 60, "close_timeout": 60, "poll_duration": 0.5}
# BRISK: timings short enough to measure.
BRISK = {"heartbeat_interval": 0.5, "heartbeat_timeout": 2, "close_timeout": 2, "poll_duration": 1}
# Ours only: the session tender visits every session every 50 ms, so heartbeats and timeouts
# fire when due, as the reference's per-session timers do.
OUR_TENDER = {"tend_interval": 0.05, "tend_slices": 1}
brisk = pytest.mark.parametrize("server_settings", [BRISK], indirect=True, ids=["brisk"])
REFERENCE_FLAGS = {
    "heartbeat_interval": "--heartbeat-interval",
    "heartbeat_timeout": "--heartbeat-timeout",
    "close_timeout": "--close-timeout",
    "poll_duration": "--polling-duration",
}


@dataclass(frozen=True)
class Difference:
    """What each side does where chatwsgi differs from the reference on purpose, and why."""

    reference: object
    chatwsgi: object
    why: str


UNKNOWN_SESSION_REFUSAL = (400, b"Unknown or expired session: handshake again.\n")
DIFFERENCES = {
    "origin_handshake": Difference(
        reference=200,
        chatwsgi=403,
        why="ours allows only the request's own host or the allow-list; the reference's default "
        "origins '*:*' lets any page use a visitor's session",
    ),
    "origin_after_handshake": Difference(
        reference=(200, 101),
        chatwsgi=(403, 403),
        why="the reference checks Origin at the handshake (and on the websocket upgrade) only; ours "
        "on every Socket.IO request, so a session id alone is not enough from another site",
    ),
    "session_id": Difference(
        reference=20,
        chatwsgi=24,
        why="ours are 144 random bits (B13); the reference's are 96 random bits plus a counter",
    ),
    "jsonp_handshake_type": Difference(
        reference="application/javascript",
        chatwsgi="text/javascript",
        why="both run as scripts; text/javascript is the registered type (RFC 9239)",
    ),
    "advertised_by_default": Difference(
        reference="websocket,htmlfile,xhr-polling,jsonp-polling",
        chatwsgi=TRANSPORTS,
        why="htmlfile needs ActiveX (B8); ours advertises only what current browsers use",
    ),
    "unadvertised_transport": Difference(
        reference=None,  # the connection is closed without an answer
        chatwsgi=(400, b"Transport not supported: %s.\n"),  # % the transport
        why="a clear refusal rather than a dropped connection (B12)",
    ),
    "protocol_version": Difference(
        reference=(500, b"Protocol version not supported."),
        chatwsgi=(400, b"Not a Socket.IO 0.9 URL.\n"),
        why="a client's mistake is a 4xx",
    ),
    "unknown_session": Difference(
        reference={
            "xhr GET": (200, b"7:::1+0"),
            "jsonp GET": (200, b'io.j[0]("7:::1+0");'),
            "POST": (200, b"1"),
            "disconnect": (200, b""),
        },
        chatwsgi=dict.fromkeys(("xhr GET", "jsonp GET", "POST", "disconnect"), UNKNOWN_SESSION_REFUSAL),
        why="one answer for every unknown id, so ids cannot be probed; the client reconnects "
        "either way (error packet 'client not handshaken' + 'reconnect', or a failed request)",
    ),
    "packet_json": Difference(
        reference="raw",
        chatwsgi="ascii",
        why="ours writes JSON ASCII-only (\\uXXXX), safe in every transport; the values are equal",
    ),
    "jsonp_forms": Difference(
        # How each character of a server-sent event's string is written in the jsonp script. Ours
        # is escaped twice: in the packet's JSON (ASCII-only), then in the script's string.
        reference={
            "\ufffd": "\ufffd",
            "\u00e9": "\u00e9",
            "\U0001f600": "\U0001f600",
            "\u2028": "\u2028",
            "</script>": "</script>",
        },
        chatwsgi={
            "\ufffd": "\\\\ufffd",
            "\u00e9": "\\\\u00e9",
            "\U0001f600": "\\\\ud83d\\\\ude00",
            "\u2028": "\\\\u2028",
            "</script>": "<\\/script>",
        },
        why="ours is ASCII but for the frame marks: a raw U+2028 in a script is a syntax error "
        "for engines before ES2019, and '<\\/' keeps the script inert if inlined in HTML",
    ),
    "concurrent_polls": Difference(
        reference={"first": None, "second": "packet"},
        chatwsgi={"first": "packet", "second": "8::"},
        why="the reference hands the session to the newest poll and never answers the older "
        "one; ours answers every poll, packets to the oldest waiting",
    ),
    "packet_while_poll_abandoned": Difference(
        reference="8::",  # the packet went into the closed connection: lost
        chatwsgi="packet",
        why="ours notices a poll's connection closing and keeps the packet for the next poll",
    ),
    "disconnect_without_poll": Difference(
        reference=True,
        chatwsgi=False,
        why="the reference forwards ?disconnect only to a held poll, so with none it is lost "
        "and the session lives until the close timeout; ours ends it at once",
    ),
    "polling_heartbeats": Difference(
        reference=None,  # never
        chatwsgi=BRISK["heartbeat_interval"],  # seconds apart
        why="inherited from gevent-socketio: heartbeats go to every session; a polling client "
        "answers them like any packet (the reference counts on each poll's noop instead)",
    ),
    "silent_websocket": Difference(
        # Seconds from the client's last packet (its 1::/chat) to the end of its session.
        reference=BRISK["heartbeat_interval"] + BRISK["heartbeat_timeout"],
        chatwsgi=BRISK["heartbeat_timeout"],
        why="ours counts the timeout from the client's last packet, the reference from the "
        "heartbeat left unanswered",
    ),
    "transport_switch": Difference(
        reference=None,  # the request takes the session over
        chatwsgi=b"This session is connected over %s: handshake again to use %s.\n",  # a 409
        why="a session belongs to the transport it connected on: another could steal or silence "
        "it (a websocket whose id leaked went deaf after one xhr POST); a second upgrade is "
        "refused too. The 0.9 client never changes transport within a session",
    ),
    "malformed_jsonp_post": Difference(
        reference="crash",
        chatwsgi="error event",
        why="the reference throws an uncaught exception and its process ends (it writes its parse "
        "error to a POST it already answered, or its parser meets a non-string); ours keeps the "
        "session and sends an invalid_packet error event",
    ),
    "body_limit": Difference(
        reference=(200, b"1"),
        chatwsgi=(413, b"A request body has at most 1048576 bytes.\n"),
        why="ours caps bodies at 1 MiB (max_body_bytes); the reference's 'destroy buffer size' is 100 MB",
    ),
}

# Where chatwsgi differs and should not (the tests assert the reference's behaviour, and
# bug(name) marks our side xfail until fixed). The three found so far are fixed: a namespace
# disconnect ending the whole session, events handled before 1::/chat, and no 0:: when a
# session is ended on purpose.
BUGS = {}


def test_every_listed_difference_is_asserted():
    source = Path(__file__).read_text()
    unused = [name for name in {**DIFFERENCES, **BUGS} if source.count('"%s"' % name) < 2]
    assert not unused


def bug(name):
    """The chatwsgi half of a comparison that fails until BUGS[name] is fixed."""
    return pytest.param("chatwsgi", marks=pytest.mark.xfail(strict=True, reason=BUGS[name]))


def expected(target, name):
    """This target's side of DIFFERENCES[name]."""
    return getattr(DIFFERENCES[name], target.name)


# --- HTTP ------------------------------------------------------------------------------------


def read_response(sock):
    """Read one response: to its Content-Length, its last chunk, or the end of the connection.

    The reference answers polls with ``Connection: Keep-Alive`` even when asked to close, and
    its handshake is chunked: reading to the end of the connection would wait for Node's
    keep-alive timeout (5 s) and return the chunk framing.
    """
    data = b""
    while b"\r\n\r\n" not in data:
        data = _more(sock, data, "closed without a response")
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        size = int(headers["content-length"])
        while len(rest) < size:
            rest = _more(sock, rest, "closed inside the body")
        body = rest[:size]
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        body = _read_chunks(sock, rest)
    else:
        body = rest
        while chunk := sock.recv(65536):
            body += chunk
    return HTTPResponse(int(status_line.split()[1]), headers, body)


def _more(sock, data, failure):
    chunk = sock.recv(65536)
    if not chunk:
        raise ConnectionError("%s: %r" % (failure, data[:80]))
    return data + chunk


def _read_chunks(sock, data):
    body = b""
    while True:
        while b"\r\n" not in data:
            data = _more(sock, data, "closed inside a chunked body")
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return body
        while len(data) < size + 2:
            data = _more(sock, data, "closed inside a chunk")
        body, data = body + data[:size], data[size + 2 :]


@pytest.fixture(autouse=True)
def whole_responses(monkeypatch):
    """Make the shared raw client read responses by their length (see read_response)."""
    monkeypatch.setattr(sioclient, "read_response", read_response)


def answer(address, method, path, body=b"", headers=None):
    """(status, body) of one request, or None when the server closes without answering."""
    try:
        reply = http(address, method, path, body, headers)
    except ConnectionError:
        return None
    return reply.status, reply.body


# --- The two servers -------------------------------------------------------------------------


class ReferenceServer:
    """``node reference_server.js`` with some flags; it exits when we close its stdin."""

    def __init__(self, flags=()):
        if not REFERENCE_PACKAGE.exists():
            raise RuntimeError("npm socket.io 0.9.16 is missing: make %s" % NODE_DEPS)
        self.errors = b""  # its stderr, once stopped
        self.process = subprocess.Popen(
            ["node", str(SCRIPT), *flags],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        with gevent.Timeout(15, RuntimeError("the reference server did not say its port")):
            line = self.process.stdout.readline()
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError("the reference server said %r, then %r" % (line, self.errors))
        self.address = ("127.0.0.1", int(line))

    def get(self, path):
        """One of the script's JSON views (/sessions, /settings)."""
        return json.loads(http(self.address, "GET", path).body)

    def stop(self):
        """Close stdin (the script exits), kill it if it does not; its exit code."""
        if self.process.stdin and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.errors = self.process.stderr.read()
        self.process.stderr.close()
        self.process.stdout.close()
        return code


def reference_flags(settings):
    """Command-line flags giving the reference the same settings as our server."""
    flags = ["--transports", TRANSPORTS]
    for name, flag in REFERENCE_FLAGS.items():
        flags += [flag, str(settings[name])]
    return flags


@pytest.fixture(scope="module")
def references():
    """Reference servers by flags, started on first use and stopped after the module."""
    started = {}

    def reference(flags):
        key = tuple(flags)
        if key not in started:
            started[key] = ReferenceServer(key)
        return started[key]

    yield reference
    for server in started.values():
        server.stop()


class Target:
    """One server under comparison, with its application's way to answer the same requests."""

    name = ""

    def __init__(self, address):
        self.address = address

    def exists(self, sid):
        """Whether the server still has session ``sid``."""
        raise NotImplementedError

    def holds(self, sid, tag, count):
        """Whether the server holds the poll tagged ``tag`` (the ``count``-th held at once)."""
        raise NotImplementedError

    def ping(self, n):
        """A packet with id ``n`` that the /chat namespace acknowledges."""
        raise NotImplementedError

    def say(self, n, text):
        """A packet with id ``n`` making the server send back a ``message`` event with {text}."""
        raise NotImplementedError

    def prepare(self, sid):
        """Packets a new /chat connection sends before ``say`` works (each acknowledged)."""
        return []

    def end_by_server(self, client):
        """Make the server end ``client``'s session, as the application may."""
        raise NotImplementedError


class Reference(Target):
    """The reference: /chat answers ``echo`` and ``emit`` (see reference_server.js)."""

    name = "reference"

    def __init__(self, server):
        super().__init__(server.address)
        self.server = server

    def exists(self, sid):
        return sid in self.server.get("/sessions")["handshaken"]

    def holds(self, sid, tag, count):
        return tag in (self.server.get("/sessions")["open"].get(sid) or "")

    def ping(self, n):
        return event_packet(n, "echo", "ping")

    def say(self, n, text):
        return event_packet(n, "emit", {"name": "message", "args": [{"text": text}]})

    def end_by_server(self, client):
        client.send(event_packet(1, "boot"))


class Chatwsgi(Target):
    """Our chat: /chat acknowledges ``rooms``; a ``message`` to a joined room comes back."""

    name = "chatwsgi"

    def __init__(self, server):
        super().__init__(server.address[:2])
        self.server = server

    def exists(self, sid):
        return sid in self.server.sockets

    def holds(self, sid, tag, count):
        session = self.server.sockets.get(sid)
        return session is not None and session.polls_open == count

    def ping(self, n):
        return event_packet(n, "rooms", {})

    def say(self, n, text):
        return event_packet(n, "message", {"room": "lobby", "id": "m%d" % n, "text": text})

    def prepare(self, sid):
        nickname = event_packet(1001, "nickname", {"nickname": "u" + sid[:8]})
        return [nickname, event_packet(1002, "join", {"room": "lobby"})]

    def end_by_server(self, client):
        # A newer connection reclaims the nickname with its token: the chat ends the old one.
        token = client.call("nickname", {"nickname": "bob"})["token"]
        newer = Client(self.address, "websocket").connect()
        assert newer.call("nickname", {"nickname": "bob", "token": token})["ok"]
        newer.close()


def event_packet(n, name, *args):
    """An event on /chat asking for a data ack, its JSON not escaped to ASCII (as JS writes it)."""
    return "5:%d+:/chat:%s" % (n, json.dumps({"name": name, "args": list(args)}, ensure_ascii=False))


@pytest.fixture
def server_settings(request):
    """Our server gets the settings the test's reference gets (QUIET unless parametrised)."""
    return dict(getattr(request, "param", QUIET), **OUR_TENDER)


@pytest.fixture(params=["reference", "chatwsgi"])
def target(request, server_settings, references):
    """Each server in turn, with the same settings."""
    if request.param == "reference":
        return Reference(references(reference_flags(server_settings)))
    return Chatwsgi(request.getfixturevalue("server"))


# --- Clients ---------------------------------------------------------------------------------


def is_ack(n):
    """A predicate: the text is the ack of packet ``n``."""

    def matches(text):
        packet = decode(text)
        return packet["type"] == "ack" and packet["ackId"] == n

    return matches


def decode(text):
    """A packet dict, or {"type": "unparsable"} (never raises)."""
    try:
        return protocol.decode_packet(text)
    except protocol.ProtocolError:
        return {"type": "unparsable", "endpoint": ""}


def message_texts(texts):
    """The {text} of every ``message`` event among packet texts, in order."""
    packets = [decode(text) for text in texts]
    return [p["args"][0]["text"] for p in packets if p["type"] == "event" and p["name"] == "message"]


class PollingSession:
    """A session driven by hand over xhr- or jsonp-polling: every GET and POST when the test says."""

    def __init__(self, target, transport="xhr-polling", index=0, sid=None):
        """A new session, or session ``sid`` over this transport."""
        self.target, self.transport, self.index = target, transport, index
        if sid is None:
            reply = http(target.address, "GET", "/socket.io/1/?t=1")
            assert reply.status == 200, (reply.status, reply.body)
            sid = reply.text.split(":")[0]
        self.sid = sid
        self.received = []  # packet texts, in arrival order
        self.bodies = []  # raw GET bodies, in arrival order

    def path(self, query="t=1"):
        """This session's transport URL with ``query`` (and the jsonp index)."""
        parts = [query] if query else []
        if self.transport == "jsonp-polling":
            parts.append("i=%d" % self.index)
        return "/socket.io/1/%s/%s?%s" % (self.transport, self.sid, "&".join(parts))

    def open(self):
        """Connect the session and /chat, then whatever the target needs before ``say``."""
        assert self.poll() == ["1::"]
        self.post("1::/chat")
        self.receive_until(lambda text: text == "1::/chat")
        for packet in self.target.prepare(self.sid):
            self.post(packet)
            self.receive_until(is_ack(decode(packet)["id"]))
        return self

    def unwrap(self, body):
        """The polling payload in a GET body (the string inside the jsonp script)."""
        text = body.decode("utf-8")
        if self.transport != "jsonp-polling":
            return text
        match = JSONP_RE.fullmatch(text)
        assert match and int(match.group(1)) == self.index, text[:80]
        return json.loads(match.group(2))

    def poll(self, query="t=1"):
        """One GET; the packet texts it brought."""
        reply = http(self.target.address, "GET", self.path(query))
        assert reply.status == 200, (reply.status, reply.body)
        self.bodies.append(reply.body)
        texts = protocol.decode_payload(self.unwrap(reply.body))
        self.received += texts
        return texts

    def post(self, *texts, form=None):
        """POST packets (framed when several) the way this transport does; the reply."""
        payload = protocol.encode_payload(list(texts))
        if self.transport == "jsonp-polling":
            body = (form or "d=" + quote(json.dumps(payload))).encode()
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
        else:
            body, headers = payload.encode("utf-8"), {"Content-Type": "text/plain;charset=UTF-8"}
        return http(self.target.address, "POST", self.path(), body, headers)

    def receive_until(self, predicate, timeout=5):
        """Poll until a packet text matching ``predicate`` arrives; it."""
        deadline = time.monotonic() + timeout
        start = len(self.received)
        while True:
            for text in self.received[start:]:
                if predicate(text):
                    return text
            if time.monotonic() > deadline:
                raise TimeoutError("no matching packet; got %r" % self.received[-10:])
            self.poll()

    def hold(self, tag, count=1):
        """Send a GET tagged ``tag`` and leave it held by the server; its socket."""
        held = socket.create_connection(self.target.address)
        held.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % self.path("t=" + tag)).encode())
        wait_until(lambda: self.target.holds(self.sid, "t=" + tag, count), timeout=5)
        return held


def held_answer(held, timeout):
    """The body a held poll was answered with, or None if none came within ``timeout``."""
    held.settimeout(timeout)
    try:
        return read_response(held).body
    except (TimeoutError, ConnectionError):
        return None
    finally:
        held.close()


class Client(SocketIOClient):
    """The shared raw client, optionally deaf to heartbeats."""

    def __init__(self, address, transport, answer_heartbeats=True):
        super().__init__(address, transport)
        self.answer_heartbeats = answer_heartbeats

    def _send_quietly(self, text):
        if self.answer_heartbeats or text != protocol.HEARTBEAT:
            super()._send_quietly(text)

    def heard_after(self, moment, timeout):
        """Wait for a packet arriving after ``moment`` (time.monotonic()): the session was alive."""
        deadline = time.monotonic() + timeout
        while not (self.arrived and self.arrived[-1] > moment):
            assert not self.closed, "closed; got %r" % self.raw[-5:]
            assert time.monotonic() < deadline, "nothing heard; got %r" % self.raw[-5:]
            self.changed.clear()
            self.changed.wait(0.2)

    def gaps(self, text):
        """Seconds between consecutive arrivals of the packet ``text``."""
        times = [t for t, raw in zip(self.arrived, self.raw, strict=True) if raw == text]
        return [later - earlier for earlier, later in zip(times, times[1:], strict=False)]


# --- Handshake -------------------------------------------------------------------------------


def test_handshake_fields(target):
    reply = http(target.address, "GET", "/socket.io/1/?t=1")
    assert reply.status == 200
    assert reply.headers["content-type"] == "text/plain"
    sid, heartbeat, close, transports = HANDSHAKE_RE.fullmatch(reply.text).groups()
    assert (heartbeat, close, transports) == ("60", "60", TRANSPORTS)
    assert SESSION_ID_ALPHABET.fullmatch(sid)
    assert len(sid) == expected(target, "session_id")
    # The resource without its trailing slash is a handshake too.
    assert HANDSHAKE_RE.fullmatch(http(target.address, "GET", "/socket.io/1").text)


def test_jsonp_handshake(target):
    reply = http(target.address, "GET", "/socket.io/1/?t=1&jsonp=3")
    assert reply.status == 200
    assert reply.headers["content-type"] == expected(target, "jsonp_handshake_type")
    index, literal = JSONP_RE.fullmatch(reply.text).groups()
    assert index == "3"
    assert HANDSHAKE_RE.fullmatch(json.loads(literal)).group(4) == TRANSPORTS
    # A callback index that is not a number gets the plain form.
    assert HANDSHAKE_RE.fullmatch(http(target.address, "GET", "/socket.io/1/?jsonp=x").text)


def test_default_settings(references):
    """Defaults as the reference's manager.js: heartbeats 25 s, timeouts 60 s, polls 20 s."""
    reference = references([])
    settings = reference.get("/settings")
    assert settings["heartbeat interval"] == 25 and settings["polling duration"] == 20
    reference_handshake = http(reference.address, "GET", "/socket.io/1/").text
    ours = make_server(make_app(), host="127.0.0.1", port=0)
    ours.start()
    try:
        our_handshake = http(ours.address[:2], "GET", "/socket.io/1/").text
        assert ours.config["heartbeat_interval"] == 25 and ours.config["poll_duration"] == 20
    finally:
        ours.stop(timeout=1)
    _, *reference_fields = HANDSHAKE_RE.fullmatch(reference_handshake).groups()
    _, *our_fields = HANDSHAKE_RE.fullmatch(our_handshake).groups()
    assert reference_fields[:2] == our_fields[:2] == ["60", "60"]
    difference = DIFFERENCES["advertised_by_default"]
    assert (reference_fields[2], our_fields[2]) == (difference.reference, difference.chatwsgi)


# --- Origin ----------------------------------------------------------------------------------


def test_a_foreign_origin_at_the_handshake(target):
    reply = http(target.address, "GET", "/socket.io/1/", headers={"Origin": "http://evil.example"})
    assert reply.status == expected(target, "origin_handshake")


def test_the_npm_clients_origin_without_a_scheme(target):
    # socket.io-client 0.9 under Node (through ws 0.4) sends the Host it connects to, bare.
    origin = "%s:%d" % target.address
    reply = http(target.address, "GET", "/socket.io/1/", headers={"Origin": origin})
    assert reply.status == 200


def test_a_foreign_origin_after_the_handshake(target):
    session = PollingSession(target).open()
    foreign = {"Origin": "http://evil.example"}
    poll = http(target.address, "GET", session.path(), headers=foreign).status
    upgrade = WebSocketConnection(
        target.address, "/socket.io/1/websocket/" + session.sid, origin=foreign["Origin"]
    )
    upgrade.sock.close()
    assert (poll, upgrade.status) == expected(target, "origin_after_handshake")


# --- Heartbeats ------------------------------------------------------------------------------


@brisk
def test_websocket_heartbeats(target):
    """Heartbeats every interval; a client answering them outlives both timeouts."""
    client = Client(target.address, "websocket").connect()
    connected = time.monotonic()
    client.heard_after(connected + BRISK["heartbeat_timeout"] + BRISK["heartbeat_interval"], timeout=5)
    gaps = client.gaps(protocol.HEARTBEAT)
    assert len(gaps) >= 4
    interval = BRISK["heartbeat_interval"]
    assert all(interval - 0.02 < gap < interval + 0.25 for gap in gaps), gaps
    assert target.exists(client.session_id)
    client.send(target.ping(77))
    client.wait_for(lambda packet: packet["type"] == "ack" and packet["ackId"] == 77)
    client.close()


@brisk
def test_polling_heartbeats(target):
    """A polling client outlives both timeouts; only ours sends it heartbeats."""
    client = Client(target.address, "xhr-polling").connect()
    connected = time.monotonic()
    client.heard_after(connected + BRISK["heartbeat_timeout"] + BRISK["heartbeat_interval"], timeout=5)
    assert target.exists(client.session_id)
    gap = expected(target, "polling_heartbeats")
    if gap is None:
        assert protocol.HEARTBEAT not in client.raw
        assert protocol.NOOP in client.raw  # each poll ends with a noop instead
    else:
        assert client.raw.count(protocol.HEARTBEAT) >= 4
        assert all(gap - 0.02 < each < gap + 0.25 for each in client.gaps(protocol.HEARTBEAT))
    client.close()


@brisk
def test_a_websocket_client_deaf_to_heartbeats_is_dropped(target):
    client = Client(target.address, "websocket", answer_heartbeats=False).connect()
    last_sent = time.monotonic()  # the client's last packet: its 1::/chat
    wait_until(lambda: client.closed, timeout=6)
    silence = time.monotonic() - last_sent
    client.close()
    assert not target.exists(client.session_id)
    ends_after = expected(target, "silent_websocket")
    assert ends_after - 0.1 < silence < ends_after + 0.4, silence


@brisk
def test_a_polling_client_that_stops_polling_is_dropped_after_the_close_timeout(target):
    session = PollingSession(target).open()
    last_poll = time.monotonic()
    wait_until(lambda: not target.exists(session.sid), timeout=6)
    silence = time.monotonic() - last_poll
    assert BRISK["close_timeout"] - 0.1 < silence < BRISK["close_timeout"] + 0.4, silence


# --- Disconnect ------------------------------------------------------------------------------

DISCONNECT_FORMS = {
    "?disconnect=1": ("GET", "xhr-polling/{sid}?disconnect=1", b""),  # the JS client
    "?t=...&disconnect=True": ("GET", "xhr-polling/{sid}?t=123&disconnect=True", b""),  # PyPI client
    "?disconnect": ("GET", "xhr-polling/{sid}?disconnect", b""),
    "sync XHR": ("GET", "/{sid}/?disconnect=1", b""),  # the JS client's disconnectSync (unload)
    "0:: packet": ("POST", "xhr-polling/{sid}", b"0::"),
}


def send_disconnect(target, session, form):
    """Send one disconnect form for ``session``; (status, body) of its answer."""
    method, path, body = DISCONNECT_FORMS[form]
    return answer(target.address, method, "/socket.io/1/" + path.format(sid=session.sid), body)


@pytest.mark.parametrize("form", DISCONNECT_FORMS)
def test_a_disconnect_ends_the_session_at_once(target, form):
    session = PollingSession(target).open()
    held = session.hold("held")
    status, body = send_disconnect(target, session, form)
    assert (status, body) == (200, b"1" if form == "0:: packet" else b"")
    wait_until(lambda: not target.exists(session.sid), timeout=1)
    held.close()


@pytest.mark.parametrize("form", ["?disconnect=1", "0:: packet"])
def test_a_held_poll_hears_the_session_end(target, form):
    session = PollingSession(target).open()
    held = session.hold("held")
    send_disconnect(target, session, form)
    assert held_answer(held, timeout=2) == b"0::"


def test_a_websocket_hears_the_session_end(target):
    client = Client(target.address, "websocket").connect()
    client.disconnect()
    wait_until(lambda: client.closed, timeout=2)
    client.close()
    assert client.raw[-1] == "0::"


def test_a_session_the_server_ends_hears_it(target):
    client = Client(target.address, "websocket").connect()
    target.end_by_server(client)
    wait_until(lambda: client.closed, timeout=2)
    client.close()
    assert client.raw[-1] == "0::"


def test_a_disconnect_while_no_poll_is_held(target):
    session = PollingSession(target).open()
    assert send_disconnect(target, session, "?disconnect=1") == (200, b"")
    if target.exists(session.sid):
        # Still there after the disconnect was answered: it still works, too.
        session.post(target.ping(7))
        session.receive_until(is_ack(7))
    assert target.exists(session.sid) is expected(target, "disconnect_without_poll")


def test_a_namespace_disconnect_leaves_the_session(target):
    session = PollingSession(target).open()
    assert session.post("0::/chat").body == b"1"
    session.post("1::/chat")  # connect again: answered only if the session lived on
    session.receive_until(lambda text: text == "1::/chat", timeout=2)
    assert target.exists(session.sid)


def test_an_event_to_a_namespace_never_connected_is_not_handled(target):
    session = PollingSession(target)
    assert session.poll() == ["1::"]
    session.post(target.ping(7))
    session.post("1::/chat")  # answered after anything the event caused: packets stay in order
    session.receive_until(lambda text: text == "1::/chat")
    assert not [text for text in session.received if is_ack(7)(text)]


# --- Long polling ----------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["xhr-polling", "jsonp-polling"])
def test_an_empty_poll_ends_with_a_noop_after_the_poll_duration(target, transport):
    session = PollingSession(target, transport).open()
    started = time.monotonic()
    assert session.poll() == [protocol.NOOP]
    elapsed = time.monotonic() - started
    assert QUIET["poll_duration"] - 0.05 < elapsed < QUIET["poll_duration"] + 0.3, elapsed


def test_posted_frames_count_utf16_units(target):
    """Frames with an emoji (2 UTF-16 units) and U+FFFD inside a string arrive whole."""
    session = PollingSession(target).open()
    texts = ["\U0001f600 a\ufffdb", "\u00e9\ufffd12\ufffd\u2028</script>", "\ufffd"]
    reply = session.post(*[target.say(10 + i, text) for i, text in enumerate(texts)])
    assert (reply.status, reply.body) == (200, b"1")
    session.receive_until(is_ack(12))
    assert message_texts(session.received) == texts
    framed = [body for body in session.bodies if body.startswith(protocol.FRAME_MARK.encode())]
    assert framed, "several packets were queued, so some poll carried several frames"
    for body in session.bodies:  # lengths in UTF-16 units: the framing round-trips exactly
        payload = session.unwrap(body)
        assert protocol.encode_payload(protocol.decode_payload(payload)) == payload
    assert packet_json_style(session.received) == expected(target, "packet_json")


def packet_json_style(texts):
    """'raw' when event JSON carries non-ASCII as itself, 'ascii' when escaped."""
    events = [text for text in texts if text.startswith("5:") and "message" in text]
    return "ascii" if all(text.isascii() for text in events) else "raw"


def test_a_second_poll_on_one_session(target):
    session = PollingSession(target).open()
    first = session.hold("first", count=1)
    second = session.hold("second", count=2)
    session.post(target.ping(7))
    timeout = 2 * QUIET["poll_duration"] + 0.5
    answers = [gevent.spawn(held_answer, held, timeout) for held in (first, second)]
    gevent.joinall(answers)
    described = [describe_answer(greenlet.value, is_ack(7)) for greenlet in answers]
    assert dict(zip(("first", "second"), described, strict=True)) == expected(target, "concurrent_polls")


def describe_answer(body, wanted):
    """None for no answer, "packet" for the ``wanted`` packet, else the body's text."""
    if body is None:
        return None
    return "packet" if wanted(body.decode()) else body.decode()


def test_an_abandoned_poll_leaves_the_next_packet_to_the_new_poll(target):
    session = PollingSession(target).open()
    session.hold("abandoned").close()  # the client gave up on it
    wait_for_abandoned_poll(target, session)
    live = session.hold("live")
    session.post(target.ping(7))
    started = time.monotonic()
    body = held_answer(live, timeout=2)
    assert is_ack(7)(body.decode()), body
    assert time.monotonic() - started < QUIET["poll_duration"]  # the packet, not the poll's end


def wait_for_abandoned_poll(target, session):
    # Ours notices the hang-up; the reference never does (it took away its close listener for
    # polls), so there is nothing to wait for there.
    if target.name == "chatwsgi":
        wait_until(lambda: target.holds(session.sid, "", 0), timeout=2)


def test_a_packet_sent_while_the_only_poll_was_abandoned(target):
    session = PollingSession(target).open()
    session.hold("abandoned").close()
    wait_for_abandoned_poll(target, session)
    session.post(target.ping(7))
    texts = session.poll()
    outcome = "packet" if any(is_ack(7)(text) for text in texts) else ",".join(texts)
    assert outcome == expected(target, "packet_while_poll_abandoned")


def test_an_unknown_session_id(target):
    sid = "x" * 24
    seen = {
        "xhr GET": answer(target.address, "GET", "/socket.io/1/xhr-polling/%s?t=1" % sid),
        "jsonp GET": answer(target.address, "GET", "/socket.io/1/jsonp-polling/%s?i=0" % sid),
        "POST": answer(target.address, "POST", "/socket.io/1/xhr-polling/%s" % sid, b"2::"),
        "disconnect": answer(target.address, "GET", "/socket.io/1/xhr-polling/%s?disconnect=1" % sid),
    }
    assert seen == expected(target, "unknown_session")


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("xhr-polling", "jsonp-polling"),
        ("xhr-polling", "websocket"),
        ("websocket", "xhr-polling"),
        ("websocket", "websocket"),
    ],
)
def test_another_transport_on_a_connected_session(target, first, second):
    sid, closer = connect_over(target, first)
    try:
        seen = first_request_over(target, sid, second)
    finally:
        closer()
    refusal = expected(target, "transport_switch")
    if refusal is None:  # taken over
        assert seen == (101 if second == "websocket" else 200, None)
    elif first == second:
        assert seen == (409, b"This session already has its websocket: handshake again.\n")
    else:
        assert seen == (409, refusal % (first.encode(), second.encode()))


def connect_over(target, transport):
    """A session connected over ``transport``; (its id, a function closing the client side)."""
    if transport != "websocket":
        session = PollingSession(target, transport).open()
        return session.sid, lambda: None
    sid = PollingSession(target).sid  # handshake only
    websocket = WebSocketConnection(target.address, "/socket.io/1/websocket/" + sid)
    assert websocket.recv_frame() == (1, b"1::")
    return sid, websocket.close


def first_request_over(target, sid, transport):
    """(status, body) of a transport's first request on session ``sid`` (body None if it worked)."""
    if transport == "websocket":
        upgrade = WebSocketConnection(target.address, "/socket.io/1/websocket/" + sid)
        try:
            if upgrade.status == 101:
                return 101, None
            return upgrade.status, read_response_body(upgrade)
        finally:
            upgrade.sock.close()
    path = PollingSession(target, transport, sid=sid).path()
    status, body = answer(target.address, "GET", path)
    return status, None if status == 200 else body


def read_response_body(connection):
    """The rest of a refused upgrade's response: its body (the head was read already)."""
    body = connection.buffer
    connection.sock.settimeout(2)
    while chunk := connection.sock.recv(65536):
        body += chunk
    return body


@pytest.mark.parametrize("transport", ["htmlfile", "flashsocket", "xhr-multipart"])
def test_an_unadvertised_transport_on_a_live_session(target, transport):
    session = PollingSession(target).open()
    seen = answer(target.address, "GET", "/socket.io/1/%s/%s" % (transport, session.sid))
    refusal = expected(target, "unadvertised_transport")
    if refusal is not None:
        refusal = (refusal[0], refusal[1] % transport.encode())
    assert seen == refusal
    assert target.exists(session.sid)


def test_a_protocol_version_other_than_1(target):
    assert answer(target.address, "GET", "/socket.io/2/") == expected(target, "protocol_version")


def test_a_body_over_our_limit(target):
    session = PollingSession(target).open()
    body = b"3:::" + b"x" * (2 * 1024 * 1024)
    assert answer(target.address, "POST", session.path(), body) == expected(target, "body_limit")


# --- JSONP -----------------------------------------------------------------------------------

# Characters written the same way by both, as they appear in the jsonp script: escaped once in
# the packet's JSON and once more in the script's string.
SAME_FORMS = {'"': '\\\\\\"', "\n": "\\\\n", "\\": "\\\\\\\\", "a": "a"}


def test_jsonp_script_form_and_escapes(target):
    session = PollingSession(target, "jsonp-polling", index=7).open()
    differing = expected(target, "jsonp_forms")
    characters = [*differing, *SAME_FORMS]
    posted = [target.say(10 + i, "@@%s##" % c) for i, c in enumerate(characters)]
    assert session.post(*posted).body == b"1"
    session.bodies.clear()
    session.receive_until(is_ack(9 + len(characters)))
    forms = []
    for body in session.bodies:
        literal = JSONP_RE.fullmatch(body.decode("utf-8")).group(2)
        packets = protocol.decode_payload(json.loads(literal))
        # Frame marks are written raw on both: U+FFFD escaped would hide them from clients
        # that split frames before unescaping (PyPI socketIO-client).
        frames = 2 * len(packets) if len(packets) > 1 else 0
        inside = sum(packet.count("\ufffd") for packet in packets)
        assert literal.count("\ufffd") == frames + inside
        forms += re.findall("@@(.*?)##", literal, re.S)
    assert forms == [differing.get(c, SAME_FORMS.get(c)) for c in characters]
    assert message_texts(session.received) == ["@@%s##" % c for c in characters]


@pytest.mark.parametrize(
    "encode",
    [
        pytest.param(lambda payload: "d=" + quote(json.dumps(payload)), id="percent-encoded"),
        pytest.param(lambda payload: "d=" + quote_plus(json.dumps(payload)), id="form-encoded"),
        pytest.param(lambda payload: "x=1&d=%s&y=2" % quote(json.dumps(payload)), id="among-fields"),
    ],
)
def test_jsonp_post_forms(target, encode):
    session = PollingSession(target, "jsonp-polling").open()
    reply = session.post(form=encode(target.say(7, "a b+c")))
    assert (reply.status, reply.body) == (200, b"1")
    assert reply.headers["content-type"] == "text/plain; charset=UTF-8"
    session.receive_until(is_ack(7))
    assert message_texts(session.received) == ["a b+c"]


@pytest.mark.parametrize(
    ("form", "uncaught"),
    [
        pytest.param("x=1", b"ERR_HTTP_HEADERS_SENT", id="no-d"),
        pytest.param("d=%7Bnot", b"ERR_HTTP_HEADERS_SENT", id="not-json"),
        pytest.param("d=" + quote('{"a": 1}'), b"data.match is not a function", id="not-a-string"),
    ],
)
def test_a_malformed_jsonp_post(server_settings, form, uncaught, server):
    """Each side on its own server: the reference does not survive this."""
    reference = ReferenceServer(reference_flags(server_settings))
    outcomes = {}
    try:
        for target in (Reference(reference), Chatwsgi(server)):
            session = PollingSession(target, "jsonp-polling").open()
            reply = session.post(form=form)
            assert (reply.status, reply.body) == (200, b"1")
            outcomes[target.name] = malformed_post_outcome(target, session, reference)
    finally:
        reference.stop()
    difference = DIFFERENCES["malformed_jsonp_post"]
    assert outcomes == {"reference": difference.reference, "chatwsgi": difference.chatwsgi}
    assert uncaught in reference.errors


def malformed_post_outcome(target, session, reference):
    """'crash' when the reference process died, 'error event' when an invalid_packet came."""
    if target.name == "reference":
        try:
            reference.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return "survived"
        return "crash"
    text = session.receive_until(lambda text: "invalid_packet" in text)
    assert decode(text)["name"] == "error" and target.exists(session.sid)
    return "error event"
