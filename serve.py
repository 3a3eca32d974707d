"""Run the chat: ``python serve.py`` then open http://127.0.0.1:8080 in two tabs.

Flags (each also read from a CHATWSGI_* environment variable): --host, --port,
--history (messages shown on a join), --retention-seconds and --retention-max (how far
back a reconnecting client catches up; defaults 120 s, 120,000 messages per room),
--rate, --burst, --transports, --allowed-origins, --log-level, the liveness
timings --heartbeat-interval, --heartbeat-timeout, --close-timeout, --poll-duration
(seconds; defaults 25, 60, 60, 20 as the Socket.IO 0.9 reference), and for a cluster
--redis URL, --node NAME, --node-ttl SECONDS. SIGINT/SIGTERM stop accepting, tell
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

import gevent  # noqa: E402
import gevent.event  # noqa: E402

from chatwsgi import make_app, make_server  # noqa: E402
from chatwsgi.backplane import LocalBackplane  # noqa: E402
from chatwsgi.liveness import TIMINGS, Liveness  # noqa: E402
from chatwsgi.redis_backplane import RedisBackplane  # noqa: E402
from chatwsgi.rooms import Retention  # noqa: E402
from chatwsgi.server import ADVERTISED, unknown_transports  # noqa: E402

SHUTDOWN_SECONDS = 5.0


def env(name, default):
    """A CHATWSGI_<NAME> environment value, or the default."""
    return os.environ.get("CHATWSGI_" + name.upper(), default)


def parse_args(argv):
    """Command-line flags over environment variables over defaults."""
    parser = argparse.ArgumentParser(description="chatwsgi: a real-time chat server")
    parser.add_argument("--host", default=env("host", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(env("port", "8080")))
    parser.add_argument("--history", type=int, default=int(env("history", "15")))
    parser.add_argument("--retention-seconds", type=float, default=float(env("retention_seconds", "120")))
    parser.add_argument("--retention-max", type=int, default=int(env("retention_max", "120000")))
    parser.add_argument("--rate", type=float, default=float(env("rate", "5")))
    parser.add_argument("--burst", type=int, default=int(env("burst", "10")))
    parser.add_argument("--transports", default=env("transports", ",".join(ADVERTISED)))
    parser.add_argument("--allowed-origins", default=env("allowed_origins", ""))
    parser.add_argument("--log-level", default=env("log_level", "INFO"))
    parser.add_argument("--redis", default=env("redis", ""), help="e.g. redis://127.0.0.1:6379/0")
    parser.add_argument("--node", default=env("node", ""), help="this node's name in a cluster")
    parser.add_argument("--node-ttl", type=float, default=float(env("node_ttl", "10")))
    for name in TIMINGS:
        default = getattr(Liveness, name)
        parser.add_argument("--" + name.replace("_", "-"), type=float, default=float(env(name, default)))
    args = parser.parse_args(argv)
    try:
        Liveness(**liveness_settings(args))
        args.retention = Retention(args.history, args.retention_seconds, args.retention_max)
    except ValueError as error:
        parser.error(str(error))
    args.transports = [t.strip() for t in args.transports.split(",") if t.strip()]
    unknown = unknown_transports(args.transports)
    if unknown:
        parser.error("--transports takes some of %s, not %s" % (",".join(ADVERTISED), ",".join(unknown)))
    args.allowed_origins = [o.strip() for o in args.allowed_origins.split(",") if o.strip()]
    return args


def liveness_settings(args):
    """The liveness timings among the parsed flags, as server settings."""
    return {name: getattr(args, name) for name in TIMINGS}


def shut_down(server, app):
    """Stop accepting, tell every client, give queues a moment to flush, then stop."""
    app.stopping = True
    server.close()
    app.service.shutdown("The server is restarting; reconnecting…")
    if app.service.backplane.name == "redis":
        app.service.backplane.stop()
    deadline = gevent.get_hub().loop.now() + 1.0
    while gevent.get_hub().loop.now() < deadline and any(
        session.has_unsent() for session in server.sockets.values()
    ):
        gevent.sleep(0.05)
    server.stop(timeout=SHUTDOWN_SECONDS / 2)


def main(argv=None):
    """Build the app and server from the flags and serve until a signal."""
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.redis:
        backplane = RedisBackplane(args.redis, args.node or None, args.node_ttl, retention=args.retention)
    else:
        backplane = LocalBackplane(retention=args.retention)
    node = getattr(backplane, "node", args.node or "local")
    app = make_app(history=args.history, rate=args.rate, burst=args.burst, node=node, backplane=backplane)
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
    # Everything made so far (modules, app, server) lives as long as the process: keep it
    # out of every later garbage collection, which then walks only connections' objects.
    gc.collect()
    gc.freeze()
    host, port = server.address[:2]
    print("chatwsgi serving on http://%s:%d as node %s (Ctrl-C stops)" % (host, port, node), flush=True)
    stopping = gevent.event.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        gevent.signal_handler(signum, stopping.set)
    stopping.wait()
    print("chatwsgi stopping", flush=True)
    gevent.spawn(shut_down, server, app).join(timeout=SHUTDOWN_SECONDS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
