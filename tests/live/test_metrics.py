"""/metrics: real clients move the Prometheus counters, read back with prometheus_client's own
parser, from the metrics app on a port of its own (never the chat's public port)."""

import re

import gevent.pywsgi
import pytest
from prometheus_client.parser import text_string_to_metric_families

from chatwsgi import protocol
from tests.support.chatting import TRANSPORTS, announced, chatter, wait_until
from tests.support.cluster import RedisServer
from tests.support.processes import ServeProcess
from tests.support.sioclient import SocketIOClient, http

pytestmark = pytest.mark.live

METRICS_RE = re.compile(r"metrics on (http://127\.0\.0\.1:\d+)/metrics")


@pytest.fixture
def metrics_address(app):
    """The app's metrics, served alone on 127.0.0.1 and a free port (as serve.py does)."""
    metrics_server = gevent.pywsgi.WSGIServer(("127.0.0.1", 0), app.metrics_app, log=None)
    metrics_server.start()
    yield metrics_server.address[:2]
    metrics_server.stop(timeout=1)


def scrape(address):
    """Every sample of a GET /metrics: {(name, ((label, value), ...)): value}."""
    reply = http(address, "GET", "/metrics")
    assert reply.status == 200, reply.status
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(reply.text)
        for sample in family.samples
    }


