"""protocol.py: Socket.IO 0.9 packets, payload framing, JSONP bodies and URL routing."""

import json
import re
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatwsgi.protocol import (
    FRAME_MARK,
    ProtocolError,
    Route,
    asks_disconnect,
    decode_jsonp_body,
    decode_packet,
    decode_payload,
    encode_packet,
    encode_payload,
    event_frame,
    handshake_body,
    jsonp_index,
    jsonp_script,
    route,
    utf16_len,
)

M = FRAME_MARK

# --- packets -----------------------------------------------------------------------------------

PACKETS = [
    ("0::", {"type": "disconnect", "endpoint": ""}),
    ("0::/chat", {"type": "disconnect", "endpoint": "/chat"}),
    ("1::/chat", {"type": "connect", "endpoint": "/chat", "qs": ""}),
    ("1::/chat:?token=abc", {"type": "connect", "endpoint": "/chat", "qs": "?token=abc"}),
    ("2::", {"type": "heartbeat", "endpoint": ""}),
    ("3:::hello: world", {"type": "message", "endpoint": "", "data": "hello: world"}),
    ("3:7:/chat:hi", {"type": "message", "endpoint": "/chat", "id": 7, "ack": True, "data": "hi"}),
    ('4::/chat:{"a":[1,2,null]}', {"type": "json", "endpoint": "/chat", "data": {"a": [1, 2, None]}}),
    (
        '5::/chat:{"name":"join","args":[{"room":"lobby"}]}',
        {"type": "event", "endpoint": "/chat", "name": "join", "args": [{"room": "lobby"}]},
    ),
    (
        '5:1+:/chat:{"name":"message","args":[{"id":"m1","text":"a\\nb"}]}',
        {
            "type": "event",
            "endpoint": "/chat",
            "id": 1,
            "ack": "data",
            "name": "message",
            "args": [{"id": "m1", "text": "a\nb"}],
        },
    ),
    (
        '5:3+::{"name":"x","args":[1]}',
        {"type": "event", "endpoint": "", "id": 3, "ack": "data", "name": "x", "args": [1]},
    ),
    (
        '5:2:/chat:{"name":"rooms"}',
        {"type": "event", "endpoint": "/chat", "id": 2, "ack": True, "name": "rooms", "args": []},
    ),
    ("6:::1", {"type": "ack", "endpoint": "", "ackId": 1, "args": []}),
    (
        '6::/chat:12+[{"ok":true,"seq":3}]',
        {"type": "ack", "endpoint": "/chat", "ackId": 12, "args": [{"ok": True, "seq": 3}]},
    ),
    (
        "7:::handshake_expired+reconnect",
        {"type": "error", "endpoint": "", "reason": "handshake_expired", "advice": "reconnect"},
    ),
    ("7::/chat:unauthorized", {"type": "error", "endpoint": "/chat", "reason": "unauthorized", "advice": ""}),
    ("8::", {"type": "noop", "endpoint": ""}),
]


@pytest.mark.parametrize(("text", "packet"), PACKETS, ids=[text[:12] for text, _ in PACKETS])
def test_decode_packet(text, packet):
    assert decode_packet(text) == packet


@pytest.mark.parametrize(("text", "packet"), PACKETS, ids=[text[:12] for text, _ in PACKETS])
def test_encode_packet(text, packet):
    assert encode_packet(packet) == text
    assert decode_packet(encode_packet(packet)) == packet


def test_every_packet_type_is_covered():
    assert sorted({packet["type"] for _, packet in PACKETS}) == sorted(
        ["disconnect", "connect", "heartbeat", "message", "json", "event", "ack", "error", "noop"]
    )


def test_encode_minimal_packets_fill_in_defaults():
    assert encode_packet({"type": "heartbeat"}) == "2::"
    assert encode_packet({"type": "message"}) == "3:::"
    assert encode_packet({"type": "event", "name": "x", "args": []}) == '5:::{"name":"x"}'
    assert encode_packet({"type": "ack", "ackId": 4, "args": ()}) == "6:::4"
    assert encode_packet({"type": "ack", "ackId": 4, "args": ("a", 1)}) == '6:::4+["a",1]'
    assert encode_packet({"type": "event", "id": 0, "name": "x"}) == '5:0::{"name":"x"}'


def test_encoded_event_is_ascii_and_decodes_back():
    packet = {"type": "event", "endpoint": "/chat", "name": "m", "args": ["🎉 é \u2028"]}
    text = encode_packet(packet)
    assert text == '5::/chat:{"name":"m","args":["\\ud83c\\udf89 \\u00e9 \\u2028"]}'
    assert text.isascii()
    assert decode_packet(text) == packet


