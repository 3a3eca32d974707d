"""Fixtures of the live tests."""

import pytest

from tests.support.cluster import RedisServer
from tests.support.faults import Faults


@pytest.fixture
def faults():
    """What the server reports while the test runs; asserted clean at the end."""
    recorder = Faults().start()
    yield recorder
    recorder.stop()
    recorder.assert_clean()


@pytest.fixture
def clients():
    """Clients a test opens, closed after it."""
    opened = []
    yield opened
    for client in opened:
        client.close()


@pytest.fixture(params=["redis", "zmq"])
def fanout(request):
    """Each cluster test with both buses: Redis pub/sub, and ZeroMQ through a forwarder."""
    return request.param


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    """A redis-server with deploy/redis.conf, shared by a module's tests."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()
