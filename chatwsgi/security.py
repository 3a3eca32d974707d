"""Request policy that is pure logic: which Origins may use the chat."""

from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


def _host_port(netloc, scheme):
    parts = urlsplit("//" + netloc)
    try:
        port = parts.port
    except ValueError:
        return None
    return (parts.hostname or "", port or DEFAULT_PORTS.get(scheme))


def origin_allowed(environ, allowed=()):
    """True when the request's Origin is its own Host, listed in ``allowed``, or absent.

    Browsers send Origin on websocket upgrades and on cross-site requests, so a page on
    another site cannot drive a visitor's chat. Clients without one (scripts, same-origin
    GETs) are allowed: Origin is a browser's statement, not authentication.

    No browser sends an Origin without a scheme, but the npm Socket.IO 0.9 client (through
    ws 0.4) sends ``host:port``, the very Host it connects to: that form is allowed when it
    names the request's own Host, and refused otherwise.
    """
    origin = environ.get("HTTP_ORIGIN")
    if origin is None:
        return True
    if "*" in allowed or origin in allowed:
        return True
    if "://" not in origin and origin != "null":
        own = _host_port(environ.get("HTTP_HOST", ""), "http")
        is_netloc = urlsplit("//" + origin).netloc == origin
        return is_netloc and own is not None and own[0] != "" and own == _host_port(origin, "http")
    parts = urlsplit(origin)
    if parts.scheme not in DEFAULT_PORTS or not parts.netloc:
        return False
    own = _host_port(environ.get("HTTP_HOST", ""), parts.scheme)
    return own is not None and own == _host_port(parts.netloc, parts.scheme)
