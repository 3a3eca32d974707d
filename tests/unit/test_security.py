"""security.py: which Origins may use the chat, which paths name static files."""

import pytest

from chatwsgi.security import (
    is_inside,
    is_origin_text,
    origin_allowed,
    relative_static_path,
    request_path_text,
    request_scheme,
    transport_conflict,
)


def environ(origin=None, host="chat.example.com:8080", scheme="http", **headers):
    env = {"HTTP_HOST": host, "wsgi.url_scheme": scheme, **headers}
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
    scheme = origin.partition(":")[0].lower()  # the page was served over the Origin's scheme
    assert origin_allowed(environ(origin, host, scheme)) is True


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


@pytest.mark.parametrize(
    ("origin", "host", "scheme"),
    [
        ("https://chat.example.com:8080", "chat.example.com:8080", "http"),
        ("http://chat.example.com:8443", "chat.example.com:8443", "https"),
        ("https://127.0.0.1:5000", "127.0.0.1:5000", "http"),
    ],
)
def test_another_scheme_on_the_same_host_and_port_is_refused(origin, host, scheme):
    assert origin_allowed(environ(origin, host, scheme)) is False


def test_the_request_scheme_is_x_forwarded_proto_when_it_names_one():
    assert request_scheme({"wsgi.url_scheme": "http"}) == "http"
    assert request_scheme({"wsgi.url_scheme": "https"}) == "https"
    assert request_scheme({}) == "http"
    assert request_scheme({"wsgi.url_scheme": "http", "HTTP_X_FORWARDED_PROTO": "HTTPS"}) == "https"
    # Proxies append: the last one (the nearest proxy) says what the client used.
    assert request_scheme({"wsgi.url_scheme": "http", "HTTP_X_FORWARDED_PROTO": "http, https"}) == "https"
    assert request_scheme({"wsgi.url_scheme": "http", "HTTP_X_FORWARDED_PROTO": "gopher"}) == "http"


def test_a_tls_terminating_proxy_keeps_the_page_origin_allowed():
    behind_proxy = environ("https://chat.example.com", "chat.example.com", HTTP_X_FORWARDED_PROTO="https")
    assert origin_allowed(behind_proxy) is True
    assert origin_allowed(environ("https://chat.example.com", "chat.example.com")) is False


@pytest.mark.parametrize(
    "origin",
    [
        "http://chat.example.com:8080\r\n a",  # obs-fold, as gevent joins it
        "http://chat.example.com:8080\n",
        "http://chat.example.com:8080\t",
        "http://chat.example.com:8080 ",
        "http://ch\u00e4t.example.com:8080",
        "http://chat.example.com:8080\x00",
        "x" * 2049,
    ],
)
def test_an_origin_that_is_no_header_text_is_refused_even_by_star(origin):
    assert is_origin_text(origin) is False
    assert origin_allowed(environ(origin)) is False
    assert origin_allowed(environ(origin), ("*",)) is False
    assert origin_allowed(environ(origin), (origin,)) is False


@pytest.mark.parametrize("host", ["[", "[::1", "chat.example.com:99999", "chat.example.com:-1"])
def test_a_broken_host_refuses_an_origin_without_raising(host):
    assert origin_allowed(environ("http://chat.example.com", host)) is False
    assert origin_allowed(environ("chat.example.com", host)) is False


@pytest.mark.parametrize("origin", ["[", "[::1", "http://[", "http://[::1", "]", "http://]:80", "::"])
def test_a_broken_origin_is_refused_without_raising(origin):
    # Found by tests/live/test_fuzz.py: urlsplit raises on an unclosed bracket.
    assert origin_allowed(environ(origin, "chat.example.com")) is False


# --- a session's transport ---------------------------------------------------------------------


@pytest.mark.parametrize("requested", ["websocket", "xhr-polling", "jsonp-polling"])
def test_a_session_not_yet_connected_takes_any_transport(requested):
    assert transport_conflict(None, requested) is None


@pytest.mark.parametrize("bound", ["xhr-polling", "jsonp-polling"])
def test_a_polling_session_takes_more_requests_on_its_own_transport(bound):
    assert transport_conflict(bound, bound) is None


@pytest.mark.parametrize(
    ("bound", "requested", "reason"),
    [
        ("websocket", "xhr-polling", "connected over websocket: handshake again to use xhr-polling"),
        ("websocket", "jsonp-polling", "connected over websocket"),
        ("xhr-polling", "websocket", "connected over xhr-polling"),
        ("xhr-polling", "jsonp-polling", "connected over xhr-polling"),
        ("jsonp-polling", "xhr-polling", "connected over jsonp-polling"),
        ("websocket", "websocket", "already has its websocket"),
    ],
)
def test_another_transport_or_a_second_websocket_is_refused(bound, requested, reason):
    assert reason in transport_conflict(bound, requested)


# --- static paths ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path_info", "text"),
    [
        ("/", "/"),
        ("/chat.js", "/chat.js"),
        ("/caf\u00c3\u00a9.txt", "/caf\u00e9.txt"),  # WSGI: UTF-8 bytes as latin-1
        ("/\u00ff", None),  # GET /%ff
        ("/a\u00c3", None),  # a truncated UTF-8 sequence
        ("/a\x00b", None),
        ("/\u00ed\u00a0\u0080", None),  # an encoded surrogate is not UTF-8
    ],
)
def test_request_path_text(path_info, text):
    assert request_path_text(path_info) == text


@pytest.mark.parametrize(
    ("text", "relative"),
    [
        ("/", ""),
        ("", ""),
        ("//", ""),
        ("/index.html", "index.html"),
        ("/css/../chat.css", "chat.css"),
        ("/./chat.js", "chat.js"),
        ("//etc/passwd", "etc/passwd"),
        ("/....//x", "..../x"),
        ("/..", None),
        ("/../pyproject.toml", None),
        ("/a/../../pyproject.toml", None),
        ("/static/../../pyproject.toml", None),
        ("/../static-secret/key.txt", None),
    ],
)
def test_relative_static_path(text, relative):
    assert relative_static_path(text) == relative


@pytest.mark.parametrize(
    ("root", "path", "inside"),
    [
        ("/srv/static", "/srv/static", True),
        ("/srv/static", "/srv/static/index.html", True),
        ("/srv/static/", "/srv/static/a/b", True),
        ("/srv/static", "/srv/static-secret/key.txt", False),
        ("/srv/static", "/srv", False),
        ("/srv/static", "/etc/hostname", False),
        ("/", "/etc/hostname", True),
    ],
)
def test_is_inside(root, path, inside):
    assert is_inside(root, path) is inside