def test_event_frame():
    frame = event_frame("/chat", "announce", {"room": "lobby"}, 2)
    assert frame == '5::/chat:{"name":"announce","args":[{"room":"lobby"},2]}'
    assert event_frame("/chat", "ping") == '5::/chat:{"name":"ping"}'


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        "5",
        "5:",
        "5::",
        "9::",
        "9:::{}",
        "x::",
        "5:a::{}",
        "-1::",
        '5:::{"args":[]}',
        '5:::{"name":3}',
        '5:::["name"]',
        '5:::"join"',
        '5:::{"name":"x","args":{}}',
        '5:::{"name":"x","args":"a"}',
        "5:::{nope",
        "5:::",
        "4:::{nope",
        "4:::",
        "6:::",
        "6:::abc",
        "6:::+[1]",
        "6:::1+[nope",
        "6:::1234567890123",
        '5:1234567890123::{"name":"x"}',
        "4:::" + "[" * 100_000,
    ],
)
def test_malformed_packets_raise_protocol_error(text):
    with pytest.raises(ProtocolError):
        decode_packet(text)


def test_twelve_digit_ids_are_accepted():
    assert decode_packet("3:999999999999::x")["id"] == 999999999999
    assert decode_packet("6:::999999999999")["ackId"] == 999999999999


def test_protocol_error_is_a_value_error_with_a_reason():
    with pytest.raises(ValueError, match="numeric id"):
        decode_packet("6:::x")
    with pytest.raises(ProtocolError, match="'name'"):
        decode_packet('5:::{"args":[]}')
    with pytest.raises(ProtocolError, match="array"):
        decode_packet('5:::{"name":"x","args":{}}')


# --- payload framing ----------------------------------------------------------------------------


def test_utf16_len():
    assert utf16_len("") == 0
    assert utf16_len("abc") == 3
    assert utf16_len("é") == 1
    assert utf16_len("🎉") == 2
    assert utf16_len("a🎉b") == 4


def test_encode_payload_counts_utf16_units():
    assert encode_payload(['5:::{"a":"🎉"}', "x"]) == M + "14" + M + '5:::{"a":"🎉"}' + M + "1" + M + "x"
    assert encode_payload(["2::", "8::"]) == M + "3" + M + "2::" + M + "3" + M + "8::"
    assert encode_payload(["", "é"]) == M + "0" + M + M + "1" + M + "é"


def test_a_single_message_is_not_framed():
    assert encode_payload(["3:::hello 🎉"]) == "3:::hello 🎉"
    assert decode_payload("3:::hello 🎉") == ["3:::hello 🎉"]
    assert decode_payload("3:::a" + M + "b") == ["3:::a" + M + "b"]


def test_decode_payload():
    body = M + "14" + M + '5:::{"a":"🎉"}' + M + "1" + M + "x"
    assert decode_payload(body) == ['5:::{"a":"🎉"}', "x"]
    assert decode_payload(M + "2" + M + "🎉") == ["🎉"]
    assert decode_payload(M + "3" + M + "a" + M + "b") == ["a" + M + "b"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (M, "bad length"),
        (M + M + "abc", "bad length"),
        (M + "x" + M + "abc", "bad length"),
        (M + "-1" + M + "a", "bad length"),
        (M + "1" + M + "a" + M, "bad length"),
        (M + "5" + M + "ab", "past the body"),
        (M + "1" + M + "a" + M + "9" + M + "b", "past the body"),
        (M + "1" + M + "🎉", "splits a character"),
        (M + "2" + M + "a🎉", "splits a character"),
        (M + "1" + M + "ab", "expected a frame mark"),
        (M + "0000000000001" + M + "a", "bad length"),  # 13 digits
        (M + "9" * 5000 + M + "a", "bad length"),  # F12: int() refuses over 4,300 digits
        (M + "1" + M + "\ud800", "lone surrogate"),  # F12: UTF-16 cannot encode it
        (M + "1" + M + "a" + M + "1" + M + "\udfff", "lone surrogate"),
    ],
)
def test_bad_framing_raises_protocol_error(body, reason):
    with pytest.raises(ProtocolError, match=reason):
        decode_payload(body)


@pytest.mark.parametrize("length", ["\u00b2", "\u0663", "\uff11"])
def test_non_ascii_digit_length_is_a_protocol_error(length):
    # str.isdigit() accepts these; int() refuses '²' and reads the others as numbers.
    with pytest.raises(ProtocolError, match="bad length"):
        decode_payload(M + length + M + "xyz")


