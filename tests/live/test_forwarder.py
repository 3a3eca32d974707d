"""``python -m chatwsgi.forwarder`` as an operator runs it, and the ZeroMQ bus through it.

Real forwarder processes on 127.0.0.1, plain pyzmq sockets on the test's side (a client
we did not write for the wire), and a RedisBackplane on a real redis-server posting with
``fanout='zmq://...'``: the message goes out on ZeroMQ, never on Redis pub/sub.
"""

import json
import subprocess
import sys
import time

import pytest
import redis
import zmq

from chatwsgi.backplane.redis import RedisBackplane
from tests.support.chatting import wait_until
from tests.support.cluster import ROOT, Forwarder

pytestmark = pytest.mark.live


@pytest.fixture
def forwarder():
    running = Forwarder()
    yield running
    running.stop()


@pytest.fixture
def sockets():
    """new(kind, *endpoints): a plain (blocking) pyzmq socket connected to them, closed after."""
    context, made = zmq.Context(), []

    def new(kind, *endpoints):
        sock = context.socket(kind)
        made.append(sock)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVTIMEO, 5000)
        for endpoint in endpoints:
            sock.connect(endpoint)
        return sock

    yield new
    for sock in made:
        sock.close(linger=0)
    context.term()


def endpoints(forwarder):
    return "tcp://127.0.0.1:%d" % forwarder.port, "tcp://127.0.0.1:%d" % (forwarder.port + 1)


def published_until_received(publisher, subscriber, topic, data):
    """Publish (topic, data) until the subscriber gets something (a subscription takes a
    moment to reach the publisher through the forwarder); what it got."""
    deadline = time.monotonic() + 10
    subscriber.setsockopt(zmq.RCVTIMEO, 100)
    while time.monotonic() < deadline:
        publisher.send_multipart((topic, data))
        try:
            return subscriber.recv_multipart()
        except zmq.Again:
            continue
    raise AssertionError("nothing arrived through the forwarder in 10 s")


def test_frames_reach_only_the_subscribers_of_their_topic(forwarder, sockets):
    publishers, subscribers = endpoints(forwarder)
    publisher = sockets(zmq.PUB, publishers)
    rooms = {room: sockets(zmq.SUB, subscribers) for room in (b"den", b"lobby")}
    for room, sock in rooms.items():
        topic = b"chatwsgi:{room:%s}:fanout" % room
        sock.setsockopt(zmq.SUBSCRIBE, topic)
        assert published_until_received(publisher, sock, topic, b"probe") == [topic, b"probe"]
    while rooms[b"den"].poll(300) or rooms[b"lobby"].poll(0):  # the probes' repeats
        for sock in rooms.values():
            while sock.poll(0):
                sock.recv_multipart()
    for n in range(20):
        for room in rooms:
            publisher.send_multipart((b"chatwsgi:{room:%s}:fanout" % room, b"n%d" % n))
    for room, sock in rooms.items():
        received = [sock.recv_multipart() for _ in range(20)]
        assert received == [[b"chatwsgi:{room:%s}:fanout" % room, b"n%d" % n] for n in range(20)]
        assert not sock.poll(300)  # the other room's frames never came


def test_sigterm_stops_it_at_once_with_status_0(forwarder):
    started = time.monotonic()
    assert forwarder.stop() == 0
    assert time.monotonic() - started < 5


def test_ports_in_use_are_said_plainly_with_status_2(forwarder):
    result = subprocess.run(
        [sys.executable, "-m", "chatwsgi.forwarder", "--port", str(forwarder.port)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "cannot bind 127.0.0.1:%d-%d" % (forwarder.port, forwarder.port + 1) in result.stderr
    assert "Traceback" not in result.stderr


def test_help_says_which_ports_it_binds():
    result = subprocess.run(
        [sys.executable, "-m", "chatwsgi.forwarder", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0
    assert "subscribers use the next" in result.stdout and "127.0.0.1" in result.stdout


def test_a_post_goes_out_on_zeromq_and_not_on_redis_pub_sub(forwarder, sockets, redis_server):
    backplane = RedisBackplane(redis_server.url, "t1", prefix="fwd:", fanout=forwarder.url)
    channel = "fwd:{room:den}:fanout"
    listener = sockets(zmq.SUB, endpoints(forwarder)[1])
    listener.setsockopt(zmq.SUBSCRIBE, channel.encode())
    with redis.Redis(port=redis_server.port, decode_responses=True) as connection:
        pubsub = connection.pubsub()
        pubsub.subscribe(channel)
        try:
            wait_until(lambda: redis_server.subscribers(channel) == 1)
            listener.setsockopt(zmq.RCVTIMEO, 100)
            deadline, posted, frame = time.monotonic() + 10, set(), None
            while frame is None and time.monotonic() < deadline:  # until the subscription is through
                message, created = backplane.post("den", "alice", "m%d" % len(posted), "hi", 1.0)
                assert created  # a new id each time: a repeat is stored once and not published
                posted.add(message.seq)
                try:
                    frame = listener.recv_multipart()
                except zmq.Again:
                    continue
            assert frame is not None, "nothing came through the forwarder in 10 s"
            topic, data = frame
            assert topic.decode() == channel
            seq, fields = data.decode().split(" ", 1)
            assert int(seq[1:]) in posted and json.loads(fields)["text"] == "hi"  # text, never a pickle
            while listener.poll(300):  # the other posts' frames, if the first ones were through
                listener.recv_multipart()
            backplane.publish("den", "a typing frame", "A")
            assert listener.recv_multipart()[1] == b"fden A a typing frame"
            assert pubsub.get_message(timeout=1.0)["type"] == "subscribe"
            assert pubsub.get_message(timeout=0.5) is None  # nothing on Redis pub/sub
        finally:
            pubsub.close()
            backplane.close()
