"""The metrics module with plain data: what each report does to the registry, and the do-nothing default."""

import inspect
from types import SimpleNamespace

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from chatwsgi.errors import ChatError
from chatwsgi.hub import LocalHub
from chatwsgi.metrics import (
    NO_METRICS,
    TRANSPORTS,
    ChatMetrics,
    NoMetrics,
    backplane_up,
    sessions_by_transport,
)
from chatwsgi.service import ChatService


def session(transport=None):
    """A session as the collector sees it: connected on ``transport``, or pending without one."""
    return SimpleNamespace(connection_established=transport is not None, bound_transport=transport)


@pytest.fixture
def metrics():
    return ChatMetrics(process=False)


def sample(metrics, name, **labels):
    return metrics.registry.get_sample_value(name, labels)


def test_sessions_by_transport_counts_every_transport_and_pending_apart():
    sessions = [session("websocket"), session("websocket"), session("jsonp-polling"), session(), session()]
    assert sessions_by_transport(sessions) == ({"websocket": 2, "xhr-polling": 0, "jsonp-polling": 1}, 2)
    assert sessions_by_transport([]) == (dict.fromkeys(TRANSPORTS, 0), 0)


@pytest.mark.parametrize(("state", "up"), [("up", 1), ("local", 1), ("down", 0)])
def test_backplane_up(state, up):
    assert backplane_up(state) == up


def test_every_report_of_the_default_is_implemented_by_chat_metrics():
    reports = [
        name for name, _ in inspect.getmembers(NoMetrics, inspect.isfunction) if not name.startswith("_")
    ]
    assert reports
    assert all(getattr(ChatMetrics, name) is not getattr(NoMetrics, name) for name in reports)


def test_the_default_does_nothing_and_serves_404():
    NO_METRICS.broadcast(3, 0.001)
    NO_METRICS.refused("too_long")
    replies = []
    body = NO_METRICS.wsgi_app()({}, lambda status, headers: replies.append(status))
    assert replies == ["404 Not Found"] and body == [b"Metrics are off.\n"]


def test_each_instance_has_its_own_registry_and_the_global_one_is_untouched():
    first, second = ChatMetrics(), ChatMetrics()
    first.message_posted()
    assert sample(first, "chatwsgi_messages_posted_total") == 1
    assert sample(second, "chatwsgi_messages_posted_total") == 0
    assert REGISTRY.get_sample_value("chatwsgi_messages_posted_total") is None
    assert sample(first, "process_open_fds") > 0  # the process collector, in its own registry


def test_a_broadcast_counts_its_recipients_once_and_its_time(metrics):
    metrics.broadcast(1000, 0.004)
    metrics.broadcast(2, 0.00002)
    assert sample(metrics, "chatwsgi_deliveries_total") == 1002
    assert sample(metrics, "chatwsgi_broadcast_seconds_count") == 2
    assert sample(metrics, "chatwsgi_broadcast_seconds_sum") == pytest.approx(0.00402)
    assert sample(metrics, "chatwsgi_broadcast_seconds_bucket", le="5e-05") == 1


def test_refusals_rate_limits_and_backplane_calls_are_labelled(metrics):
    for code in ("too_long", "too_long", "rate_limited"):
        metrics.refused(code)
    metrics.rate_limited("message")
    metrics.backplane_call("post", 0.0003)
    assert sample(metrics, "chatwsgi_refusals_total", code="too_long") == 2
    assert sample(metrics, "chatwsgi_refusals_total", code="rate_limited") == 1
    assert sample(metrics, "chatwsgi_rate_limited_total", kind="message") == 1
    assert sample(metrics, "chatwsgi_backplane_call_seconds_count", call="post") == 1


def test_loop_lag_never_goes_below_zero(metrics):
    metrics.loop_lag(-0.0001)  # the timer fired a hair early by the wall clock
    assert sample(metrics, "chatwsgi_event_loop_lag_last_seconds") == 0
    metrics.loop_lag(0.03)
    assert sample(metrics, "chatwsgi_event_loop_lag_last_seconds") == 0.03
    assert sample(metrics, "chatwsgi_event_loop_lag_seconds_count") == 2


def test_watched_sessions_and_backplane_are_read_when_scraped(metrics):
    assert sample(metrics, "chatwsgi_connections", transport="websocket") == 0
    assert sample(metrics, "chatwsgi_backplane_up", backplane="local") is None  # nothing watched yet
    sessions = {"a": session("websocket")}
    backplane = SimpleNamespace(name="redis", state=lambda: states[-1])
    states = ["up"]
    metrics.watch_sessions(sessions)
    metrics.watch_backplane(backplane)
    assert sample(metrics, "chatwsgi_connections", transport="websocket") == 1
    assert sample(metrics, "chatwsgi_backplane_up", backplane="redis") == 1
    sessions["b"], sessions["c"] = session("xhr-polling"), session()
    states.append("down")
    assert sample(metrics, "chatwsgi_connections", transport="xhr-polling") == 1
    assert sample(metrics, "chatwsgi_sessions_pending") == 1
    assert sample(metrics, "chatwsgi_backplane_up", backplane="redis") == 0


def test_the_wsgi_app_answers_the_prometheus_text_format(metrics):
    metrics.message_posted()
    replies = []
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics", "QUERY_STRING": ""}
    body = b"".join(metrics.wsgi_app()(environ, lambda status, headers: replies.append((status, headers))))
    assert replies[0][0] == "200 OK"
    families = {family.name: family for family in text_string_to_metric_families(body.decode())}
    assert families["chatwsgi_messages_posted"].samples[0].value == 1
    assert families["chatwsgi_connections"].type == "gauge"


def test_a_hub_with_metrics_reports_one_broadcast_with_its_recipients(metrics):
    hub, received = LocalHub(metrics), []
    for member in ("a", "b", "c"):
        hub.subscribe("lobby", member, received.append)
    hub.publish("lobby", "frame")
    hub.publish("lobby", "frame", exclude="a")
    hub.publish("empty", "frame")  # nobody here: no broadcast
    assert len(received) == 5
    assert sample(metrics, "chatwsgi_deliveries_total") == 5
    assert sample(metrics, "chatwsgi_broadcast_seconds_count") == 2


def test_a_hub_and_a_service_without_metrics_work_as_before():
    hub, received = LocalHub(), []
    hub.subscribe("lobby", "a", received.append)
    hub.publish("lobby", "frame")
    assert received == ["frame"] and hub.metrics is NO_METRICS
    assert ChatService().metrics is NO_METRICS


def test_a_service_counts_stored_messages_and_rate_limits_by_kind(metrics):
    service = ChatService(rate=1000, burst=1000, rates={"query": (0.001, 1)}, metrics=metrics)
    service.connect("m", lambda frame: None)
    service.nickname("m", {"nickname": "alice"})
    service.join("m", {"room": "lobby"})
    service.message("m", {"room": "lobby", "id": "x", "text": "hi"})
    service.message("m", {"room": "lobby", "id": "x", "text": "hi"})  # the same message again
    service.rooms("m")
    with pytest.raises(ChatError, match="Too many queries"):
        service.rooms("m")
    assert sample(metrics, "chatwsgi_messages_posted_total") == 1
    assert sample(metrics, "chatwsgi_deliveries_total") >= 1
    assert sample(metrics, "chatwsgi_rate_limited_total", kind="query") == 1
