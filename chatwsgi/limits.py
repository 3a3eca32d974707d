"""Rate limits: token buckets on an injectable clock, and one session's buckets per event kind.

Pure. Over a limit a request is refused (``rate_limited``, spending nothing) and the
refusal counted; the count drains at the bucket's rate. A client sending at more than twice
its limit for long enough to pile up ``FLOOD_BURSTS`` bursts of refusals is far over it: it
is told ``flood`` (the caller then disconnects it). A client that waits for its refusals,
as the page does, never gets near.
"""

import time

from chatwsgi.errors import ChatError

# How many refusals piled up make a flood, in bursts.
FLOOD_BURSTS = 2

# Event kinds a chat session is limited on: (rate per second, burst).
EVENT_RATES = {
    "message": (5.0, 10),
    "typing": (2.0, 4),
    "room": (2.0, 10),  # join and leave
    "nickname": (0.5, 5),
    "query": (5.0, 20),  # roster, rooms, catch_up, history
}
DESCRIPTIONS = {
    "message": "messages",
    "typing": "typing notices",
    "room": "joins and leaves",
    "nickname": "nickname changes",
    "query": "queries",
}


class Flood(ChatError):
    """Far over a limit: the client should be disconnected."""

    def __init__(self, what):
        super().__init__("flood", "Far too many %s: disconnected." % what)


class TokenBucket:
    """Allows ``rate`` actions per second on average, up to ``burst`` at once."""

    __slots__ = ("rate", "burst", "tokens", "updated", "clock", "refused")

    def __init__(self, rate=5.0, burst=10, clock=time.monotonic):
        self.rate = float(rate)
        self.burst = float(burst)
        self.tokens = float(burst)
        self.clock = clock
        self.updated = clock()
        self.refused = 0.0  # refusals piled up, draining at ``rate``

    def take(self, what="messages"):
        """Spend one token; ChatError('rate_limited') when empty, Flood far past empty."""
        now = self.clock()
        refill = (now - self.updated) * self.rate
        self.tokens = min(self.burst, self.tokens + refill)
        self.refused = max(0.0, self.refused - refill)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return
        self.refused += 1
        if self.refused > FLOOD_BURSTS * self.burst:
            raise Flood(what)
        wait = (1.0 - self.tokens) / self.rate
        raise ChatError("rate_limited", "Too many %s: wait %.1f s and try again." % (what, wait))


class EventLimits:
    """One session's buckets, one per event kind, made on first use."""

    __slots__ = ("rates", "clock", "buckets")

    def __init__(self, rates=None, clock=time.monotonic):
        self.rates = EVENT_RATES if rates is None else rates
        self.clock = clock
        self.buckets = {}

    def take(self, kind):
        """Spend one token of ``kind`` (a key of the rates)."""
        bucket = self.buckets.get(kind)
        if bucket is None:
            rate, burst = self.rates[kind]
            bucket = self.buckets[kind] = TokenBucket(rate, burst, self.clock)
        bucket.take(DESCRIPTIONS.get(kind, kind))
