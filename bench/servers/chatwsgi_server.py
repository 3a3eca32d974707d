"""chatwsgi as shipped (make_app + make_server), logging off, the sender's rate limit lifted.

With ``--redis URL --node NAME`` it is one node of a cluster (bench/cluster.py): the Redis
backplane, started (after monkey-patching, as serve.py does) before it says 'ready'. With
``--data PATH`` history goes to a SQLite file (serve.py's default), else it stays in memory.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import sys  # noqa: E402

import gevent.event  # noqa: E402,F401
from common import serve  # noqa: E402

from chatwsgi import make_app, make_server  # noqa: E402


def parse(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", default="", help="e.g. redis://127.0.0.1:6379/0 (default: in memory)")
    parser.add_argument("--node", default="", help="this node's name in the cluster")
    parser.add_argument("--fanout", default=None, help="zmq://HOST:PORT: live frames through a forwarder")
    parser.add_argument("--data", default="", help="a SQLite file for history (default: in memory)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    options = parse()
    settings = dict(rate=1e9, burst=10**9)
    if options.redis:
        from chatwsgi.backplane.redis import RedisBackplane

        backplane = RedisBackplane(options.redis, options.node or None, fanout=options.fanout)
        app = make_app(node=backplane.node, backplane=backplane, **settings)
        backplane.start()
        if backplane.state() != "up":
            sys.exit("no Redis at %s" % options.redis)
    elif options.data:
        from chatwsgi.backplane import LocalBackplane
        from chatwsgi.sqlite_store import SqliteStore

        app = make_app(backplane=LocalBackplane(store=SqliteStore(options.data)), **settings)
    else:
        app = make_app(**settings)
    serve(make_server(app, port=options.port, transports=["websocket"]))
