"""Run the chat: ``python serve.py`` then open http://127.0.0.1:8080 in two tabs.

Flags (each also read from a CHATWSGI_* environment variable): --host, --port,
--history (messages shown on a join), --data (the SQLite file history is kept in,
default data/chat.sqlite3; ":memory:" keeps none), --retention-seconds and --retention-max
(how much history a room keeps; defaults 30 days and 1,000,000 messages in a data file, 120 s
and 120,000 in memory and in Redis),
--rate, --burst, --transports, --allowed-origins, --log-level, the liveness
timings --heartbeat-interval, --heartbeat-timeout, --close-timeout, --poll-duration
(seconds; defaults 25, 60, 60, 20 as the Socket.IO 0.9 reference), and for a cluster
--redis URL (redis://... or redis-cluster://host:port,...), --node NAME, --node-ttl SECONDS,
--redis-wait-ms MS (acks wait for a replica), --fanout zmq://HOST:PORT (live frames through a
ZeroMQ forwarder instead of Redis pub/sub), and --metrics-port PORT (Prometheus metrics
on http://127.0.0.1:PORT/metrics; default off). SIGINT/SIGTERM stop accepting, tell
connected clients and exit within 5 seconds.
"""

from gevent import monkey

monkey.patch_all()  # the only monkey-patching in the project: before anything imports socket

import argparse  # noqa: E402
import gc  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402
import gevent.pywsgi  # noqa: E402

from chatwsgi import make_app, make_server  # noqa: E402
from chatwsgi.backplane import LocalBackplane  # noqa: E402
from chatwsgi.backplane.redis import RedisBackplane  # noqa: E402
from chatwsgi.backplane.zmq_fanout import forwarder_ports  # noqa: E402
from chatwsgi.liveness import TIMINGS, Liveness  # noqa: E402
from chatwsgi.metrics import ChatMetrics  # noqa: E402
from chatwsgi.rooms import Retention  # noqa: E402
from chatwsgi.server import ADVERTISED, unknown_transports  # noqa: E402
from chatwsgi.sqlite_store import DURABLE_RETENTION, SqliteStore  # noqa: E402

SHUTDOWN_SECONDS = 5.0
TIMING_HELP = {
    "heartbeat_interval": "the most seconds between two heartbeats (fewer when the timeouts need it)",
    "heartbeat_timeout": "seconds told to clients: a silent websocket client is gone after it",
    "close_timeout": "seconds told to clients: a polling client without a poll this long is gone",
    "poll_duration": "the most seconds a long poll is held open (less when the timeouts need it)",
}


def env(name, default):
    """A CHATWSGI_<NAME> environment value, or the default."""
    return os.environ.get("CHATWSGI_" + name.upper(), default)


def parse_args(argv):
    """Command-line flags over environment variables over defaults."""
    parser = argparse.ArgumentParser(
        description="chatwsgi: a real-time chat server (Socket.IO 0.9 on gevent). It serves the page "
        "on /, the chat on /socket.io/ and its health on /healthz. SIGINT or SIGTERM stop it within "
        "5 s, telling connected clients.",
        epilog="Every flag can also be set in the environment: CHATWSGI_ and the flag's name in upper "
        "case, - as _ (CHATWSGI_PORT=9000, CHATWSGI_REDIS=redis://127.0.0.1:6379/0); a flag on the "
        "command line wins. The defaults shown include what the environment set.",
    )
    parser.add_argument(
        "--host", default=env("host", "127.0.0.1"), help="address to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(env("port", "8080")),
        help="port to listen on, 0 for any free one (default: %(default)s)",
    )
    parser.add_argument(
        "--history",
        type=int,
        default=int(env("history", "15")),
        help="messages shown on a join (default: %(default)s)",
    )
    parser.add_argument(
        "--data",
        default=env("data", "data/chat.sqlite3"),
        help="SQLite file a single node keeps history in; :memory: keeps none; unused with --redis "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--retention-seconds",
        type=float,
        default=env("retention_seconds", None),
        help="how long a room keeps its messages for catch-up, in seconds "
        "(default: 30 days in a --data file, 120 in memory and in Redis)",
    )
    parser.add_argument(
        "--retention-max",
        type=int,
        default=env("retention_max", None),
        help="the most messages a room keeps "
        "(default: 1000000 in a --data file, 120000 in memory and in Redis)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=float(env("rate", "5")),
        help="messages per second per connection (default: %(default)s)",
    )
    parser.add_argument(
        "--burst",
        type=int,
        default=int(env("burst", "10")),
        help="messages a connection may send at once (default: %(default)s)",
    )
    parser.add_argument(
        "--transports",
        default=env("transports", ",".join(ADVERTISED)),
        help="transports offered to clients, comma-separated (default: %(default)s)",
    )
    parser.add_argument(
        "--allowed-origins",
        default=env("allowed_origins", ""),
        help="Origins allowed besides the page's own, comma-separated (https://a.example,https://b.example; "
        "* for any) (default: none)",
    )
    parser.add_argument(
        "--log-level",
        default=env("log_level", "INFO"),
        help="DEBUG, INFO, WARNING or ERROR (default: %(default)s)",
    )
    parser.add_argument(
        "--redis",
        default=env("redis", ""),
        help="the Redis a cluster's nodes share, e.g. redis://127.0.0.1:6379/0, or a Redis Cluster, "
        "redis-cluster://host:port[,host:port...] (default: none, the chat lives in this process)",
    )
    parser.add_argument(
        "--node",
        default=env("node", ""),
        help="this node's name in a cluster, unique in it (default: <hostname>-<pid> with --redis, "
        "else local)",
    )
    parser.add_argument(
        "--node-ttl",
        type=float,
        default=float(env("node_ttl", "10")),
        help="seconds a silent node has before the others declare it dead (default: %(default)s)",
    )
    parser.add_argument(
        "--redis-wait-ms",
        type=int,
        default=int(env("redis_wait_ms", "-1")),
        help="acks wait up to this for a Redis replica to hold the message (WAIT 1 <ms>), else the "
        "sender gets 'unavailable' and retries; 0: no wait (default: 100 on a redis-cluster://, "
        "0 on one Redis)",
    )
    parser.add_argument(
        "--fanout",
        default=env("fanout", "redis"),
        help="how live frames reach the other nodes: redis (Redis pub/sub) or zmq://HOST:PORT, a "
        "forwarder started with python -m chatwsgi.forwarder --port PORT (default: %(default)s)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=env("metrics_port", None),
        help="serve Prometheus metrics on http://127.0.0.1:PORT/metrics, 0 for any free port "
        "(default: off; never on the chat's own port)",
    )
    for name in TIMINGS:
        default = getattr(Liveness, name)
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=float,
            default=float(env(name, default)),
            help=TIMING_HELP[name] + " (default: %(default)s)",
        )
    args = parser.parse_args(argv)
    try:
        Liveness(**liveness_settings(args))
        args.retention = retention_of(args)
    except ValueError as error:
        parser.error(str(error))
    args.transports = [t.strip() for t in args.transports.split(",") if t.strip()]
    unknown = unknown_transports(args.transports)
    if unknown:
        parser.error("--transports takes some of %s, not %s" % (",".join(ADVERTISED), ",".join(unknown)))
    args.allowed_origins = [o.strip() for o in args.allowed_origins.split(",") if o.strip()]
    if args.fanout != "redis":
        try:
            forwarder_ports(args.fanout)
        except ValueError as error:
            parser.error("--fanout takes redis or zmq://HOST:PORT: %s" % error)
        if not args.redis:
            parser.error("--fanout %s needs --redis (Redis keeps the sequence numbers)" % args.fanout)
    return args


