"""The Socket.IO 0.9 wire format: packets, batched payloads, JSONP bodies, URLs.

Pure functions, no I/O. Packets are dicts in the shape gevent-socketio's
namespaces expect (``type``, ``endpoint``, ``name``, ``args``, ``id``, ``ack``...).
Spec: https://github.com/learnboost/socket.io-spec (protocol revision 1).
"""

import json
import re
from dataclasses import dataclass
from urllib.parse import parse_qs

PACKET_TYPES = (
    "disconnect",
    "connect",
    "heartbeat",
    "message",
    "json",
    "event",
    "ack",
    "error",
    "noop",
)
TYPE_CODES = {name: str(code) for code, name in enumerate(PACKET_TYPES)}
FRAME_MARK = "\ufffd"
DISCONNECT = "0::"
HEARTBEAT = "2::"
NOOP = "8::"
CONNECT = "1::"

# Ids are bounded: int() refuses numbers over 4,300 digits with a bare ValueError.
_PACKET_RE = re.compile(r"([0-8]):([0-9]{0,12})(\+?):([^:]*):?(.*)", re.S)
_ACK_DATA_RE = re.compile(r"([0-9]{1,12})(?:\+(.*))?", re.S)


class ProtocolError(ValueError):
    """A frame or payload that does not follow the Socket.IO 0.9 format."""


def is_decimal(text):
    """True for a non-empty run of ASCII digits (str.isdigit also accepts '²', which int() refuses)."""
    return text.isascii() and text.isdigit()


def _dumps(value):
    # Compact, and ASCII-only so the text is safe in any transport (U+2028 in JSONP).
    return json.dumps(value, separators=(",", ":"))


def decode_packet(text):
    """Parse one packet; raise ProtocolError with a readable reason."""
    match = _PACKET_RE.fullmatch(text)
    if not match:
        raise ProtocolError("not a Socket.IO packet: %r" % text[:40])
    code, msg_id, data_ack, endpoint, data = match.groups()
    packet = {"type": PACKET_TYPES[int(code)], "endpoint": endpoint}
    if msg_id:
        packet["id"] = int(msg_id)
        packet["ack"] = "data" if data_ack else True
    _DECODERS.get(packet["type"], _decode_nothing)(packet, data)
    return packet


def _decode_nothing(packet, data):
    pass


def _decode_connect(packet, data):
    packet["qs"] = data


def _decode_message(packet, data):
    packet["data"] = data


def _decode_json(packet, data):
    packet["data"] = _loads(data)


def _decode_event(packet, data):
    event = _loads(data)
    if not isinstance(event, dict) or not isinstance(event.get("name"), str):
        raise ProtocolError("an event needs a JSON object with a string 'name'")
    args = event.get("args", [])
    if not isinstance(args, list):
        raise ProtocolError("event 'args' must be a JSON array")
    packet["name"] = event["name"]
    packet["args"] = args


def _decode_ack(packet, data):
    match = _ACK_DATA_RE.fullmatch(data)
    if not match:
        raise ProtocolError("an ack needs a numeric id")
    packet["ackId"] = int(match.group(1))
    args = _loads(match.group(2)) if match.group(2) else []
    if not isinstance(args, list):
        raise ProtocolError("ack data must be a JSON array")
    packet["args"] = args


def _decode_error(packet, data):
    reason, _, advice = data.partition("+")
    packet["reason"] = reason
    packet["advice"] = advice


_DECODERS = {
    "connect": _decode_connect,
    "message": _decode_message,
    "json": _decode_json,
    "event": _decode_event,
    "ack": _decode_ack,
    "error": _decode_error,
}


def _loads(data):
    try:
        return json.loads(data)
    except ValueError as error:
        raise ProtocolError("invalid JSON: %s" % error) from None
    except RecursionError:
        raise ProtocolError("invalid JSON: nested too deeply") from None


def encode_packet(packet):
    """Serialise a packet dict to its text form."""
    kind = packet["type"]
    endpoint = packet.get("endpoint", "")
    msg_id = packet.get("id")
    head = TYPE_CODES[kind] + ":"
    if msg_id is not None:
        head += str(msg_id) + ("+" if packet.get("ack") == "data" else "")
    head += ":" + endpoint
    data = _encode_data(packet)
    return head if data is None else head + ":" + data


def _encode_data(packet):
    kind = packet["type"]
    if kind == "event":
        event = {"name": packet["name"]}
        if packet.get("args"):
            event["args"] = list(packet["args"])
        return _dumps(event)
    if kind == "ack":
        args = packet.get("args")
        return str(packet["ackId"]) + ("+" + _dumps(list(args)) if args else "")
    if kind == "json":
        return _dumps(packet["data"])
    if kind == "message":
        return packet.get("data", "")
    if kind == "connect":
        return packet.get("qs") or None
    if kind == "error":
        reason, advice = packet.get("reason", ""), packet.get("advice", "")
        return reason + ("+" + advice if advice else "")
    return None


def event_frame(endpoint, name, *args):
    """The text of one event packet, ready to queue to any number of clients."""
    return encode_packet({"type": "event", "endpoint": endpoint, "name": name, "args": args})


def utf16_len(text):
    """Length as JavaScript counts it: UTF-16 code units (B6)."""
    return len(text.encode("utf-16-le")) // 2


