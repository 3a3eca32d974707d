"""The Redis backplane fuzzed with the strategies that fuzz the in-memory one
(tests/unit/test_session_cleanup.py): whatever sessions send, no request reaches Redis
with a value it refuses, the backplane is never marked down, and once the sessions end
Redis holds no nickname, roster entry or owner record of theirs.
"""

import logging
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatwsgi.backplane.redis import RedisBackplane
from chatwsgi.chat import Chat
from chatwsgi.service import ChatService
from tests.support.sessions import raw_packets, run_sessions

pytestmark = pytest.mark.live


class WatchedBackplane(RedisBackplane):
    """Records every time it would mark itself down."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.downs = []

    def _went_down(self, error):
        self.downs.append(error)
        super()._went_down(error)


class Records(logging.Handler):
    """Keeps the log records at WARNING and above."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture(scope="module")
def records():
    handler = Records()
    logger = logging.getLogger("chatwsgi")
    logger.addHandler(handler)
    yield handler.records
    logger.removeHandler(handler)


def test_every_session_on_redis_ends_leaving_nothing_behind(redis_server, records):
    @settings(max_examples=150, deadline=None, database=None)
    @given(scripts=st.lists(st.lists(raw_packets, max_size=25), min_size=1, max_size=3))
    def sessions_on_redis(scripts):
        prefix = "fuzz-%s:" % uuid.uuid4().hex
        backplane = WatchedBackplane(redis_server.url, "f1", prefix=prefix)
        try:
            service = ChatService(Chat(new_token=lambda: "t", backplane=backplane))
            run_sessions(service, scripts)
            assert backplane.downs == []
            assert [r.getMessage() for r in records] == []
            assert service.chat.members == {} and service.hub._rooms == {}
            left = sorted(backplane.redis.scan_iter(prefix + "*"))
            # What outlives the sessions is the rooms' history and the node's generation.
            lasting = (":seq", ":log", ":epoch", ":ids", "generation", "rooms")
            assert [key for key in left if not key.endswith(lasting)] == []
            assert all(not backplane.redis.hlen(key) for key in left if key.endswith(":members"))
            assert backplane.redis.smembers(prefix + "rooms") <= {"lobby"}
        finally:
            backplane.close()

    sessions_on_redis()
