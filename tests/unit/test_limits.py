"""limits.py: the token bucket, on a fake clock."""

import pytest

from chatwsgi.errors import ChatError
from chatwsgi.limits import EVENT_RATES, EventLimits, Flood, TokenBucket


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, now=100.0):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


def take_all(bucket):
    """How many tokens the bucket gives before refusing, and the refusal."""
    taken = 0
    while True:
        try:
            bucket.take()
        except ChatError as refusal:
            return taken, refusal
        taken += 1
        assert taken <= 1000, "the bucket never refused"


def test_burst_then_refusal():
    clock = FakeClock()
    bucket = TokenBucket(rate=2.0, burst=4, clock=clock)
    for _ in range(4):
        bucket.take()
    with pytest.raises(ChatError) as info:
        bucket.take()
    assert info.value.code == "rate_limited"
    assert info.value.as_dict() == {
        "code": "rate_limited",
        "message": "Too many messages: wait 0.5 s and try again.",
    }


def test_refusal_spends_nothing_and_keeps_refusing_without_time():
    clock = FakeClock()
    bucket = TokenBucket(rate=1.0, burst=1, clock=clock)
    bucket.take()
    for _ in range(3):
        with pytest.raises(ChatError):
            bucket.take()
    assert bucket.tokens == 0.0


def test_refill_at_rate():
    clock = FakeClock()
    bucket = TokenBucket(rate=2.0, burst=4, clock=clock)
    assert take_all(bucket)[0] == 4
    clock.advance(0.25)  # half a token
    assert take_all(bucket)[0] == 0
    clock.advance(0.25)  # one token in all
    assert take_all(bucket)[0] == 1
    clock.advance(1.5)  # three tokens
    assert take_all(bucket)[0] == 3


def test_wait_hint_reflects_the_partial_token():
    clock = FakeClock()
    bucket = TokenBucket(rate=2.0, burst=1, clock=clock)
    bucket.take()
    clock.advance(0.25)
    _, refusal = take_all(bucket)
    assert refusal.message == "Too many messages: wait 0.2 s and try again."  # 0.25 s, rounded


def test_never_above_burst():
    clock = FakeClock()
    bucket = TokenBucket(rate=5.0, burst=3, clock=clock)
    assert take_all(bucket)[0] == 3
    clock.advance(3600)
    assert take_all(bucket)[0] == 3
    assert bucket.tokens < 1.0


def test_a_fresh_bucket_starts_full_even_after_a_long_idle_start():
    clock = FakeClock(now=0.0)
    bucket = TokenBucket(rate=1.0, burst=2, clock=clock)
    clock.advance(1000)
    assert take_all(bucket)[0] == 2


def test_defaults_are_five_per_second_burst_ten():
    clock = FakeClock()
    bucket = TokenBucket(clock=clock)
    assert (bucket.rate, bucket.burst) == (5.0, 10.0)
    assert take_all(bucket)[0] == 10
    clock.advance(1.0)
    assert take_all(bucket)[0] == 5


def test_refusals_far_past_the_burst_are_a_flood():
    clock = FakeClock()
    bucket = TokenBucket(rate=1.0, burst=3, clock=clock)
    assert take_all(bucket)[0] == 3
    for _ in range(5):  # refused, told to wait: 6 refusals (two bursts) are allowed
        with pytest.raises(ChatError) as info:
            bucket.take()
        assert info.value.code == "rate_limited"
    with pytest.raises(Flood) as info:
        bucket.take()
    assert info.value.as_dict() == {"code": "flood", "message": "Far too many messages: disconnected."}


def test_a_client_that_waits_for_its_refusals_never_floods():
    clock = FakeClock()
    bucket = TokenBucket(rate=1.0, burst=3, clock=clock)
    for _ in range(100):  # like the page: retry a second after a refusal, for ever
        try:
            bucket.take()
        except ChatError as refusal:
            assert refusal.code == "rate_limited"
        clock.advance(0.5)


def test_event_limits_keep_one_bucket_per_kind():
    clock = FakeClock()
    limits = EventLimits({"message": (1.0, 2), "room": (1.0, 1)}, clock)
    limits.take("message")
    limits.take("message")
    limits.take("room")
    with pytest.raises(ChatError, match="Too many messages"):
        limits.take("message")
    with pytest.raises(ChatError, match="Too many joins and leaves"):
        limits.take("room")


def test_every_event_kind_has_a_limit():
    limits = EventLimits()
    for kind in EVENT_RATES:
        limits.take(kind)
    assert set(limits.buckets) == {"message", "typing", "room", "nickname", "query"}
