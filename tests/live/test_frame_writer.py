"""FrameWriter on real socket pairs: frames corked per loop turn, built once, bounded backlog."""

import socket

import gevent
import pytest
from gevent import socket as gsocket

from chatwsgi.delivery import FrameWriter, text_frame

pytestmark = pytest.mark.live


@pytest.fixture
def pair():
    server_side, client_side = gsocket.socketpair()
    yield server_side, client_side
    server_side.close()
    client_side.close()


def read_available(sock, expected, timeout=5):
    data = b""
    with gevent.Timeout(timeout):
        while len(data) < expected:
            data += sock.recv(65536)
    return data


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 70000])
def test_text_frame_lengths(size):
    frame = text_frame("x" * size)
    assert frame[0] == 0x81 and frame.endswith(b"x" * size)
    if size < 126:
        assert frame[1] == size
    elif size < 65536:
        assert frame[1] == 126 and int.from_bytes(frame[2:4], "big") == size
    else:
        assert frame[1] == 127 and int.from_bytes(frame[2:10], "big") == size


def test_frames_of_one_loop_turn_go_out_together_in_order(pair):
    server_side, client_side = pair
    writer = FrameWriter(server_side, 1 << 20, on_slow=lambda: pytest.fail("not slow"))
    for text in ["one", "two", "three"]:
        writer.send(text)
    assert writer.corked  # nothing written until this greenlet yields
    expected = text_frame("one") + text_frame("two") + text_frame("three")
    assert read_available(client_side, len(expected)) == expected


def test_a_broadcast_frame_is_built_once(pair):
    server_side, client_side = pair
    writers = [FrameWriter(server_side, 1 << 20, on_slow=lambda: None) for _ in range(3)]
    text = "5::/chat:{}"
    for writer in writers:
        writer.send(text)
    assert writers[0].corked[0] is writers[2].corked[0]


def test_a_closed_writer_writes_nothing_even_if_its_descriptor_is_reused(pair):
    server_side, client_side = pair
    writer = FrameWriter(server_side, 1 << 20, on_slow=lambda: None)
    writer.send("before")
    writer.close()
    writer.send("after")
    gevent.sleep(0)  # the loop turn in which corked frames would be written
    server_side.sendall(b"END")
    assert read_available(client_side, 3) == b"END"


def test_a_reader_that_stops_reading_is_dropped_once_past_the_limit(pair):
    server_side, client_side = pair
    server_side.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    dropped = []
    writer = FrameWriter(server_side, 64 * 1024, on_slow=lambda: dropped.append(True))
    chunk = "y" * 4000
    with gevent.Timeout(10):
        while not dropped:
            writer.send(chunk + str(len(dropped)))
            gevent.sleep(0)
    assert dropped == [True]
    assert writer.pending <= 64 * 1024 + 4100 and not writer.backlog


def test_a_slow_reader_catches_up_from_the_backlog(pair):
    server_side, client_side = pair
    server_side.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    writer = FrameWriter(server_side, 1 << 22, on_slow=lambda: pytest.fail("within the limit"))
    texts = ["message %d %s" % (n, "z" * 1000) for n in range(300)]
    for text in texts:
        writer.send(text)
        gevent.sleep(0)
    assert writer.backlog  # more than the socket buffers took: the flusher has work
    expected = b"".join(text_frame(t) for t in texts)
    assert read_available(client_side, len(expected)) == expected
