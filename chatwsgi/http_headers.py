"""A request's header fields, read without the email package.

gevent's pywsgi reads headers with ``http.client.parse_headers``, which hands them to the
email package's feed parser: in a reconnect storm (two requests per client) that was 6 % of
the server's CPU. ``read_headers`` is what ``ChatHandler.MessageClass`` returns instead: the
same fields, the same interface pywsgi and gevent-websocket use (``get``, ``getheader``,
``headers``, ``typeheader``, ``status``, ``del``), the same limits as http.client (a line of
64 KiB, 100 fields), and a field line that is not ``name: value`` is a 400, not, as with the
email package, the silent end of the headers.
"""

MAX_LINE = 65536
MAX_FIELDS = 100
SEPARATORS = frozenset(" \t")


class RequestHeaders:
    """Header fields in arrival order; ``status`` is empty, or why the head is refused."""

    __slots__ = ("fields", "status")

    def __init__(self, fields=(), status=""):
        self.fields = list(fields)  # (name as sent, value) pairs
        self.status = status

    def get(self, name, default=None):
        """The first field named ``name`` (any case)."""
        name = name.lower()
        for field, value in self.fields:
            if field.lower() == name:
                return value
        return default

    getheader = get

    def __contains__(self, name):
        return self.get(name) is not None

    def __delitem__(self, name):
        name = name.lower()
        self.fields = [(field, value) for field, value in self.fields if field.lower() != name]

    @property
    def headers(self):
        """The fields as ``Name: value`` lines, as pywsgi's environ builder reads them."""
        return ["%s: %s\r\n" % field for field in self.fields]

    @property
    def typeheader(self):
        return self.get("content-type")


def parse_field_lines(lines):
    """RequestHeaders from decoded field lines (without their line ends); pure."""
    fields = []
    for line in lines:
        if line[:1] in SEPARATORS:  # an obsolete folded continuation of the previous field
            if not fields:
                return RequestHeaders(status="Continuation line before any header field")
            name, value = fields[-1]
            fields[-1] = (name, (value + " " + line.strip()).strip())
            continue
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            return RequestHeaders(status="Malformed header line")
        fields.append((name, value.strip(" \t")))
    return RequestHeaders(fields)


def read_headers(rfile):
    """Read header lines up to the blank line; RequestHeaders (a ``status`` when refused)."""
    lines = []
    while True:
        line = rfile.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            return RequestHeaders(status="Line too long")
        if line in (b"\r\n", b"\n", b""):
            break
        if len(lines) == MAX_FIELDS:
            return RequestHeaders(status="More than %d header lines" % MAX_FIELDS)
        lines.append(line.decode("iso-8859-1").rstrip("\r\n"))
    return parse_field_lines(lines)
