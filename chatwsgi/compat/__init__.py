"""Fixes for gevent-socketio on Python 3.11+, each named by its LIBRARY-BUGS id.

B1 namespace.py; B2, B3, B13, B18, B20 socket.py; B4, B5, B6, B7, B9, B15 transports.py
(B6 framing in chatwsgi/protocol.py); B8, B10, B11, B12 handler.py; B16 websocket.py;
B14, B17, B19 chatwsgi/server.py.
"""
