"""Request policy that is pure logic: which Origins may use the chat, which transport may use a
session, which paths are static files."""

import posixpath
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


def _split(url):
    """urlsplit, or None where it raises (a bracket left open: "[::1")."""
    try:
        return urlsplit(url)
    except ValueError:
        return None


def _host_port(netloc, scheme):
    parts = _split("//" + netloc)
    try:
        port = parts and parts.port
    except ValueError:  # not a number, or out of range
        return None
    return parts and (parts.hostname or "", port or DEFAULT_PORTS.get(scheme))


def request_scheme(environ):
    """The scheme the client used: ``X-Forwarded-Proto`` when it says http or https, else
    ``wsgi.url_scheme``.

    Trusting the header costs nothing here: it only says which scheme an Origin must have
    to count as our own, and a hostile page cannot set it. Browsers send no custom header
    on websocket upgrades, script tags or form posts, and an XHR carrying one needs a CORS
    preflight that a foreign Origin is refused. A non-browser client can send any Origin
    anyway. So a TLS-terminating proxy works without configuration.
    """
    forwarded = environ.get("HTTP_X_FORWARDED_PROTO", "").rpartition(",")[2].strip().lower()
    if forwarded in DEFAULT_PORTS:
        return forwarded
    return environ.get("wsgi.url_scheme", "http")


def is_origin_text(origin):
    """True when ``origin`` could be an Origin header at all: printable ASCII, no spaces.

    Anything else (a folded header, control characters) is refused, and so never echoed
    into a response header.
    """
    return 0 < len(origin) <= 2048 and origin.isascii() and origin.isprintable() and " " not in origin


def origin_allowed(environ, allowed=()):
    """True when the request's Origin is its own scheme and Host, listed in ``allowed``, or absent.

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
    if not is_origin_text(origin):
        return False
    if "*" in allowed or origin in allowed:
        return True
    if "://" not in origin and origin != "null":
        own = _host_port(environ.get("HTTP_HOST", ""), "http")
        parts = _split("//" + origin)
        is_netloc = parts is not None and parts.netloc == origin
        return is_netloc and own is not None and own[0] != "" and own == _host_port(origin, "http")
    parts = _split(origin)
    scheme = request_scheme(environ)
    if parts is None or parts.scheme != scheme or not parts.netloc:
        return False
    own = _host_port(environ.get("HTTP_HOST", ""), scheme)
    return own is not None and own == _host_port(parts.netloc, scheme)


def transport_conflict(bound, requested):
    """Why a request on ``requested`` may not use a session bound to ``bound`` (None if it may).

    A session belongs to the transport it connected on: a request on another one would
    steal or silence it (a websocket session whose id leaked went deaf after one xhr POST),
    and a websocket has one connection, so a second upgrade is refused too.
    """
    if bound is None:
        return None
    if bound != requested:
        return "This session is connected over %s: handshake again to use %s." % (bound, requested)
    if bound == "websocket":
        return "This session already has its websocket: handshake again."
    return None


def request_path_text(path_info):
    """The text of a request's path, or None when it is not UTF-8 or holds NUL.

    ``path_info`` is a WSGI string: the URL's bytes, decoded as latin-1.
    """
    try:
        text = path_info.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return None
    return None if "\0" in text else text


def relative_static_path(text):
    """``text`` as a path relative to the static folder, or None when ``..`` leaves it.

    Only the names are looked at: where symbolic links in the folder lead is checked
    apart, on the real path (``is_inside``).
    """
    relative = posixpath.normpath(text.lstrip("/")) if text.strip("/") else "."
    if relative == ".." or relative.startswith("../"):
        return None
    return "" if relative == "." else relative


def is_inside(root, path):
    """True when the (real, absolute) ``path`` is ``root`` or lies under it."""
    root = root.rstrip("/") or "/"
    return path == root or path.startswith(root if root == "/" else root + "/")
