"""Driver for PyPI socketIO-client 0.5.7.4, for tests/support/remote.py.

Commands come on stdin and what the client sees goes to stdout, one JSON object a line (the
protocol is described in tests/support/remote.py). The client is blocking: its own loop,
``SocketIO.wait()``, runs in a thread, and each command calls the client's API from the main
thread as it comes (sending never waits for the loop). Try it by hand:

    echo '{"op":"connect","url":"http://127.0.0.1:8080","namespace":"/chat","transport":"websocket"}' \\
        | .venv/bin/python tests/thirdparty/pypi_client.py
"""

import json
import logging
import os
import sys
import threading
from importlib.metadata import version
from urllib.parse import urlsplit

from socketIO_client import BaseNamespace, SocketIO

_output = threading.Lock()


def out(**record):
    """Write one record line (from either thread)."""
    line = json.dumps(record)
    with _output:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class Relay(logging.Handler):
    """The client's own warnings (connection errors, dropped packets) as ``log`` records."""

    def emit(self, record):
        out(kind="log", level=record.levelname, message=record.getMessage())


class Driver:
    """One SocketIO client, its namespace and what it has reported."""

    def __init__(self):
        self.client = None
        self.chat = None
        self.connected_once = False
        self.disconnected = False

    def where(self):
        """(transport, session id) as the transport's URL says: .../socket.io/1/<transport>/<sid>."""
        url = self.client._SocketIO__transport._url  # the client keeps them nowhere else
        transport, session = url.rsplit("/", 2)[-2:]
        return transport, session

    def on_connected(self):
        self.disconnected = False
        transport, session = self.where()
        if self.connected_once:
            out(kind="reconnect", transport=transport)
        self.connected_once = True
        out(kind="connected", session=session, transport=transport)

    def on_disconnected(self, reason):
        # The client calls its root namespace's on_disconnect on every connection error of
        # its loop (each second while a polling session is gone): report the end once.
        if not self.disconnected:
            self.disconnected = True
            out(kind="disconnect", reason=reason)

    def connect(self, url, namespace, transport):
        parts = urlsplit(url)
        self.client = SocketIO(
            parts.hostname, parts.port, Root, wait_for_connection=False, transports=[transport]
        )
        self.chat = self.client.define(Chat, namespace)
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        try:
            self.client.wait()  # returns once disconnect() was asked for
        except Exception as error:  # the client's loop died: say so, the test will see it
            out(kind="error", message="wait() raised %r" % error)
            self.on_disconnected("wait() raised")

    def emit(self, event, args, ack):
        if ack is None:
            self.chat.emit(event, *args)
        else:
            self.chat.emit(event, *args, lambda *reply: out(kind="ack", ack=ack, args=list(reply)))

    def disconnect(self):
        if self.disconnected:
            # Its disconnect() on a closed websocket would handshake a new session to close it.
            out(kind="log", message="disconnect: already disconnected")
            return
        self.client.disconnect()


driver = Driver()


class Reporting(BaseNamespace):
    """A namespace whose every event becomes an ``event`` record."""

    def on_event(self, event, *args):
        out(kind="event", name=event, args=list(args), endpoint=self.path)

    # The client hands an event named "message" to on_message(data) and one named "error" to
    # on_error(*args): the methods it also calls for message packets (3::, 4::) and for error
    # packets (7::, with reason and advice). The stock on_error(reason, advice) raises a
    # TypeError on the chat's one-argument `error` event, which ends the client's wait() loop.
    def on_message(self, data):
        out(kind="event", name="message", args=[data], endpoint=self.path)

    def on_error(self, *args):
        if len(args) == 2 and all(isinstance(arg, str) for arg in args):
            out(kind="error", message=args[0], advice=args[1], endpoint=self.path)
        else:
            out(kind="event", name="error", args=list(args), endpoint=self.path)


class Root(Reporting):
    """The connection's namespace (''): the server's errors about the connection come here."""

    def on_disconnect(self):
        driver.on_disconnected("connection ended")


class Chat(Reporting):
    """The chat's namespace."""

    def on_connect(self):
        driver.on_connected()

    def on_reconnect(self):  # what the client calls on_connect after the first time
        driver.on_connected()

    def on_disconnect(self):
        out(kind="disconnect", reason="namespace disconnected by the server")


def run(command):
    op = command["op"]
    if op == "connect":
        driver.connect(command["url"], command["namespace"], command["transport"])
    elif op == "emit":
        driver.emit(command["event"], command.get("args", []), command.get("ack"))
    elif op == "disconnect":
        driver.disconnect()
    elif op == "exit":
        exit_now()
    else:
        out(kind="error", op=op, message="unknown op")


def exit_now():
    # os._exit: the client's __del__ calls disconnect(), which on a closed connection
    # handshakes a new session first.
    sys.stdout.flush()
    os._exit(0)


def main():
    logging.getLogger("socketIO_client").addHandler(Relay(logging.WARNING))
    out(kind="ready", client="socketIO-client " + version("socketIO-client"), python=sys.version.split()[0])
    for line in sys.stdin:
        try:
            run(json.loads(line))
        except Exception as error:
            out(kind="error", op=line.strip()[:80], message=repr(error))
    exit_now()  # the test process went away


if __name__ == "__main__":
    main()
