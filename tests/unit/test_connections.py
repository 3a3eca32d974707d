"""connections.py: the connection limits' defaults, checks and admission tiers."""

import pytest

from chatwsgi.connections import (
    CROWDED,
    FULL,
    NORMAL,
    OWN_DESCRIPTORS,
    Connections,
    canned_response,
    connection_limits,
    pop_connection_config,
)


@pytest.mark.parametrize(
    ("descriptors", "limits"),
    [
        (20_000, (20_000 - OWN_DESCRIPTORS, 100)),
        (1024, (960, 96)),
        (256, (192, 19)),
        (70, (6, 0)),
        (10, (1, 0)),
    ],
)
def test_defaults_follow_the_descriptor_limit(descriptors, limits):
    assert connection_limits(None, None, descriptors) == limits


def test_given_limits_are_kept():
    assert connection_limits(50, 5, 20_000) == (50, 5)
    assert connection_limits(50, None, 20_000) == (50, 5)
    assert connection_limits(50, 0, 10) == (50, 0)


@pytest.mark.parametrize(("limit", "reserved"), [(0, 0), (50, 50), (50, 60), (50, -1)])
def test_impossible_limits_are_refused(limit, reserved):
    with pytest.raises(ValueError, match="reserved_connections"):
        connection_limits(limit, reserved, 20_000)


def test_pop_connection_config_takes_only_its_settings():
    settings = {"request_timeout": 2, "idle_timeout": 3, "max_connections": 50, "history": 9}
    config = pop_connection_config(settings, descriptors=1000)
    assert settings == {"history": 9}
    assert config == {
        "request_timeout": 2,
        "idle_timeout": 3,
        "max_pending_sessions": 10_000,
        "max_connections": 50,
        "reserved_connections": 5,
    }


@pytest.mark.parametrize("bad", [{"request_timeout": 0}, {"idle_timeout": -1}, {"max_pending_sessions": 0}])
def test_pop_connection_config_refuses_nonsense(bad):
    with pytest.raises(ValueError):
        pop_connection_config(dict(bad), descriptors=1000)


def test_admission_tiers():
    connections = Connections(limit=10, reserved=3)
    seen = []
    for _ in range(12):
        connections.opened()
        seen.append(connections.admission())
    assert seen == [NORMAL] * 7 + [CROWDED] * 3 + [FULL] * 2
    for _ in range(5):
        connections.closed()
    assert connections.open == 7 and connections.admission() is NORMAL


def test_no_reserve_goes_straight_from_normal_to_full():
    connections = Connections(limit=2, reserved=0)
    connections.opened(), connections.opened()
    assert connections.admission() is NORMAL
    connections.opened()
    assert connections.admission() is FULL


def test_canned_response():
    response = canned_response("503 Service Unavailable", "Full.", ("Retry-After", "5"))
    assert response == (
        b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: text/plain\r\n"
        b"Retry-After: 5\r\nContent-Length: 6\r\n\r\nFull.\n"
    )
