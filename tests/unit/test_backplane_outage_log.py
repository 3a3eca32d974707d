"""What a Redis backplane logs while Redis is away: at once, then every ten seconds, not per retry."""

import logging

import redis

from chatwsgi.backplane.redis import DOWN_LOG_SECONDS, RedisBackplane


def test_an_outage_is_said_at_once_then_every_ten_seconds_not_per_retry(caplog):
    backplane = RedisBackplane("redis://127.0.0.1:1/0", "n1")  # never connects here
    now = [1000.0]
    backplane._clock = lambda: now[0]
    caplog.set_level(logging.INFO, logger="chatwsgi")
    refused = redis.ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")
    try:
        said = []
        for _ in range(50):  # 25 s of retries by the keeper and the subscriber, 0.5 s apart
            before = len(caplog.records)
            backplane._went_down(refused)
            if len(caplog.records) > before:
                said.append(now[0] - 1000.0)
            now[0] += 0.5
        assert said == [0.0, DOWN_LOG_SECONDS, 2 * DOWN_LOG_SECONDS]
        record = caplog.records[0]
        assert record.levelno == logging.WARNING
        assert record.getMessage().startswith(
            "backplane redis://127.0.0.1:1/0 down: Error 111 connecting to 127.0.0.1:1. Connection refused."
        )
        assert backplane.state() == "down"
    finally:
        backplane.close()
