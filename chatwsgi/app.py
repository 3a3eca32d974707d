"""WSGI composition: the chat as middleware in front of any app, and the app factory."""

import importlib.util
import json
import logging
import os
from pathlib import Path

import gevent
from socketio import socketio_manage
from webob import Response
from webob.static import DirectoryApp, FileApp, FileIter

from chatwsgi.chat import Chat
from chatwsgi.compat.socket import send_error
from chatwsgi.errors import ChatError
from chatwsgi.metrics import ChatMetrics
from chatwsgi.namespace import ChatNamespace, IdentifiedNamespace
from chatwsgi.security import is_inside, relative_static_path, request_path_text
from chatwsgi.service import ENDPOINT, ChatService

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
PAGE_HEADERS = [
    # The page renders user text with textContent; the policy is the second line of defence.
    (
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    # Not no-referrer: with it Chrome sends "Origin: null" on the form POSTs of jsonp-polling.
    ("Referrer-Policy", "same-origin"),
]


def client_script_path():
    """socket.io.js 0.9 as installed by the js.socketio package (found without importing it)."""
    spec = importlib.util.find_spec("js.socketio")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("js.socketio is not installed: pip install js.socketio")
    return Path(next(iter(spec.submodule_search_locations))) / "resources" / "js" / "socket.io.js"


class ClosingFileIter(FileIter):
    """WebOb's FileIter with a ``close()``: a response never iterated (HEAD, 304, a range
    out of bounds) closes its file at once instead of leaving it to the garbage collector."""

    def __init__(self, file, block_size=None):
        super().__init__(file)

    def close(self):
        """Close the file."""
        self.file.close()


class ChatMiddleware:
    """Serves the chat (/socket.io/..., /socket.io.js, /healthz) in front of ``app``.

    ``history`` (15 messages shown on a join) and ``retention`` configure the default
    backplane; a ``backplane`` given is configured itself (passing both is an error).

    ``identify(environ)``, when given, names the chat's users as the host app knows them: it
    gets the WSGI environ of each Socket.IO session's first transport request (cookies
    included) and returns the user's display name, or None to refuse the session.

    A busy room's join and leave notices go out in batches, at most one per
    ``presence_interval`` seconds (0: each at once; see presence.py).
    """

    def __init__(
        self,
        app,
        resource="socket.io",
        history=None,
        retention=None,
        max_message_chars=2000,
        rate=5.0,
        burst=10,
        rates=None,
        announce_limit=200,
        presence_interval=0.5,
        node="local",
        backplane=None,
        service=None,
        identify=None,
        metrics=None,
    ):
        self.app = app
        self.resource = resource
        self.node = node
        self.stopping = False
        self.metrics = metrics if metrics is not None else ChatMetrics()
        # Not served here: the embedder mounts it where only the monitoring can reach it.
        self.metrics_app = self.metrics.wsgi_app()
        if backplane is not None and (history, retention) != (None, None):
            raise ValueError("with backplane=, give history_size= or retention= to the backplane")
        history = 15 if history is None else history
        self.service = service or ChatService(
            Chat(history_size=history, max_chars=max_message_chars, backplane=backplane, retention=retention),
            rate=rate,
            burst=burst,
            rates=rates,
            announce_limit=announce_limit,
            metrics=self.metrics,
            schedule=gevent.spawn_later,
            presence_interval=presence_interval,
        )
        self.metrics.watch_backplane(self.service.backplane)
        self.identify = identify
        self.namespaces = {ENDPOINT: ChatNamespace if identify is None else IdentifiedNamespace}
        self.client_script = FileApp(str(client_script_path()), content_type="application/javascript")

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith("/" + self.resource + "/"):
            return self.chat(environ, start_response)
        if path == "/socket.io.js":
            environ["wsgi.file_wrapper"] = ClosingFileIter
            return self.client_script(environ, start_response)
        if path == "/healthz":
            return self.health(environ, start_response)
        return self.app(environ, start_response)

    def chat(self, environ, start_response):
        """Run one session's namespaces until it ends (called once per session by the server)."""
        if "socketio" not in environ:
            return plain(start_response, "400 Bad Request", "Socket.IO requests need a ChatServer.\n")
        if self.identify is not None:
            # Once per session, now: a websocket session keeps no cookies after the upgrade.
            environ["socketio"].identity = self.identity_of(environ)
        socketio_manage(environ, self.namespaces, request=self.service, error_handler=send_error)
        return []

    def identity_of(self, environ):
        """What ``identify`` says of this request's user; a ChatError if it failed (logged)."""
        try:
            return self.identify(environ)
        except Exception:
            log.exception("identify failed: the chat refuses the session")
            return ChatError("server_error", "The site could not tell who you are; try again later.")

    def health(self, environ, start_response):
        """A JSON health answer: node id, backplane state, connections here by transport.

        503 once the node is stopping, so a load balancer sends no one new to it. A
        backplane outage leaves it 200: every node shares the outage, and a node that is
        up still answers its clients with clear errors and recovers on its own.
        """
        sessions = environ.get("chatwsgi.sessions")
        body = {
            "status": "stopping" if self.stopping else "ok",
            "node": self.node,
            "backplane": self.service.backplane.state(),
            "members": len(self.service.chat.members),
            "sessions": sessions() if sessions else None,
        }
        response = Response(json.dumps(body), content_type="application/json", charset="utf-8")
        response.status = 503 if self.stopping else 200
        response.cache_control = "no-store"
        return response(environ, start_response)


def with_headers(app, headers):
    """Wrap a WSGI app so every response carries ``headers``."""

    def wrapped(environ, start_response):
        def start(status, response_headers, exc_info=None):
            return start_response(status, list(response_headers) + headers, exc_info)

        return app(environ, start)

    return wrapped


class StaticFiles(DirectoryApp):
    """WebOb's DirectoryApp, kept inside its folder: no symbolic link out, no path it cannot decode.

    DirectoryApp checks names only, and looks for an index page before even that:
    ``/../other/`` served ``other/index.html`` beside the folder, a link in the folder to
    ``/etc`` was followed, and a path that is not UTF-8 raised in WebOb (500). Here every
    path is resolved to its real location first.
    """

    def __init__(self, path, **settings):
        super().__init__(path, **settings)
        self.root = os.path.realpath(self.path)

    def __call__(self, environ, start_response):
        text = request_path_text(environ.get("PATH_INFO", ""))
        if text is None:
            return plain(start_response, "400 Bad Request", "The path is not valid UTF-8 text.\n")
        relative = relative_static_path(text)
        target = os.path.realpath(os.path.join(self.root, relative or ""))
        if relative is None or not is_inside(self.root, target):
            return plain(start_response, "403 Forbidden", "That path is outside the static files.\n")
        if not (os.path.isfile(target) or os.path.isfile(os.path.join(target, self.index_page or ""))):
            # WebOb's own 404 names the absolute path it looked for.
            return plain(start_response, "404 Not Found", "No such file.\n")
        environ["wsgi.file_wrapper"] = ClosingFileIter  # FileApp uses it when present
        return super().__call__(environ, start_response)


def plain(start_response, status, text):
    """A short plain-text answer."""
    body = text.encode()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def make_app(static_dir=STATIC_DIR, **settings):
    """The chat WSGI app: the chat in front of the page in ``static_dir``."""
    page = with_headers(StaticFiles(str(static_dir)), PAGE_HEADERS)
    return ChatMiddleware(page, **settings)