def retention_of(args):
    """What rooms keep: the flags, over 30 days and a million messages per room in a data
    file, or two minutes and 120,000 in memory and in Redis."""
    durable = not args.redis and args.data != ":memory:"
    default = DURABLE_RETENTION if durable else Retention()
    seconds = default.seconds if args.retention_seconds is None else args.retention_seconds
    most = default.most if args.retention_max is None else args.retention_max
    return Retention(args.history, seconds, most)


def open_store(args):
    """Where a single node keeps history: the SQLite file ``--data`` (its directory made), or
    memory for ``--data :memory:``."""
    if args.data == ":memory:":
        return None
    path = Path(args.data)
    path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteStore(path, args.retention)


def liveness_settings(args):
    """The liveness timings among the parsed flags, as server settings."""
    return {name: getattr(args, name) for name in TIMINGS}


def shut_down(server, app):
    """Stop accepting, tell every client, give queues a moment to flush, then stop."""
    app.stopping = True
    server.close()
    app.service.shutdown("The server is stopping.")
    if app.service.backplane.name == "redis":
        app.service.backplane.stop()
    deadline = gevent.get_hub().loop.now() + 1.0
    while gevent.get_hub().loop.now() < deadline and any(
        session.has_unsent() for session in server.sockets.values()
    ):
        gevent.sleep(0.05)
    server.stop(timeout=SHUTDOWN_SECONDS / 2)


def serve_metrics(app, port):
    """Serve the metrics app on 127.0.0.1:``port`` alone, away from the public chat port; the server."""
    server = gevent.pywsgi.WSGIServer(
        ("127.0.0.1", port), app, log=None, error_log=logging.getLogger("chatwsgi.metrics")
    )
    server.start()
    return server


def main(argv=None):
    """Build the app and server from the flags and serve until a signal."""
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    metrics = ChatMetrics()
    if args.redis:
        backplane = RedisBackplane(
            args.redis,
            args.node or None,
            args.node_ttl,
            retention=args.retention,
            metrics=metrics,
            wait_ms=None if args.redis_wait_ms < 0 else args.redis_wait_ms,
            fanout=None if args.fanout == "redis" else args.fanout,
        )
    else:
        backplane = LocalBackplane(retention=args.retention, store=open_store(args))
    node = getattr(backplane, "node", args.node or "local")
    app = make_app(
        rate=args.rate,
        burst=args.burst,
        node=node,
        backplane=backplane,
        metrics=metrics,
    )
    if args.redis:
        backplane.start()
    server = make_server(
        app,
        host=args.host,
        port=args.port,
        transports=args.transports,
        allowed_origins=args.allowed_origins,
        **liveness_settings(args),
    )
    server.start()
    if args.metrics_port is not None:
        metrics_address = serve_metrics(app.metrics_app, args.metrics_port).address
        print("chatwsgi metrics on http://%s:%d/metrics" % metrics_address[:2], flush=True)
    # Everything made so far (modules, app, server) lives as long as the process: keep it
    # out of every later garbage collection, which then walks only connections' objects.
    gc.collect()
    gc.freeze()
    host, port = server.address[:2]
    stopping = gevent.event.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):  # before saying it serves: a stop then is clean
        gevent.signal_handler(signum, stopping.set)
    print("chatwsgi serving on http://%s:%d as node %s (Ctrl-C stops)" % (host, port, node), flush=True)
    stopping.wait()
    print("chatwsgi stopping", flush=True)
    gevent.spawn(shut_down, server, app).join(timeout=SHUTDOWN_SECONDS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