def value(samples, name, **labels):
    """One sample's value; 0 for a labelled series not seen yet (a counter never incremented)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def leave(*clients):
    """Disconnect politely (a polling session ends at once, not after its close timeout) and close."""
    for client in clients:
        client.disconnect()
        client.close()


def test_sessions_and_connections_by_transport(server, address, metrics_address):
    clients = [chatter(address, "user-%s" % transport, transport) for transport in TRANSPORTS]
    samples = scrape(metrics_address)
    for transport in TRANSPORTS:
        assert value(samples, "chatwsgi_connections", transport=transport) == 1
    assert value(samples, "chatwsgi_sessions_opened_total") == 3
    assert value(samples, "chatwsgi_sessions_closed_total") == 0
    leave(*clients)
    wait_until(lambda: value(scrape(metrics_address), "chatwsgi_sessions_closed_total") == 3)
    samples = scrape(metrics_address)
    assert [value(samples, "chatwsgi_connections", transport=t) for t in TRANSPORTS] == [0, 0, 0]
    assert value(samples, "chatwsgi_sessions_opened_total") == 3


def test_a_handshake_without_a_connection_is_pending(server, address, metrics_address):
    client = SocketIOClient(address)
    client.handshake()
    samples = scrape(metrics_address)
    assert value(samples, "chatwsgi_sessions_pending") == 1
    assert value(samples, "chatwsgi_sessions_opened_total") == 1
    assert sum(value(samples, "chatwsgi_connections", transport=t) for t in TRANSPORTS) == 0
    client.close()


def test_a_message_to_three_members_is_one_post_three_deliveries_one_broadcast(
    server, address, metrics_address
):
    alice, bob = chatter(address, "alice", room="r"), chatter(address, "bob", "xhr-polling", room="r")
    carol = chatter(address, "carol", "jsonp-polling", room="r")
    chatter_elsewhere = chatter(address, "dave", room="elsewhere")
    announced(alice, "join", "carol")  # the joins' notices are out (they go in batches)
    before = scrape(metrics_address)
    assert alice.call("message", {"room": "r", "id": "m1", "text": "hello"})["ok"]
    after = scrape(metrics_address)
    assert (
        value(after, "chatwsgi_messages_posted_total") - value(before, "chatwsgi_messages_posted_total") == 1
    )
    assert value(after, "chatwsgi_deliveries_total") - value(before, "chatwsgi_deliveries_total") == 3
    count = "chatwsgi_broadcast_seconds_count"
    assert value(after, count) - value(before, count) == 1
    assert value(after, "chatwsgi_broadcast_seconds_sum") > value(before, "chatwsgi_broadcast_seconds_sum")
    # The same id again is the same message: acknowledged, not stored or sent again.
    assert alice.call("message", {"room": "r", "id": "m1", "text": "hello"})["ok"]
    again = scrape(metrics_address)
    assert value(again, "chatwsgi_messages_posted_total") == value(after, "chatwsgi_messages_posted_total")
    assert value(again, "chatwsgi_deliveries_total") == value(after, "chatwsgi_deliveries_total")
    wait_until(lambda: all(c.events("message") for c in (alice, bob, carol)))
    assert not chatter_elsewhere.events("message")
    leave(alice, bob, carol, chatter_elsewhere)


@pytest.mark.parametrize("app_settings", [{"rate": 0.1, "burst": 2}])
def test_refusals_by_code_and_rate_limits_by_kind(server, address, metrics_address):
    alice = chatter(address, "alice")
    too_long = alice.call("message", {"room": "lobby", "id": "long", "text": "x" * 2001})
    assert too_long["code"] == "too_long"
    assert alice.call("message", {"room": "lobby", "id": "ok", "text": "fits"})["ok"]
    refused = alice.call("message", {"room": "lobby", "id": "late", "text": "over the rate"})
    assert refused["code"] == "rate_limited"
    alice.send("not a packet")  # refused by the codec, before any namespace
    alice.wait_event("error", lambda args: args[0]["code"] == "invalid_packet")
    samples = scrape(metrics_address)
    assert value(samples, "chatwsgi_refusals_total", code="too_long") == 1
    assert value(samples, "chatwsgi_refusals_total", code="rate_limited") == 1
    assert value(samples, "chatwsgi_refusals_total", code="invalid_packet") == 1
    assert value(samples, "chatwsgi_rate_limited_total", kind="message") == 1
    assert value(samples, "chatwsgi_messages_posted_total") == 1
    leave(alice)


@pytest.mark.parametrize("app_settings", [{"rate": 1e6, "burst": 10**6}])
@pytest.mark.parametrize("server_settings", [{"max_backlog_bytes": 1500, "close_timeout": 30}])
def test_a_slow_consumer_dropped_is_counted(server, address, metrics_address):
    poller = SocketIOClient(address, "xhr-polling")
    poller.handshake()
    http(address, "GET", poller.transport_path())  # connected, then never polls again
    poller.send("1::/chat")
    for msg_id, (name, request) in enumerate(
        [("nickname", {"nickname": "slow"}), ("join", {"room": "lobby"})]
    ):
        packet = {"type": "event", "name": name, "args": [request], "endpoint": "/chat", "id": msg_id + 1}
        poller.send(protocol.encode_packet(dict(packet, ack="data")))
    sender = chatter(address, "sender")
    posted = 0
    while poller.session_id in server.sockets and posted < 100:
        posted += 1
        assert sender.call("message", {"room": "lobby", "id": "m%d" % posted, "text": "y" * 50})["ok"]
    wait_until(lambda: poller.session_id not in server.sockets)
    samples = scrape(metrics_address)
    assert value(samples, "chatwsgi_slow_consumers_dropped_total") == 1
    assert value(samples, "chatwsgi_sessions_closed_total") == 1
    poller.close()
    leave(sender)


def test_backplane_state_loop_lag_and_process_metrics(server, metrics_address):
    assert value(scrape(metrics_address), "chatwsgi_backplane_up", backplane="local") == 1
    # The session tender wakes every tend_interval (0.2 s here) and reports how late it woke.
    wait_until(lambda: value(scrape(metrics_address), "chatwsgi_event_loop_lag_seconds_count"), timeout=5)
    samples = scrape(metrics_address)
    assert 0 <= value(samples, "chatwsgi_event_loop_lag_last_seconds") < 1
    assert value(samples, "process_open_fds") > 0


def test_the_public_port_answers_metrics_as_any_unknown_path(server, address, metrics_address):
    metrics = http(address, "GET", "/metrics")
    unknown = http(address, "GET", "/no-such-file.txt")
    assert (metrics.status, metrics.body) == (unknown.status, unknown.body) == (404, b"No such file.\n")
    assert b"chatwsgi_" in http(metrics_address, "GET", "/metrics").body


@pytest.mark.slow
def test_serve_py_serves_metrics_on_its_own_port_only_when_asked():
    server = ServeProcess("--metrics-port", "0")
    try:
        metrics_url = server.wait_for_output(METRICS_RE).group(1)
        metrics_address = address_of(metrics_url)
        assert metrics_address != address_of(server.url)
        alice = chatter(address_of(server.url), "alice")
        assert alice.call("message", {"room": "lobby", "id": "m1", "text": "hi"})["ok"]
        samples = scrape(metrics_address)
        assert value(samples, "chatwsgi_messages_posted_total") == 1
        assert value(samples, "chatwsgi_connections", transport="websocket") == 1
        assert value(samples, "chatwsgi_backplane_up", backplane="local") == 1
        assert http(address_of(server.url), "GET", "/metrics").status == 404
        leave(alice)
    finally:
        assert server.stop() == 0
    off = ServeProcess()
    try:
        # Printed before "serving on", which ServeProcess waited for.
        assert METRICS_RE.search(off.output.decode()) is None
        # Answered only once serve.py waits for a signal, its handlers set (a SIGTERM before
        # that kills it outright).
        assert http(address_of(off.url), "GET", "/healthz").status == 200
    finally:
        assert off.stop() == 0


@pytest.mark.slow
def test_serve_py_metrics_port_from_the_environment_with_redis(tmp_path):
    redis_server = RedisServer(tmp_path)
    server = ServeProcess("--redis", redis_server.url, "--node-ttl", "1", env={"CHATWSGI_METRICS_PORT": "0"})
    try:
        metrics_address = address_of(server.wait_for_output(METRICS_RE).group(1))
        assert value(scrape(metrics_address), "chatwsgi_backplane_up", backplane="redis") == 1
        alice = chatter(address_of(server.url), "alice")
        assert alice.call("message", {"room": "lobby", "id": "m1", "text": "hi"})["ok"]
        samples = scrape(metrics_address)
        assert value(samples, "chatwsgi_backplane_call_seconds_count", call="post") == 1
        assert value(samples, "chatwsgi_backplane_call_seconds_count", call="claim") == 1
        assert value(samples, "chatwsgi_backplane_call_seconds_sum", call="post") > 0
        assert value(samples, "chatwsgi_deliveries_total") >= 1
        redis_server.stop()
        wait_until(lambda: value(scrape(metrics_address), "chatwsgi_backplane_up", backplane="redis") == 0)
        leave(alice)
    finally:
        assert server.stop() == 0  # its members could not depart with Redis gone; it still exits cleanly
        redis_server.stop()


def address_of(url):
    host, port = url.rsplit("/", 1)[-1].split(":")
    return host, int(port)
