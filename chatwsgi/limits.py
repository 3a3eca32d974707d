"""Per-connection rate limiting: a token bucket on an injectable clock."""

import time

from chatwsgi.errors import ChatError


class TokenBucket:
    """Allows ``rate`` actions per second on average, up to ``burst`` at once."""

    __slots__ = ("rate", "burst", "tokens", "updated", "clock")

    def __init__(self, rate=5.0, burst=10, clock=time.monotonic):
        self.rate = float(rate)
        self.burst = float(burst)
        self.tokens = float(burst)
        self.clock = clock
        self.updated = clock()

    def take(self):
        """Spend one token; raise ChatError('rate_limited') when the bucket is empty."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens < 1.0:
            wait = (1.0 - self.tokens) / self.rate
            raise ChatError("rate_limited", "Too many messages: wait %.1f s and try again." % wait)
        self.tokens -= 1.0
