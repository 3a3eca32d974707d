"""The seed's design for comparison: stock gevent-socketio BroadcastMixin on our compat layer.

Every broadcast walks every socket of the server and encodes the packet once per recipient.
"""

from gevent import monkey

monkey.patch_all()

import gevent.event  # noqa: E402,F401
from common import parse_port, serve  # noqa: E402
from socketio import socketio_manage  # noqa: E402
from socketio.mixins import BroadcastMixin  # noqa: E402

from chatwsgi import make_server  # noqa: E402
from chatwsgi.compat.namespace import CompatNamespace  # noqa: E402
from chatwsgi.compat.socket import send_error  # noqa: E402


class NaiveChat(CompatNamespace, BroadcastMixin):
    """on_chat broadcasts to every socket, as the original chat example did."""

    def on_chat(self, message):
        self.broadcast_event("chat", message)


def application(environ, start_response):
    if "socketio" in environ:
        socketio_manage(environ, {"/chat": NaiveChat}, error_handler=send_error)
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]


if __name__ == "__main__":
    serve(make_server(application, port=parse_port(), transports=["websocket"]))
