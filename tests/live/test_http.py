"""The WSGI side on a real server: page, client script, health, traversal, Origin, embedding."""

import json
import re

import gevent
import pytest

from chatwsgi import ChatMiddleware, ChatServer, make_app, make_server
from tests.support.chatting import chatter
from tests.support.sioclient import SocketIOClient, http


def test_page_and_client_script(address):
    page = http(address, "GET", "/")
    assert page.status == 200 and b'<script src="/socket.io.js">' in page.body
    assert "default-src 'self'" in page.headers["content-security-policy"]
    script = http(address, "GET", "/socket.io.js")
    assert script.status == 200 and b'version="0.9.10"' in script.body
    assert script.headers["content-type"].startswith("application/javascript")
    assert http(address, "GET", "/chat.js").status == 200
    assert http(address, "GET", "/no-such-file.txt").status == 404


def test_healthz(address):
    client = chatter(address, "alice", "xhr-polling")
    reply = http(address, "GET", "/healthz")
    health = json.loads(reply.body)
    assert reply.headers["content-type"].startswith("application/json")
    assert health["status"] == "ok" and health["node"] == "local"
    assert health["members"] == 1
    assert health["sessions"] == {"websocket": 0, "polling": 1, "pending": 0}
    client.close()


@pytest.mark.parametrize(
    "path",
    [
        "/../pyproject.toml",
        "/%2e%2e/pyproject.toml",
        "/%2E%2E%2Fpyproject.toml",
        "/..%2fpyproject.toml",
        "/static/../../pyproject.toml",
        "/%252e%252e/pyproject.toml",
        "/..\\pyproject.toml",
        "/....//pyproject.toml",
        "//etc/passwd",
        "/../../../../etc/passwd",
    ],
)
def test_path_traversal_is_refused(address, path):
    reply = http(address, "GET", path)
    assert reply.status in (400, 403, 404)
    assert b"[project]" not in reply.body and b"root:" not in reply.body


def test_a_sibling_folder_with_the_same_prefix_is_out_of_reach(tmp_path):
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "index.html").write_text("page")
    (tmp_path / "static-secret").mkdir()
    (tmp_path / "static-secret" / "key.txt").write_text("secret")
    server = make_server(make_app(static_dir=tmp_path / "static"), port=0)
    server.start()
    try:
        address = server.address[:2]
        assert http(address, "GET", "/").body == b"page"
        reply = http(address, "GET", "/../static-secret/key.txt")
        assert reply.status == 403 and b"secret" not in reply.body
    finally:
        server.stop(timeout=1)


@pytest.mark.parametrize("origin", ["http://evil.example", "http://127.0.0.1:1", "null", "file://"])
def test_foreign_origins_are_refused(address, origin):
    handshake = http(address, "GET", "/socket.io/1/", headers={"Origin": origin})
    assert handshake.status == 403 and b"Origin" in handshake.body
    client = SocketIOClient(address, "xhr-polling")
    client.handshake()
    poll = http(address, "GET", client.transport_path(), headers={"Origin": origin})
    assert poll.status == 403


def test_own_origin_is_accepted_on_every_transport(address):
    origin = "http://%s:%d" % address
    for transport in ("websocket", "xhr-polling", "jsonp-polling"):
        client = chatter(address, transport, transport, origin=origin)
        assert client.call("rooms", {})["ok"]
        client.close()


@pytest.mark.parametrize("server_settings", [{"allowed_origins": ["https://chat.example.org"]}])
def test_allow_list(address):
    assert http(address, "GET", "/socket.io/1/", headers={"Origin": "https://chat.example.org"}).status == 200
    assert (
        http(address, "GET", "/socket.io/1/", headers={"Origin": "https://other.example.org"}).status == 403
    )


def test_socketio_url_without_chat_server_is_a_400():
    app = make_app()
    replies = []
    body = app({"PATH_INFO": "/socket.io/1/", "REQUEST_METHOD": "GET"}, lambda s, h: replies.append(s))
    assert replies == ["400 Bad Request"] and b"ChatServer" in b"".join(body)


def tiny_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"tiny app at " + environ["PATH_INFO"].encode()]


def test_middleware_embeds_the_chat_in_another_app():
    server = make_server(ChatMiddleware(tiny_app, history=3), port=0)
    server.start()
    try:
        address = server.address[:2]
        assert http(address, "GET", "/anything").body == b"tiny app at /anything"
        assert http(address, "GET", "/socket.io.js").status == 200
        alice = chatter(address, "alice")
        bob = chatter(address, "bob", "xhr-polling")
        for n in range(5):
            alice.call("message", {"room": "lobby", "id": "e%d" % n, "text": str(n)})
        gevent.joinall([gevent.spawn(bob.wait_event, "message", lambda a: a[0]["id"] == "e4")])
        late = chatter(address, "carol")
        assert [m["text"] for m in late.joined["messages"]] == ["2", "3", "4"]
        for client in (alice, bob, late):
            client.close()
    finally:
        server.stop(timeout=1)


@pytest.mark.parametrize("transports, named", [([], "(none)"), (["websocket", "htmlfile"], "htmlfile")])
def test_server_refuses_transports_it_does_not_advertise(app, transports, named):
    with pytest.raises(ValueError, match="not %s$" % re.escape(named)):
        ChatServer(("127.0.0.1", 0), app, transports=transports)
