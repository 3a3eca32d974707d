"""chatwsgi as shipped (make_app + make_server), logging off, the sender's rate limit lifted."""

from gevent import monkey

monkey.patch_all()

import gevent.event  # noqa: E402,F401
from common import parse_port, serve  # noqa: E402

from chatwsgi import make_app, make_server  # noqa: E402

if __name__ == "__main__":
    app = make_app(rate=1e9, burst=10**9)
    serve(make_server(app, port=parse_port(), transports=["websocket"]))
