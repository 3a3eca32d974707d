"""The chat's Prometheus metrics: what each part reports, in a registry the app owns.

Pure but for the ``prometheus_client`` objects: no gevent, no sockets, no global
registry. ``ChatMetrics`` is made by the app (``ChatMiddleware``) or by serve.py and
handed to what reports (the service, hub, server, Redis backplane); ``NO_METRICS`` is
the do-nothing default of anything built without one, so a unit test builds a
``ChatService`` or ``LocalHub`` exactly as before.

Each call site is one call per event: a broadcast reports once with its number of
recipients, never once per delivery (the fan-out spends ~1-10 µs per delivery; reporting
a broadcast costs ~3 µs, about what one counter increment per delivery would cost each
time). Gauges of current state (connections by transport, the backplane) are read when
scraped, so nothing on the hot paths keeps them.
"""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

TRANSPORTS = ("websocket", "xhr-polling", "jsonp-polling")
# Seconds. A broadcast costs ~1-10 µs a member: 10 µs is a small room, 1 s a huge one on a
# busy loop. A Redis call on a LAN takes ~0.1-1 ms; 1 s (the connect timeout) is an outage.
BROADCAST_BUCKETS = (1e-5, 5e-5, 1e-4, 5e-4, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0)
BACKPLANE_BUCKETS = (1e-4, 2.5e-4, 5e-4, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5)
LOOP_LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def sessions_by_transport(sessions):
    """Connected sessions by transport (each of TRANSPORTS, maybe 0), and how many are pending
    (handshaken, not connected yet): ``(counts, pending)``."""
    counts = dict.fromkeys(TRANSPORTS, 0)
    pending = 0
    for session in sessions:
        if not session.connection_established:
            pending += 1
        else:
            counts[session.bound_transport] = counts.get(session.bound_transport, 0) + 1
    return counts, pending


def backplane_up(state):
    """1 when the backplane answers ('up', or 'local': in memory, always there), else 0."""
    return 0 if state == "down" else 1


class NoMetrics:
    """Reports nothing: the default of every part built without a ``ChatMetrics``."""

    def session_opened(self):
        """A Socket.IO session was handshaken."""

    def session_closed(self):
        """A session ended and left the server."""

    def message_posted(self):
        """A message was stored (not a repeat of an id already stored)."""

    def broadcast(self, recipients, seconds):
        """One frame was handed to ``recipients`` members in ``seconds``."""

    def slow_consumer_dropped(self):
        """A client too far behind was dropped."""

    def refused(self, code):
        """A client was answered an error with ``code``."""

    def rate_limited(self, kind):
        """A request of ``kind`` (a key of ``limits.EVENT_RATES``, or 'packets') was over its rate."""

    def backplane_call(self, call, seconds):
        """The backplane's ``call`` (a Redis round trip, maybe a few) took ``seconds``."""

    def loop_lag(self, seconds):
        """A greenlet woke ``seconds`` later than it asked to."""

    def watch_sessions(self, sessions):
        """Report connections by transport from ``sessions`` (a live view, read when scraped)."""

    def watch_backplane(self, backplane):
        """Report whether ``backplane`` is up (read when scraped)."""

    def wsgi_app(self):
        """A WSGI app answering 404: there are no metrics to serve."""
        return no_metrics


def no_metrics(environ, start_response):
    """The answer where metrics are off."""
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"Metrics are off.\n"]


NO_METRICS = NoMetrics()


