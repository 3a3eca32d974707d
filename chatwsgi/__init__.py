"""chatwsgi: a framework-free WSGI real-time chat on gevent and Socket.IO 0.9."""

from chatwsgi.app import ChatMiddleware, make_app
from chatwsgi.server import ChatServer, make_server

__all__ = ["ChatMiddleware", "ChatServer", "make_app", "make_server"]
