"""Whatever a session sends, in whatever order, nothing it claimed outlives it.

Sessions are driven with raw packets through a real ChatSocket and ChatNamespace (no
sockets); after they end, the chat, the backplane, the hub and the limits are empty again.
"""

from hypothesis import given, settings
from hypothesis import strategies as st

from chatwsgi.chat import Chat
from chatwsgi.rooms import DEFAULT_ROOM
from chatwsgi.service import ChatService
from tests.support.sessions import raw_packets, run_sessions


def assert_empty(service):
    backplane = service.backplane
    assert service.chat.members == {}
    assert service._sinks == {} and service._closers == {} and service._limits == {}
    assert service.hub._rooms == {} and service.hub._joined == {}
    assert backplane._nicknames == {} and backplane._rooms_of == {}
    assert all(not room.members for room in backplane.rooms.values())
    assert service.chat.room_list() == [{"name": DEFAULT_ROOM, "count": 0}]


@settings(max_examples=200, deadline=None)
@given(scripts=st.lists(st.lists(raw_packets, max_size=25), min_size=1, max_size=3))
def test_every_session_ends_leaving_nothing_behind(scripts):
    # Every token is "t": a session sending it reclaims a nickname another session holds,
    # which ends that one (the eviction path).
    service = ChatService(Chat(new_token=lambda: "t"))
    server = run_sessions(service, scripts)
    assert server.sockets == {}
    assert_empty(service)
