"""Sessions driven with raw packets through a real ChatSocket and ChatNamespace, no sockets,
and the hypothesis strategies that make those packets (tests/unit/test_session_cleanup.py,
tests/live/test_backplane_fuzz.py)."""

from hypothesis import strategies as st

from chatwsgi import protocol
from chatwsgi.compat.socket import ChatSocket
from chatwsgi.namespace import ChatNamespace
from chatwsgi.server import pop_session_config


class NoServer:
    """Stands in for the server: the sessions dict is all a session uses."""

    def __init__(self):
        self.sockets = {}


def new_session(service, server):
    """A session as the server makes it, before the client opens any namespace."""
    chat_session = ChatSocket(server, pop_session_config({"poll_duration": 0.05})[1])
    server.sockets[chat_session.sessid] = chat_session
    chat_session.state = chat_session.STATE_CONNECTED
    chat_session.is_websocket = True  # packets are dispatched as they come
    chat_session._set_namespaces({"/chat": ChatNamespace})
    chat_session._set_request(service)
    chat_session._set_environ({"socketio": chat_session, "REMOTE_ADDR": "127.0.0.1"})
    chat_session.server_ref = server  # keep the weakly referenced server alive
    return chat_session


names = st.sampled_from(["alice", "Alice", "bob", " carol ", "", "x" * 40, 7, None])
tokens = st.sampled_from(["t", True, []])
ids = st.sampled_from(["m1", "m2", "bad id", ""])
rooms = st.sampled_from(["lobby", "dev", "Dev", "r1", "bad room", "", 3, None])
requests = {
    "nickname": st.fixed_dictionaries(
        {"nickname": names}, optional={"token": st.sampled_from(["t", True, []])}
    ),
    "join": st.fixed_dictionaries({"room": rooms}, optional={"after": st.sampled_from([0, 5, -1, "x"])}),
    "leave": st.fixed_dictionaries({"room": rooms}),
    "message": st.fixed_dictionaries(
        {
            "room": rooms,
            "id": st.sampled_from(["m1", "m2", "bad id", ""]),
            "text": st.sampled_from(["hi", ""]),
        }
    ),
    "typing": st.fixed_dictionaries({"room": rooms}),
    "catch_up": st.fixed_dictionaries({"room": rooms, "after": st.sampled_from([0, 2, None])}),
    "roster": st.fixed_dictionaries({"room": rooms}),
    "rooms": st.just({}),
}
events = st.sampled_from(sorted(requests)).flatmap(
    lambda name: st.tuples(st.just(name), requests[name], st.integers(min_value=0, max_value=3))
)


def event_packet(name, request, ack_id):
    packet = {"type": "event", "name": name, "args": [request], "endpoint": "/chat"}
    if ack_id:
        packet.update(id=ack_id, ack="data")
    return protocol.encode_packet(packet)


raw_packets = st.one_of(
    st.sampled_from(["1::/chat", "0::/chat", "2::", "8::", "1::/nowhere", "5::/chat:{", "3:::hi", "0::"]),
    events.map(lambda e: event_packet(*e)),
    st.text(max_size=20),
)


def run_sessions(service, scripts):
    """One session per script, their packets interleaved as concurrent clients would send
    them; every session ended afterwards (however it ended before). Returns the server."""
    server = NoServer()
    sessions = [new_session(service, server) for _ in scripts]
    longest = max(map(len, scripts))
    for step in range(longest):
        for chat_session, script in zip(sessions, scripts, strict=True):
            if step < len(script) and chat_session.connected:
                chat_session.receive_all([script[step]])
    for chat_session in sessions:  # however each ends, or was ending (a flood, an eviction)
        chat_session.kill(detach=True)
    return server
