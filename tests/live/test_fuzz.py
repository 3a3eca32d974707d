"""Fuzzing one live server: random and mutated Socket.IO packets, payloads, query strings,
headers, bodies and websocket frames over websocket, xhr-polling and jsonp-polling.

Every answer must be below 500, the server must report no traceback and no error (hub
errors, pywsgi's error log, logging at ERROR), and a witness pair of clients connected
before the fuzzing must still chat after it. Bounded to run in well under a minute.
"""

import itertools
import json
import os
import struct
from urllib.parse import quote

import pytest
from gevent import socket
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatwsgi import make_app, make_server, protocol
from tests.conftest import TEST_SERVER_SETTINGS
from tests.support.chatting import TRANSPORTS, chatter, wait_until
from tests.support.faults import Faults, assert_chat_state_back_to_empty
from tests.support.sioclient import SocketIOClient, WebSocketConnection, http

pytestmark = pytest.mark.live

# Examples per fuzz test (raw HTTP gets 3 times as many): CHATWSGI_FUZZ_EXAMPLES=2000 digs deeper.
EXAMPLES = int(os.environ.get("CHATWSGI_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # each example is a few round trips; the bound is max_examples
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

names = itertools.count()


# --- the live server, its faults, the witnesses -------------------------------------------------


@pytest.fixture(scope="module")
def faults():
    recorder = Faults().start()
    yield recorder
    recorder.stop()


@pytest.fixture(scope="module")
def live(faults):
    """(app, server, address) of one server shared by every fuzz test here."""
    app = make_app()
    limits = dict(TEST_SERVER_SETTINGS, request_timeout=2.0, idle_timeout=2.0, max_body_bytes=65536)
    server = make_server(app, port=0, **limits)
    server.start()
    yield app, server, server.address[:2]
    server.stop(timeout=1)


@pytest.fixture(scope="module")
def witnesses(live):
    """Two clients chatting before the fuzzing starts (websocket and xhr-polling)."""
    _, _, address = live
    pair = chatter(address, "witness-ws"), chatter(address, "witness-xhr", "xhr-polling")
    yield pair
    for client in pair:
        client.close()


def assert_witnesses_chat(witnesses, tag):
    """Each witness posts a message and the other receives it."""
    for sender, receiver in (witnesses, witnesses[::-1]):
        text = "%s-%s" % (tag, sender.transport)
        assert sender.call("message", {"room": "lobby", "id": text, "text": text})["ok"]
        receiver.wait_event("message", lambda args, text=text: args[0]["text"] == text)


def assert_server_healthy(live, faults):
    """No fault reported so far, and the server still answers."""
    assert not faults.tracebacks(), faults.tracebacks()[-1]
    assert not faults.errors(), faults.errors()[-3:]
    assert http(live[2], "GET", "/healthz").status == 200


# --- strategies ----------------------------------------------------------------------------------

EVENTS = ["nickname", "join", "leave", "message", "typing", "catch_up", "roster", "rooms"]
EVENTS += ["connect", "disconnect", "error", "newListener", "__proto__", "", "on_nickname"]
ENDPOINTS = ["/chat", "", "/nope", "/chat/", "chat", "/" + "x" * 300]

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
chat_fields = st.sampled_from(["nickname", "room", "id", "text", "after", "epoch", "token"])
requests = st.dictionaries(chat_fields, json_values | st.text(max_size=70), max_size=5)
event_packets = st.builds(
    lambda name, args, msg_id, endpoint: protocol.encode_packet(
        {"type": "event", "name": name, "args": args, "endpoint": endpoint, "id": msg_id, "ack": "data"}
    ),
    st.sampled_from(EVENTS) | st.text(max_size=12),
    st.lists(requests | json_values, max_size=3),
    st.none() | st.integers(min_value=0, max_value=10**12),
    st.sampled_from(ENDPOINTS),
)
other_packets = st.sampled_from(
    ["0::", "0::/chat", "1::/chat", "1::/nope", "2::", "8::", "3:::hi", "3:1:/chat:hi", "4::/chat:{}"]
    + ['4:::{"a":', "6:::1+[1]", "6:::999999999999", "7:::0+0", "9:::", "5:::", "1::/chat:?a=%ff"]
)


@st.composite
def mutated(draw, packets):
    """A packet, cut, spliced or with characters replaced."""
    text = draw(packets)
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        at = draw(st.integers(min_value=0, max_value=len(text)))
        action = draw(st.sampled_from(["cut", "insert", "replace"]))
        piece = draw(st.text(alphabet=':+{}[]",0123456789\\\ufffd\u2028', min_size=1, max_size=5))
        if action == "cut":
            text = text[:at] + text[at + draw(st.integers(min_value=1, max_value=10)) :]
        elif action == "insert":
            text = text[:at] + piece + text[at:]
        else:
            text = text[:at] + piece + text[at + len(piece) :]
    return text


packets = mutated(event_packets | other_packets) | st.text(max_size=60)


@st.composite
def payloads(draw):
    """A polling body: one packet, a framed batch, or a batch with lying frame lengths."""
    batch = draw(st.lists(packets, min_size=1, max_size=4))
    shape = draw(st.sampled_from(["framed", "single", "lying"]))
    if shape == "single":
        return batch[0]
    if shape == "framed":
        return protocol.encode_payload(batch)
    lengths = [draw(st.integers(min_value=-3, max_value=100)) for _ in batch]
    mark = protocol.FRAME_MARK
    frames = zip(lengths, batch, strict=True)
    return "".join("%s%s%s%s" % (mark, length, mark, text) for length, text in frames)


queries = st.lists(
    st.tuples(
        st.sampled_from(["i", "t", "disconnect", "jsonp", "d", "x", ""]),
        st.text(max_size=12) | st.integers(min_value=-5, max_value=10**12).map(str),
    ),
    max_size=4,
).map(lambda pairs: "&".join("%s=%s" % (quote(key), quote(value)) for key, value in pairs))


# --- packets and payloads over each transport ---------------------------------------------------


def fresh_client(address, transport):
    """A new session on ``transport`` with a nickname, in the lobby."""
    return chatter(address, "fuzz%d" % next(names), transport)


def post(client, body_bytes, headers=None, query=""):
    """POST raw bytes to the client's transport URL; the answer."""
    path = client.transport_path(query)
    return http(client.address, "POST", path, body_bytes, headers or {})


def encode_body(transport, payload, form_noise):
    """The POST body a transport carries ``payload`` in (jsonp: a form field ``d``)."""
    if transport != "jsonp-polling":
        return payload.encode("utf-8", "surrogatepass")
    return ("d=" + quote(json.dumps(payload)) + form_noise).encode()


def end(client):
    """Close a fuzz session quickly, whatever state the fuzzing left it in."""
    client.close()
    if client.transport != "websocket":
        http(client.address, "GET", client.transport_path("disconnect=1"))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_fuzzed_packets_and_payloads_over_every_transport(live, faults, witnesses, transport):
    address = live[2]

    @FUZZ
    @given(body=payloads(), form_noise=st.sampled_from(["", "&d=x", "&i=1", "%ZZ", "&&"]), query=queries)
    def fuzz(body, form_noise, query):
        client = fresh_client(address, transport)
        try:
            if transport == "websocket":
                for text in protocol.decode_payload(body) if body.startswith(protocol.FRAME_MARK) else [body]:
                    client.ws.send_frame(text.encode("utf-8", "surrogatepass"))
            else:
                reply = post(client, encode_body(transport, body, form_noise), query=query)
                assert reply.status < 500, (reply.status, reply.body)
        except protocol.ProtocolError:
            pass  # a payload with lying lengths cannot be split into websocket frames
        finally:
            end(client)
        assert_server_healthy(live, faults)

    fuzz()
    assert_witnesses_chat(witnesses, "packets-" + transport)


# --- raw HTTP requests -----------------------------------------------------------------------

METHODS = ["GET", "POST", "OPTIONS", "HEAD", "PUT", "DELETE", "get", "G\x00T", "PRI", ""]
HEADER_NAMES = ["Origin", "Host", "Content-Type", "Content-Length", "Transfer-Encoding"]
HEADER_NAMES += ["Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version", "Cookie"]
HEADER_NAMES += ["X-Forwarded-Proto", "Expect", "Range", "If-Modified-Since", "Accept-Encoding"]
header_values = (
    st.sampled_from(["websocket", "Upgrade", "chunked", "13", "close", "100-continue", "bytes=0-1"])
    | st.sampled_from(["http://evil.example", "null", "https://127.0.0.1", "[::1", "-1", "1e9"])
    | st.binary(max_size=30).map(lambda raw: raw.decode("latin-1"))
)
path_templates = st.sampled_from(
    ["/socket.io/1/", "/socket.io/1", "/socket.io/1/{t}/{sid}", "/socket.io/1//{sid}", "/socket.io/{x}"]
    + ["/socket.io/1/{t}/{x}", "/{x}", "/healthz", "/socket.io.js", "/chat.js", "/../{x}", "/{x}/../.."]
)


@st.composite
def raw_requests(draw, session_id):
    """Bytes of one HTTP request: fuzzed method, path, query, headers and body."""
    path = draw(path_templates).format(
        t=draw(st.sampled_from(TRANSPORTS + ["htmlfile", "flashsocket", "", "%ff"])),
        sid=session_id,
        x=quote(draw(st.binary(max_size=12)).decode("latin-1"), safe="/%"),
    )
    query = draw(queries)
    line = "%s %s%s %s" % (
        draw(st.sampled_from(METHODS)),
        path,
        "?" + query if query else "",
        draw(st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.1 x", ""])),
    )
    headers = draw(st.lists(st.tuples(st.sampled_from(HEADER_NAMES), header_values), max_size=6))
    body = draw(st.binary(max_size=200))
    head = "\r\n".join([line] + ["%s: %s" % header for header in headers])
    return head.encode("latin-1", "replace") + b"\r\n\r\n" + body


def status_line_of(data, head):
    """The status code the server answered, or None if it closed without answering."""
    sock = socket.create_connection(head, timeout=5)
    try:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)  # the request is all there is: no waiting on a body
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    except ConnectionResetError:
        return None
    finally:
        sock.close()
    if not answer:
        return None
    assert answer.startswith(b"HTTP/1.1 "), answer[:80]
    return int(answer.split()[1])


def test_fuzzed_raw_http_requests(live, faults, witnesses):
    address = live[2]
    victim = SocketIOClient(address, "xhr-polling")
    victim.handshake()

    @settings(FUZZ, max_examples=3 * EXAMPLES)
    @given(data=st.data())
    def fuzz(data):
        request = data.draw(raw_requests(victim.session_id))
        status = status_line_of(request, address)
        assert status is None or status < 500, (status, request[:300])
        assert_server_healthy(live, faults)

    fuzz()
    assert_witnesses_chat(witnesses, "http")


# --- raw websocket frames ------------------------------------------------------------------------


def raw_frame(first, masked, payload, declared):
    """A frame with any first byte (FIN, RSV, opcode), mask bit and declared length."""
    if declared < 126:
        header = struct.pack("!BB", first, (0x80 if masked else 0) | declared)
    elif declared < 65536:
        header = struct.pack("!BBH", first, (0x80 if masked else 0) | 126, declared)
    else:
        header = struct.pack("!BBQ", first, (0x80 if masked else 0) | 127, declared)
    if not masked:
        return header + payload
    mask = os.urandom(4)
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


frames = st.builds(
    lambda first, masked, payload, lie: raw_frame(first, masked, payload, max(0, len(payload) + lie)),
    st.integers(min_value=0, max_value=255) | st.sampled_from([0x81, 0x01, 0x80, 0x88, 0x89, 0x8A, 0x82]),
    st.booleans() | st.just(True),
    st.binary(max_size=80) | packets.map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.sampled_from([0, 0, 0, -1, 1, 70000, 2**40]),
)


def test_fuzzed_websocket_frames(live, faults, witnesses):
    address = live[2]

    @FUZZ
    @given(sequence=st.lists(frames, min_size=1, max_size=4))
    def fuzz(sequence):
        client = fresh_client(address, "websocket")
        try:
            client.ws.sock.sendall(b"".join(sequence))
        except OSError:
            pass  # the server closed on an earlier frame: that is its answer
        finally:
            end(client)
        assert_server_healthy(live, faults)

    fuzz()
    assert_witnesses_chat(witnesses, "frames")


def test_a_second_upgrade_and_stolen_ids_under_fuzzing_leave_the_witnesses_alone(live, faults, witnesses):
    address = live[2]
    for witness in witnesses:
        for transport in TRANSPORTS:
            path = "/socket.io/1/%s/%s?i=0" % (transport, witness.session_id)
            if transport == "websocket":
                thief = WebSocketConnection(address, path)
                assert thief.status == 409
                thief.close()
            elif transport != witness.transport:
                assert http(address, "POST", path, b"0::").status == 409
    assert_witnesses_chat(witnesses, "stolen")
    assert_server_healthy(live, faults)


# --- after the fuzzing ------------------------------------------------------------------------


def test_every_fuzz_session_ends(live, witnesses):
    _, server, _ = live
    witness_ids = {witness.session_id for witness in witnesses}
    wait_until(lambda: set(server.sockets) <= witness_ids, timeout=10)


def test_the_chat_state_is_back_to_empty_once_every_session_ended(live, witnesses):
    app, server, _ = live
    for witness in witnesses:
        witness.close()
    wait_until(lambda: not server.sockets, timeout=10)
    assert_chat_state_back_to_empty(app.service)
