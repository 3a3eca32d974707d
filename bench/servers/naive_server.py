"""The seed's design for comparison: stock gevent-socketio BroadcastMixin on our compat layer.

Every broadcast walks every socket of the server and encodes the packet once per recipient.
Rooms (bench/steady_storm.py) the stock way too: ``join {room}`` (acked with true)
puts the session in a RoomsMixin room, and its ``chat`` then goes by ``emit_to_room`` (which
walks every socket of the server) to the room's others, and back to the sender.
"""

from gevent import monkey

monkey.patch_all()

import gevent.event  # noqa: E402,F401
from common import parse_port, serve  # noqa: E402
from socketio import socketio_manage  # noqa: E402
from socketio.mixins import BroadcastMixin, RoomsMixin  # noqa: E402

from chatwsgi import make_server  # noqa: E402
from chatwsgi.compat.namespace import CompatNamespace  # noqa: E402
from chatwsgi.compat.socket import send_error  # noqa: E402


class NaiveChat(CompatNamespace, RoomsMixin, BroadcastMixin):
    """on_chat broadcasts to every socket, as the original chat example did (or to the room)."""

    def on_join(self, data):
        # RoomsMixin.__init__ is not reached through BaseNamespace: its set made here.
        self.session.setdefault("rooms", set())
        self.join(data["room"])
        self.session["room"] = data["room"]
        return True

    def on_chat(self, message):
        room = self.session.get("room")
        if room is None:
            self.broadcast_event("chat", message)
        else:
            self.emit_to_room(room, "chat", message)
            self.emit("chat", message)


def application(environ, start_response):
    if "socketio" in environ:
        socketio_manage(environ, {"/chat": NaiveChat}, error_handler=send_error)
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]


if __name__ == "__main__":
    serve(make_server(application, port=parse_port(), transports=["websocket"]))
