"""http_headers.py: the fields pywsgi and gevent-websocket read, as http.client gave them."""

import io
from http import client

from hypothesis import given
from hypothesis import strategies as st

from chatwsgi.http_headers import MAX_FIELDS, MAX_LINE, parse_field_lines, read_headers

UPGRADE = (
    b"Host: 127.0.0.1:8080\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    b"Origin: http://127.0.0.1:8080\r\nCookie: a=1\r\nCookie: b=2\r\n\r\nbody"
)


def test_an_upgrade_requests_fields_as_http_client_reads_them():
    ours, theirs = read_headers(io.BytesIO(UPGRADE)), client.parse_headers(io.BytesIO(UPGRADE))
    for name in ("host", "UPGRADE", "Connection", "sec-websocket-key", "Origin", "Cookie", "Absent"):
        assert ours.get(name) == theirs.get(name)
    assert ours.headers == ["%s: %s\r\n" % field for field in theirs.items()]
    assert ours.status == "" and ours.typeheader is None


def test_reading_stops_at_the_blank_line():
    body = io.BytesIO(UPGRADE)
    read_headers(body)
    assert body.read() == b"body"


def test_deleting_a_field_removes_every_copy():
    headers = parse_field_lines(["Content-Length: 5", "Transfer-Encoding: chunked", "content-length: 6"])
    del headers["Content-Length"]
    assert headers.get("content-length") is None and "Transfer-Encoding" in headers
    assert headers.getheader("transfer-encoding") == "chunked"


def test_a_folded_line_continues_the_field_before():
    headers = parse_field_lines(["X-Long: one", "  two", "\tthree"])
    assert headers.get("x-long") == "one two three"


def test_malformed_heads_are_refused_with_a_reason():
    assert parse_field_lines(["no colon here"]).status == "Malformed header line"
    assert parse_field_lines([": no name"]).status == "Malformed header line"
    assert parse_field_lines(["Host : spaced"]).status == "Malformed header line"
    assert parse_field_lines([" folded first"]).status.startswith("Continuation")
    assert read_headers(io.BytesIO(b"X: " + b"a" * MAX_LINE + b"\r\n\r\n")).status == "Line too long"
    many = b"".join(b"X-%d: v\r\n" % n for n in range(MAX_FIELDS + 1)) + b"\r\n"
    assert read_headers(io.BytesIO(many)).status.startswith("More than")
    assert read_headers(io.BytesIO(many[: many.index(b"X-100")] + b"\r\n")).status == ""


NAME_CHARACTERS = "abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
token = st.text(alphabet=NAME_CHARACTERS, min_size=1, max_size=12)
value = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=30)


@given(fields=st.lists(st.tuples(token, value), max_size=20))
def test_any_well_formed_head_reads_as_http_client_reads_it(fields):
    raw = b"".join(b"%s: %s\r\n" % (name.encode(), text.encode()) for name, text in fields) + b"\r\n"
    ours, theirs = read_headers(io.BytesIO(raw)), client.parse_headers(io.BytesIO(raw))
    assert ours.status == ""
    for name, _ in fields:
        assert ours.get(name) == theirs.get(name)
    assert ours.headers == ["%s: %s\r\n" % f for f in theirs.items()]
