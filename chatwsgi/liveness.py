"""When client and server must hear from each other: one place for every liveness timing.

Pure: settings in, the handshake's advertised timeouts and the heartbeat schedule out.

The Socket.IO 0.9 client re-arms a timer of the advertised *close timeout* on every frame it
receives, and one of the *heartbeat timeout* on every packet; when either fires it drops the
connection and reconnects (a user seen leaving and coming back). So the server must be heard
well inside the shorter of the two, on every transport:

- websocket: a heartbeat is due ``heartbeat_every`` after the last, and the session tender
  sends it on its next visit to that session, at most ``tend_lag`` later (the tender visits
  one of ``slices`` slices of the sessions per wake-up; fewer slices for short timeouts);
- polling: a long poll is answered (with a noop if nothing else) after ``poll_duration``.

Both are derived here so the worst silence a client sees stays within ``MARGIN`` of its
timeout whatever the settings; settings that cannot keep that promise are refused.
"""

import math
from dataclasses import dataclass

# The timings an operator sets (serve.py flags); the tender's pace is a server setting too.
TIMINGS = ("heartbeat_interval", "heartbeat_timeout", "close_timeout", "poll_duration")
SETTINGS = TIMINGS + ("tend_interval", "tend_slices")

# The client may hear nothing for at most this share of its timeout. The 0.9 reference's
# defaults (25 s heartbeats, 60 s timeouts) leave the same room for a late heartbeat.
MARGIN = 0.5


@dataclass(frozen=True)
class Liveness:
    """The liveness settings of a server, checked, and what follows from them (seconds)."""

    heartbeat_interval: float = 25  # the most we wait between heartbeats
    heartbeat_timeout: float = 60  # advertised; a silent websocket client is gone after it
    close_timeout: float = 60  # advertised; a polling client silent this long is gone
    poll_duration: float = 20  # the most a long poll is held before a noop answer
    tend_interval: float = 1.0  # the session tender wakes this often...
    tend_slices: int = 5  # ...and visits one slice of (at most) this many per wake-up

    def __post_init__(self):
        for name in ("heartbeat_interval", "poll_duration", "tend_interval"):
            if not getattr(self, name) > 0:
                raise ValueError("%s must be positive" % name)
        if self.tend_slices < 1:
            raise ValueError("tend_slices must be at least 1")
        if min(self.advertised) < 1:
            raise ValueError("heartbeat_timeout and close_timeout are whole seconds, at least 1")
        if self.tend_interval > self.client_timeout * MARGIN / 2:
            raise ValueError(
                "the session tender wakes every %.3g s (tend_interval), too rarely for a client "
                "timeout of %d s" % (self.tend_interval, self.client_timeout)
            )

    @property
    def advertised(self):
        """(heartbeat timeout, close timeout) as the handshake says them: whole seconds."""
        return math.floor(self.heartbeat_timeout), math.floor(self.close_timeout)

    @property
    def client_timeout(self):
        """How long the client waits without hearing from us before it drops the connection."""
        return min(self.advertised)

    @property
    def slices(self):
        """Into how many slices the tender divides the sessions: ``tend_slices``, or fewer so
        that a session is visited at least every half of the client's margin."""
        fits = math.floor(self.client_timeout * MARGIN / 2 / self.tend_interval)
        return max(1, min(self.tend_slices, fits))

    @property
    def tend_lag(self):
        """The longest a session waits for the tender's next visit."""
        return self.tend_interval * self.slices

    @property
    def heartbeat_every(self):
        """How long after the last heartbeat the next is due: the setting, or less if the
        tender's lag would otherwise let the client's timeout run out."""
        return min(self.heartbeat_interval, self.client_timeout * MARGIN - self.tend_lag)

    @property
    def poll_hold(self):
        """How long a long poll is held: the setting, or less to answer inside the timeout."""
        return min(self.poll_duration, self.client_timeout * MARGIN)

    @property
    def worst_silence(self):
        """The longest a connected client can go without a frame from us, on any transport."""
        return max(self.heartbeat_every + self.tend_lag, self.poll_hold)
