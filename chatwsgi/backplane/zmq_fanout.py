"""Live fan-out between nodes over ZeroMQ, through a forwarder (``python -m chatwsgi.forwarder``).

The Redis backplane's other bus: Redis keeps sequence numbers, history and rosters, and
the live frames go through ZeroMQ instead of Redis pub/sub, off Redis's one core. Each
node has a PUB socket connected to the forwarder's XSUB port and a SUB socket connected
to its XPUB port (the next one); a room's frames are two-part messages, the room's
channel name then the frame, and a node subscribes to the channel of each room it has
members in. The forwarder passes subscriptions upstream, so a publisher sends a room's
frames only when some node wants them.

ZeroMQ drops what it cannot deliver (a forwarder away, a queue at its high-water mark)
and does not order two nodes' messages. The backplane does not trust it: it delivers
each room in sequence order, holds an early message for a moment
(``sequencing.Holdback``), fetches from Redis what did not come, and sweeps for rooms
left behind. Frames are UTF-8 text, never pickles.

Sockets are ``zmq.green``'s: a greenlet waiting on one yields to the others, and there is
no thread per socket.
"""

import contextlib
import logging
from urllib.parse import urlsplit

import gevent
import zmq.green as zmq
from zmq.utils.monitor import recv_monitor_message

from chatwsgi.forwarder import HIGH_WATER_MARK, subscribers_port

log = logging.getLogger(__name__)

SCHEME = "zmq"


def forwarder_ports(url):
    """(host, publishers' port, subscribers' port) of a ``zmq://HOST:PORT`` url: publishers
    connect to PORT (the forwarder's XSUB), subscribers to PORT + 1 (its XPUB)."""
    parts = urlsplit(url)
    if parts.scheme != SCHEME or not parts.hostname or not parts.port or parts.path not in ("", "/"):
        raise ValueError("a fan-out bus is zmq://HOST:PORT, not %r" % url)
    return parts.hostname, parts.port, subscribers_port(parts.port)


class ZmqFanout:
    """A node's two sockets to the forwarder of ``url`` (``zmq://HOST:PORT``)."""

    def __init__(self, url):
        self.url = url
        host, publishers, subscribers = forwarder_ports(url)
        self._context = zmq.Context()
        self._pub = self._context.socket(zmq.PUB)
        self._pub.setsockopt(zmq.SNDHWM, HIGH_WATER_MARK)
        self._pub.setsockopt(zmq.LINGER, 0)
        self._pub.connect("tcp://%s:%d" % (host, publishers))
        self._sub = self._context.socket(zmq.SUB)
        self._sub.setsockopt(zmq.RCVHWM, HIGH_WATER_MARK)
        self._sub.setsockopt(zmq.LINGER, 0)
        self._sub.connect("tcp://%s:%d" % (host, subscribers))
        self._monitor = self._sub.get_monitor_socket()
        self._watcher = gevent.spawn(self._watch_connection, self._monitor)

    def subscribe(self, channel):
        """Receive the frames of ``channel`` (a room's)."""
        self._sub.setsockopt(zmq.SUBSCRIBE, channel.encode())

    def unsubscribe(self, channel):
        """Stop receiving the frames of ``channel``."""
        self._sub.setsockopt(zmq.UNSUBSCRIBE, channel.encode())

    def publish(self, channel, data):
        """Send ``data`` to the nodes subscribed to ``channel``; dropped if the forwarder is
        away or behind (never blocks: the receivers repair from Redis)."""
        with contextlib.suppress(zmq.Again):
            self._pub.send_multipart((channel.encode(), data.encode()), zmq.NOBLOCK)

    def read_into(self, inbox):
        """Put (channel, data) of every frame that arrives into ``inbox``; runs until killed."""
        while True:
            channel, data = self._sub.recv_multipart()
            inbox.put((channel.decode(), data.decode()))

    def close(self):
        """Close both sockets and the context."""
        self._sub.disable_monitor()
        self._watcher.kill()
        for sock in (self._pub, self._sub, self._monitor):  # all closed, or term() waits for ever
            sock.close(linger=0)
        self._context.term()

    def _watch_connection(self, monitor):
        # Say when the forwarder goes and comes back: while it is away live frames wait for
        # the backplane's sweep (a few seconds) and typing notices are lost.
        connected = zmq.EVENT_CONNECTED
        gone = zmq.EVENT_DISCONNECTED
        try:
            while True:
                event = recv_monitor_message(monitor)["event"]
                if event == connected:
                    log.info("fan-out forwarder %s connected", self.url)
                elif event == gone:
                    log.warning("fan-out forwarder %s gone; live frames wait for repair from Redis", self.url)
        except zmq.ZMQError:  # monitoring stopped: the fan-out is closing
            pass
