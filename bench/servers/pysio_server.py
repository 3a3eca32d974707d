"""Peer server for the chatwsgi benchmark: python-socketio on gevent.

Run with the peer venv (bench/peers/install.sh creates it):

    bench/peers/pysio-venv/bin/python bench/servers/pysio_server.py --port 8001

Contract (identical to node_server.js): binds 127.0.0.1 only, websocket
transport only, no logging; prints ``ready`` once listening. Every client of
the default namespace is in one room: an incoming ``chat`` event with one
argument is broadcast as ``chat`` with that argument to all connected clients,
sender included. Rooms (bench/steady_storm.py): a ``join`` event ``{room}``
puts the client in that room, acked with ``true``; from then on its ``chat`` goes to
that room only (sender included). SIGUSR1 runs a full GC then prints ``gc-done``; SIGTERM exits 0.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import contextlib  # noqa: E402
import gc  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402
import geventwebsocket.handler  # noqa: E402
import socketio  # noqa: E402
from gevent import pywsgi  # noqa: E402


def raise_nofile_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def silence_logging():
    logging.disable(logging.CRITICAL)
    for name in (
        "socketio",
        "socketio.server",
        "engineio",
        "engineio.server",
        "geventwebsocket",
        "geventwebsocket.handler",
    ):
        logging.getLogger(name).disabled = True


def say(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)

    raise_nofile_limit()
    silence_logging()

    sio = socketio.Server(
        async_mode="gevent",
        cors_allowed_origins="*",
        logger=False,
        engineio_logger=False,
        transports=["websocket"],
    )

    rooms = {}  # sid -> the room it joined (none: every client is in one room)

    @sio.on("join")
    def join(sid, data):
        rooms[sid] = data["room"]
        sio.enter_room(sid, data["room"])
        return True

    @sio.on("chat")
    def chat(sid, data):
        sio.emit("chat", data, to=rooms.get(sid))

    @sio.on("disconnect")
    def disconnect(sid, *reason):
        rooms.pop(sid, None)

    app = socketio.WSGIApp(sio)
    server = pywsgi.WSGIServer(
        ("127.0.0.1", args.port),
        app,
        handler_class=geventwebsocket.handler.WebSocketHandler,
        log=None,
        error_log=None,
    )
    # WebSocketHandler logs non-101 requests via server.logger, creating a
    # stderr logger on first use; hand it a disabled one instead.
    ws_logger = logging.getLogger("geventwebsocket.handler")
    ws_logger.disabled = True
    server.logger = ws_logger

    def on_usr1():
        gc.collect()
        say("gc-done")

    def on_term():
        sys.stdout.flush()
        os._exit(0)

    # libev signal watchers: the callbacks run in a greenlet of the hub, so
    # they are delivered even while the loop is blocked waiting for I/O.
    gevent.signal_handler(signal.SIGUSR1, on_usr1)
    gevent.signal_handler(signal.SIGTERM, on_term)

    server.start()
    say("ready")
    server.serve_forever()


if __name__ == "__main__":
    main()
