"""Fixtures shared by every test group: the app factory and real servers on 127.0.0.1:0."""

import os

import pytest

from chatwsgi import make_app, make_server
from tests.support.cluster import Cluster

TEST_SERVER_SETTINGS = {
    "heartbeat_interval": 25,
    "heartbeat_timeout": 60,
    "close_timeout": 3,
    "poll_duration": 1,
    "handshake_timeout": 2,
    "tend_interval": 0.2,
}


def pytest_configure(config):
    # Every serve.py a test starts keeps history in memory, unless the test says where
    # (never in the checkout's data/ directory, shared between runs).
    os.environ.setdefault("CHATWSGI_DATA", ":memory:")


@pytest.fixture
def app_settings():
    """Chat settings for the app under test (override in a module to change them)."""
    return {}


@pytest.fixture
def server_settings():
    """Server settings for the server under test (override in a module to change them)."""
    return {}


@pytest.fixture
def app(app_settings):
    """The chat app, built by its factory."""
    return make_app(**app_settings)


@pytest.fixture
def server(app, server_settings):
    """A real ChatServer for ``app`` on 127.0.0.1 and a free port, stopped after the test."""
    settings = dict(TEST_SERVER_SETTINGS, **server_settings)
    chat_server = make_server(app, host="127.0.0.1", port=0, **settings)
    chat_server.start()
    yield chat_server
    chat_server.stop(timeout=1)


@pytest.fixture
def address(server):
    """(host, port) of the running server."""
    return server.address[:2]


@pytest.fixture
def fanout():
    """How the cluster fixture's nodes pass live frames: Redis pub/sub here; the live tests
    run each cluster test with ZeroMQ too (tests/live/conftest.py)."""
    return "redis"


@pytest.fixture
def cluster(tmp_path, fanout):
    """redis-server, nodes n1 and n2, and HAProxy in front of them; stopped after the test."""
    running = Cluster(tmp_path, fanout=fanout)
    yield running
    running.stop()