class ChatMetrics(NoMetrics):
    """The chat's metrics in a ``CollectorRegistry`` of their own; ``wsgi_app()`` serves them."""

    def __init__(self, registry=None, process=True):
        self.registry = registry if registry is not None else CollectorRegistry()
        if process:  # CPU, memory and open descriptors, read from /proc when scraped
            ProcessCollector(registry=self.registry)
        self.sessions = SessionsCollector()
        self.backplane = BackplaneCollector()
        self.registry.register(self.sessions)
        self.registry.register(self.backplane)

        def counter(name, documentation, labels=()):
            return Counter(name, documentation, labels, registry=self.registry)

        def histogram(name, documentation, buckets, labels=()):
            return Histogram(name, documentation, labels, registry=self.registry, buckets=buckets)

        self.sessions_opened = counter("chatwsgi_sessions_opened", "Socket.IO sessions handshaken.")
        self.sessions_closed = counter("chatwsgi_sessions_closed", "Sessions ended, however they ended.")
        self.messages_posted = counter("chatwsgi_messages_posted", "Messages stored (repeated ids not).")
        self.deliveries = counter("chatwsgi_deliveries", "Frames handed to members by broadcasts.")
        self.slow_consumers = counter(
            "chatwsgi_slow_consumers_dropped", "Sessions dropped for an unread backlog past the limit."
        )
        self.refusals = counter("chatwsgi_refusals", "Error answers sent to clients, by code.", ["code"])
        self.rate_limits = counter(
            "chatwsgi_rate_limited", "Requests refused for their rate, by limited kind.", ["kind"]
        )
        self.broadcast_time = histogram(
            "chatwsgi_broadcast_seconds", "Time of one broadcast to a room's members here.", BROADCAST_BUCKETS
        )
        self.backplane_time = histogram(
            "chatwsgi_backplane_call_seconds",
            "Time of one Redis backplane call.",
            BACKPLANE_BUCKETS,
            ["call"],
        )
        self.lag = histogram(
            "chatwsgi_event_loop_lag_seconds", "How late a timed greenlet woke.", LOOP_LAG_BUCKETS
        )
        self.last_lag = Gauge(
            "chatwsgi_event_loop_lag_last_seconds", "The latest event-loop lag seen.", registry=self.registry
        )

    def wsgi_app(self):
        """A WSGI app answering every GET with these metrics in the Prometheus text format."""
        return make_wsgi_app(self.registry)

    def session_opened(self):
        self.sessions_opened.inc()

    def session_closed(self):
        self.sessions_closed.inc()

    def message_posted(self):
        self.messages_posted.inc()

    def broadcast(self, recipients, seconds):
        self.deliveries.inc(recipients)
        self.broadcast_time.observe(seconds)

    def slow_consumer_dropped(self):
        self.slow_consumers.inc()

    def refused(self, code):
        self.refusals.labels(code).inc()

    def rate_limited(self, kind):
        self.rate_limits.labels(kind).inc()

    def backplane_call(self, call, seconds):
        self.backplane_time.labels(call).observe(seconds)

    def loop_lag(self, seconds):
        # A timer may fire a hair early by the wall clock (the loop's clock is read once per turn).
        seconds = max(0.0, seconds)
        self.lag.observe(seconds)
        self.last_lag.set(seconds)

    def watch_sessions(self, sessions):
        self.sessions.sessions = sessions

    def watch_backplane(self, backplane):
        self.backplane.backplane = backplane


class SessionsCollector(Collector):
    """``chatwsgi_connections{transport}`` and ``chatwsgi_sessions_pending``, counted when scraped."""

    def __init__(self):
        self.sessions = {}  # session id -> session: the server's table once it is watched

    def describe(self):
        return list(self.families())

    def collect(self):
        counts, pending = sessions_by_transport(list(self.sessions.values()))
        connections, waiting = self.families()
        for transport, count in counts.items():
            connections.add_metric([transport], count)
        waiting.add_metric([], pending)
        return [connections, waiting]

    @staticmethod
    def families():
        """The two families, empty."""
        return (
            GaugeMetricFamily(
                "chatwsgi_connections", "Connected sessions by transport.", labels=["transport"]
            ),
            GaugeMetricFamily("chatwsgi_sessions_pending", "Sessions handshaken but not connected yet."),
        )


class BackplaneCollector(Collector):
    """``chatwsgi_backplane_up{backplane}``: 1 up (or local), 0 down, read when scraped."""

    def __init__(self):
        self.backplane = None

    def describe(self):
        return [self.family()]

    def collect(self):
        family = self.family()
        if self.backplane is not None:
            family.add_metric([self.backplane.name], backplane_up(self.backplane.state()))
        return [family]

    @staticmethod
    def family():
        """The family, empty."""
        return GaugeMetricFamily(
            "chatwsgi_backplane_up",
            "Whether the backplane answers: 1 up or local, 0 down.",
            labels=["backplane"],
        )