def test_misaligned_frame_mark_bytes_are_not_a_frame_mark():
    # UTF-16-LE bytes FD FF | 41 FD | FF 00: the mark's bytes also appear at the odd offset 3.
    with pytest.raises(ProtocolError, match="bad length"):
        decode_payload(M + "\ufd41\u00ff")
    with pytest.raises(ProtocolError, match="bad length"):
        decode_payload(M + "\ufd41\u00ff" + M + "x")
    messages = ["\ufd41\u00ff", "a\ufd41\u00ff" + M]
    assert decode_payload(encode_payload(messages)) == messages


@settings(database=None, deadline=None)
@given(st.lists(st.text(), min_size=1, max_size=5))
def test_payload_round_trip(messages):
    body = encode_payload(messages)
    if len(messages) > 1:
        assert decode_payload(body) == messages
    else:
        assert body == messages[0]
        if not body.startswith(FRAME_MARK):
            assert decode_payload(body) == messages


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=12,
)


@settings(database=None, deadline=None)
@given(
    name=st.text(),
    args=st.lists(JSON_VALUES, max_size=4),
    endpoint=st.sampled_from(["", "/chat"]),
    msg_id=st.none() | st.integers(min_value=0, max_value=10**6),
    data_ack=st.booleans(),
)
def test_event_round_trip(name, args, endpoint, msg_id, data_ack):
    packet = {"type": "event", "endpoint": endpoint, "name": name, "args": args}
    if msg_id is not None:
        packet["id"] = msg_id
        packet["ack"] = "data" if data_ack else True
    text = encode_packet(packet)
    assert text.isascii()
    assert decode_packet(text) == packet
    ack = {"type": "ack", "endpoint": endpoint, "ackId": msg_id or 0, "args": args}
    assert decode_packet(encode_packet(ack)) == ack


# --- JSONP --------------------------------------------------------------------------------------

_SCRIPT_RE = re.compile(r"^io\.j\[(\d+)\]\((.*)\);$", re.S)


def script_parts(script):
    match = _SCRIPT_RE.match(script)
    assert match, script
    return int(match.group(1)), json.loads(match.group(2))


def test_jsonp_script_leaves_frame_marks_literal_like_the_reference():
    payload = encode_payload(["1::", '5:::{"name":"x","args":["\\ufffd"]}'])
    script = jsonp_script(0, payload)
    assert script == 'io.j[0]("%s3%s1::%s34%s5:::{\\"name\\":\\"x\\",\\"args\\":[\\"\\\\ufffd\\"]}");' % (
        (FRAME_MARK,) * 4
    )
    assert script_parts(script) == (0, payload)


def test_jsonp_script_exact():
    assert jsonp_script(0, "2::") == 'io.j[0]("2::");'
    assert jsonp_script(1, "a</script>b") == 'io.j[1]("a<\\/script>b");'
    assert jsonp_script(3, 'say "hi"\nnext') == 'io.j[3]("say \\"hi\\"\\nnext");'


@pytest.mark.parametrize(
    "payload",
    [
        "",
        "2::",
        "quote \" and backslash \\ and 'single'",
        "line\nbreak\r\nand\ttab",
        "</script><script>alert(1)</script>",
        "line sep \u2028 para sep \u2029",
        M + "14" + M + '5:::{"a":"🎉"}' + M + "1" + M + "x",
        '");alert(1);("',
        "backslash then u-f-f-f-d: \\ufffd and \\\ufffd, mark: \ufffd",
    ],
)
def test_jsonp_script_escapes_and_parses(payload):
    script = jsonp_script(7, payload)
    assert script_parts(script) == (7, payload)
    assert "\n" not in script and "\r" not in script
    assert "\u2028" not in script and "\u2029" not in script
    assert "</" not in script
    assert script.replace(FRAME_MARK, "").isascii()
    # The payload is one JSON string literal: its only bare quotes are the delimiters.
    literal = script[len("io.j[7](") : -len(");")]
    assert re.sub(r"\\.", "", literal).count('"') == 2


@pytest.mark.parametrize(
    ("query", "index"),
    [
        (None, 0),
        ("", 0),
        ("t=123", 0),
        ("i=", 0),
        ("i=0", 0),
        ("i=3", 3),
        ("t=1&i=12", 12),
        ("i=12345678", 12345678),
        ("i=123456789", None),
        ("i=-1", None),
        ("i=abc", None),
        ("i=1.5", None),
        ("i=%20", None),
        ("i=4&i=5", 4),
    ],
)
def test_jsonp_index(query, index):
    assert jsonp_index(query) == index


