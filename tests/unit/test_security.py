"""security.py: which Origins may use the chat."""

import pytest

from chatwsgi.security import origin_allowed


def environ(origin=None, host="chat.example.com:8080"):
    env = {"HTTP_HOST": host}
    if origin is not None:
        env["HTTP_ORIGIN"] = origin
    return env


def test_absent_origin_is_allowed():
    assert origin_allowed({"HTTP_HOST": "chat.example.com"}) is True
    assert origin_allowed({}) is True


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("http://chat.example.com:8080", "chat.example.com:8080"),
        ("https://chat.example.com:8443", "chat.example.com:8443"),
        ("http://chat.example.com", "chat.example.com"),
        ("http://chat.example.com:80", "chat.example.com"),
        ("http://chat.example.com", "chat.example.com:80"),
        ("https://chat.example.com", "chat.example.com"),
        ("https://chat.example.com:443", "chat.example.com"),
        ("https://chat.example.com", "chat.example.com:443"),
        ("http://Chat.Example.COM:8080", "chat.example.com:8080"),
        ("http://chat.example.com:8080", "CHAT.EXAMPLE.COM:8080"),
        ("HTTP://chat.example.com:8080", "chat.example.com:8080"),
        ("http://127.0.0.1:5000", "127.0.0.1:5000"),
        ("http://[::1]:5000", "[::1]:5000"),
    ],
)
def test_same_host_and_port_is_allowed(origin, host):
    assert origin_allowed(environ(origin, host)) is True


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("http://evil.example.com:8080", "chat.example.com:8080"),
        ("http://chat.example.com.evil.org:8080", "chat.example.com:8080"),
        ("http://chat.example.com:8081", "chat.example.com:8080"),
        ("http://chat.example.com", "chat.example.com:8080"),
        ("https://chat.example.com", "chat.example.com:80"),
        ("http://chat.example.com", "chat.example.com:443"),
        ("https://chat.example.com:80", "chat.example.com"),
        ("null", "chat.example.com:8080"),
        ("", "chat.example.com:8080"),
        ("file://chat.example.com:8080", "chat.example.com:8080"),
        ("ws://chat.example.com:8080", "chat.example.com:8080"),
        ("chrome-extension://abcdef", "chat.example.com:8080"),
        ("http://", "chat.example.com:8080"),
        ("http://chat.example.com:notaport", "chat.example.com:8080"),
        ("http://chat.example.com:8080", "chat.example.com:notaport"),
        ("http://chat.example.com:8080", ""),
    ],
)
def test_other_origins_are_refused(origin, host):
    assert origin_allowed(environ(origin, host)) is False


def test_missing_host_refuses_an_origin():
    assert origin_allowed({"HTTP_ORIGIN": "http://chat.example.com"}) is False


def test_allow_list_exact_entry():
    allowed = ("https://app.example.org", "null")
    assert origin_allowed(environ("https://app.example.org"), allowed) is True
    assert origin_allowed(environ("null"), allowed) is True
    assert origin_allowed(environ("https://app.example.org:8443"), allowed) is False
    assert origin_allowed(environ("http://app.example.org"), allowed) is False
    assert origin_allowed(environ("https://other.example.org"), allowed) is False


def test_allow_list_does_not_stop_the_same_origin():
    allowed = ["https://app.example.org"]
    assert origin_allowed(environ("http://chat.example.com:8080"), allowed) is True


def test_star_allows_everything():
    for origin in ["https://anything.example", "null", "ftp://x", "http://chat.example.com:1"]:
        assert origin_allowed(environ(origin), ("*",)) is True


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        # ws 0.4 (the npm socket.io-client 0.9.16's websocket) sends the Host it dials.
        ("127.0.0.1:5000", "127.0.0.1:5000", True),
        ("chat.example.com:8080", "chat.example.com:8080", True),
        ("Chat.Example.com:8080", "chat.example.com:8080", True),
        ("chat.example.com", "chat.example.com", True),
        ("chat.example.com", "chat.example.com:80", True),
        ("127.0.0.1:5001", "127.0.0.1:5000", False),
        ("evil.example.com:8080", "chat.example.com:8080", False),
        ("chat.example.com:8080/path", "chat.example.com:8080", False),
        ("chat.example.com:8080", "", False),
        (":8080", ":8080", False),
        ("chat.example.com:notaport", "chat.example.com:notaport", False),
    ],
)
def test_origin_without_a_scheme_must_be_the_host_itself(origin, host, allowed):
    assert origin_allowed(environ(origin, host)) is allowed