def encode_payload(messages):
    """Frame several packets into one polling body (lengths in UTF-16 units, B6)."""
    if len(messages) == 1:
        return messages[0]
    return "".join("%s%d%s%s" % (FRAME_MARK, utf16_len(m), FRAME_MARK, m) for m in messages)


def decode_payload(body):
    """Split a polling body into packets; a body without framing is one packet (B6)."""
    if not body.startswith(FRAME_MARK):
        return [body]
    try:
        units = body.encode("utf-16-le")
    except UnicodeEncodeError:
        raise ProtocolError("payload framing: a lone surrogate is not text") from None
    messages, position = [], 0
    mark = FRAME_MARK.encode("utf-16-le")
    while position < len(units):
        if units[position : position + 2] != mark:
            raise ProtocolError("payload framing: expected a frame mark")
        end = _find_unit(units, mark, position + 2)
        length_text = units[position + 2 : end].decode("utf-16-le") if end > 0 else ""
        # Digits bounded: int() refuses over 4,300 of them, and no body holds 10**12 units.
        if not is_decimal(length_text) or len(length_text) > 12:
            raise ProtocolError("payload framing: bad length %r" % length_text[:12])
        start = end + 2
        stop = start + 2 * int(length_text)
        if stop > len(units):
            raise ProtocolError("payload framing: length runs past the body")
        messages.append(_utf16_slice(units, start, stop))
        position = stop
    return messages


def _find_unit(units, mark, start):
    """Byte offset of ``mark`` at a code-unit boundary (an even offset) from ``start``, or -1."""
    found = units.find(mark, start)
    while found > 0 and found % 2:
        found = units.find(mark, found + 1)
    return found


def _utf16_slice(units, start, stop):
    try:
        return units[start:stop].decode("utf-16-le")
    except UnicodeDecodeError:
        raise ProtocolError("payload framing: length splits a character") from None


# In json.dumps output: an escaped backslash (kept), or the escape of the frame mark.
_ESCAPED_FRAME_MARK = re.compile(r"\\\\|\\ufffd")


def jsonp_script(index, payload):
    """The JavaScript a jsonp-polling GET answers with (B7: JSON-escaped, never hand-quoted).

    ASCII but for the frame mark U+FFFD, written as itself like the 0.9 reference does: it
    is valid in a JS string, and clients that split frames before unescaping (PyPI
    socketIO-client) would not find an escaped one.
    """
    # "</" escaped too, so the script stays inert even if someone inlines it in HTML.
    literal = json.dumps(payload).replace("</", "<\\/")
    literal = _ESCAPED_FRAME_MARK.sub(lambda m: FRAME_MARK if m.group() == "\\ufffd" else m.group(), literal)
    return "io.j[%d](%s);" % (index, literal)


def jsonp_index(query_string, key="i"):
    """The client's callback index from the query string; 0 when absent, None when bad."""
    values = parse_qs(query_string or "").get(key)
    if not values:
        return 0
    return int(values[0]) if is_decimal(values[0]) and len(values[0]) < 9 else None


def asks_disconnect(query_string):
    """True when a polling request's query carries ``disconnect`` (with any value, anywhere).

    The JS client sends ``?disconnect=1``; PyPI socketIO-client sends ``?t=...&disconnect=True``.
    """
    return "disconnect" in parse_qs(query_string or "", keep_blank_values=True)


def decode_jsonp_body(body):
    """The payload a jsonp-polling POST carries: form field ``d`` holding a JSON string (B7)."""
    try:
        form = parse_qs(body.decode("utf-8"), strict_parsing=False)
    except UnicodeDecodeError:
        raise ProtocolError("jsonp body is not UTF-8") from None
    if "d" not in form:
        raise ProtocolError("jsonp body has no 'd' field")
    value = _loads(form["d"][0])
    if not isinstance(value, str):
        raise ProtocolError("jsonp 'd' must hold a JSON string")
    if not _is_unicode(value):
        # Only a JSON escape can make one (the bytes are UTF-8): no client sends it.
        raise ProtocolError("jsonp 'd' holds a lone surrogate, which is not text")
    return value


def _is_unicode(text):
    """True unless ``text`` holds a lone surrogate (which no UTF encodes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True)
class Route:
    """Where a /<resource>/... URL points: a handshake, a transport request or a disconnect."""

    kind: str  # "handshake", "transport" or "disconnect"
    transport: str = ""
    session_id: str = ""


def route(path, resource="socket.io"):
    """Classify a request path under the Socket.IO resource; None if it is not ours."""
    prefix = "/" + resource + "/"
    if not (path + "/").startswith(prefix):
        return None
    parts = path[len(prefix) :].split("/")
    if parts[-1:] == [""]:
        parts = parts[:-1]
    if parts == ["1"]:
        return Route("handshake")
    if len(parts) == 3 and parts[0] == "1" and parts[2]:
        if parts[1] == "":
            return Route("disconnect", session_id=parts[2])
        return Route("transport", transport=parts[1], session_id=parts[2])
    return Route("unknown")


def handshake_body(session_id, heartbeat_timeout, close_timeout, transports):
    """The handshake answer: ``sid:heartbeat:close:transports``."""
    return "%s:%d:%d:%s" % (session_id, heartbeat_timeout, close_timeout, ",".join(transports))