def test_jsonp_index_other_key():
    assert jsonp_index("jsonp=2&i=9", key="jsonp") == 2
    assert jsonp_index("i=9", key="jsonp") == 0


@pytest.mark.parametrize("query", ["i=%C2%B2", "i=%D9%A3", "i=%EF%BC%91"])
def test_jsonp_index_non_ascii_digit_is_bad(query):
    assert jsonp_index(query) is None


@pytest.mark.parametrize(
    "payload",
    [
        "3:::hello",
        "3:::line\nbreak and\r\nmore",
        "3:::1+1=2 a+b",
        "3:::100% sure %20 %zz",
        "3:::🎉 é \u2028",
        M + "14" + M + '5:::{"a":"🎉"}' + M + "1" + M + "x",
        "&d=not-a-field&",
        "",
    ],
)
def test_decode_jsonp_body_round_trip(payload):
    for ensure_ascii in (True, False):
        encoded = json.dumps(payload, ensure_ascii=ensure_ascii)
        assert decode_jsonp_body(("d=" + quote_plus(encoded)).encode()) == payload
        assert decode_jsonp_body(("t=1&d=" + quote(encoded, safe="")).encode()) == payload


def test_decode_jsonp_body_literal_form():
    # '+' is a space in a form; a real plus arrives as %2B, a percent sign as %25.
    assert decode_jsonp_body(b"d=%22a%2Bb+c%25%5Cn%22") == "a+b c%\n"
    assert decode_jsonp_body('d="🎉"'.encode()) == "🎉"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "no 'd'"),
        (b"x=1", "no 'd'"),
        (b"d=", "no 'd'"),
        (b"dd=%22a%22", "no 'd'"),
        (b"d=123", "JSON string"),
        (b"d=null", "JSON string"),
        (b"d=%5B%22a%22%5D", "JSON string"),
        (b"d=%7Bnope", "invalid JSON"),
        (b"d=%22unterminated", "invalid JSON"),
        (b"d=%22a%22\xff", "not UTF-8"),
        ('d="é"'.encode("latin-1"), "not UTF-8"),
        (b"d=%22%5Cud800%22", "lone surrogate"),  # F12: d="\ud800"
        (b"d=%22%5Cufffd1%5Cufffd%5Cudfff%22", "lone surrogate"),
    ],
)
def test_decode_jsonp_body_refusals(body, reason):
    with pytest.raises(ProtocolError, match=reason):
        decode_jsonp_body(body)


# --- URLs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/socket.io/1/", Route("handshake")),
        ("/socket.io/1", Route("handshake")),
        ("/socket.io/1/websocket/SID1", Route("transport", transport="websocket", session_id="SID1")),
        ("/socket.io/1/xhr-polling/SID2/", Route("transport", transport="xhr-polling", session_id="SID2")),
        ("/socket.io/1/jsonp-polling/SID3", Route("transport", transport="jsonp-polling", session_id="SID3")),
        ("/socket.io/1//SID4", Route("disconnect", session_id="SID4")),
        ("/socket.io/1//SID4/", Route("disconnect", session_id="SID4")),
        ("/socket.io/2/x", Route("unknown")),
        ("/socket.io/", Route("unknown")),
        ("/socket.io", Route("unknown")),
        ("/socket.io/1/websocket", Route("unknown")),
        ("/socket.io/1/websocket/", Route("unknown")),
        ("/socket.io/1/websocket/SID/extra", Route("unknown")),
        ("/other", None),
        ("/", None),
        ("/socket.io.js", None),
        ("/socket.iox/1/", None),
        ("/static/socket.io/1/", None),
    ],
)
def test_route(path, expected):
    assert route(path) == expected


def test_route_other_resource():
    assert route("/chat.io/1/", resource="chat.io") == Route("handshake")
    assert route("/socket.io/1/", resource="chat.io") is None


def test_handshake_body():
    body = handshake_body("abc123", 60, 3, ["websocket", "xhr-polling"])
    assert body == "abc123:60:3:websocket,xhr-polling"


@pytest.mark.parametrize(
    ("query", "asks"),
    [
        ("disconnect=1", True),  # the JS client's disconnectSync
        ("t=1733100000000&disconnect=True", True),  # PyPI socketIO-client 0.5
        ("disconnect", True),
        ("i=0&disconnect=1&t=5", True),
        ("", False),
        (None, False),
        ("t=123", False),
        ("disconnected=1", False),
        ("t=disconnect", False),
    ],
)
def test_a_disconnect_parameter_anywhere_in_the_query(query, asks):
    assert asks_disconnect(query) is asks
