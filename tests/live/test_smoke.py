import pytest

from tests.support.sioclient import SocketIOClient

TRANSPORTS = ["websocket", "xhr-polling", "jsonp-polling"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_two_clients_chat(address, transport):
    alice = SocketIOClient(address, transport).connect()
    bob = SocketIOClient(address, "websocket").connect()
    assert alice.call("nickname", {"nickname": "alice"})["ok"]
    assert bob.call("nickname", {"nickname": "bob"})["ok"]
    assert alice.call("join", {"room": "lobby"})["ok"]
    assert bob.call("join", {"room": "lobby"})["ok"]
    ack = alice.call("message", {"room": "lobby", "id": "m1", "text": "héllo 🎉"})
    assert ack == {"ok": True, "id": "m1", "seq": 1}
    (msg,) = bob.wait_event("message")
    assert msg["text"] == "héllo 🎉" and msg["author"] == "alice"
    alice.close()
    bob.close()
