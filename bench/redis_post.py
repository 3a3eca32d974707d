"""What a posted message costs Redis: batched against one at a time, published or not.

Drives ``RedisBackplane.post()`` (the product's code, under gevent) from ``--greenlets``
concurrent posters, one room each, against a fresh redis-server with deploy/redis.conf
(append-only file, ``appendfsync always``) and one subscriber connection on every room's
channel (a node). Variants, interleaved over ``--reps`` rounds in one run:

  batched              posts that queue up while one batch is in flight share a pipeline
  one at a time        each post its own request (as shipped with Redis pub/sub)
  batched, zmq         batched, the script publishes nothing: the ZeroMQ bus does (as shipped)
  one at a time, zmq   each post its own request, nothing published by the script

Reported, medians: Redis CPU µs per message (``INFO cpu`` user + sys over the posts), and
messages/s. One Redis core's ceiling is 1e6 / (Redis CPU µs per message).

    .venv/bin/python bench/redis_post.py                       # 20,000 posts, 16 posters, 3 rounds
    .venv/bin/python bench/redis_post.py --greenlets 64 --reps 5
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import redis  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chatwsgi.backplane.batching import ScriptBatcher  # noqa: E402
from chatwsgi.backplane.redis import RedisBackplane  # noqa: E402

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
VARIANTS = ("batched", "one at a time", "batched, zmq", "one at a time, zmq")


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Redis:
    """redis-server with deploy/redis.conf on a free port and a temp dir."""

    def __init__(self):
        self.directory = tempfile.mkdtemp(prefix="bench-post-")
        self.port = free_port()
        self.process = subprocess.Popen(
            [REDIS_SERVER, str(ROOT / "deploy" / "redis.conf"), "--port", str(self.port)]
            + ["--dir", self.directory],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.client = redis.Redis(port=self.port, decode_responses=True)
        deadline = time.monotonic() + 15
        while True:
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                gevent.sleep(0.05)  # polling for the server, with a deadline

    def cpu(self):
        info = self.client.info("cpu")
        return info["used_cpu_user"] + info["used_cpu_sys"]

    def stop(self):
        self.client.close()
        self.process.terminate()
        self.process.wait(10)
        shutil.rmtree(self.directory, ignore_errors=True)


def one_round(server, variant, posts, greenlets, round_number):
    """Redis CPU µs per message and messages/s of ``posts`` posts in one variant."""
    backplane = RedisBackplane(server.url, "bench", wait_ms=0, prefix="b%d:" % round_number)
    if variant.endswith("zmq"):
        backplane.fanout = _NoBus()  # the script stores, publishes nothing
    # Each variant as it says, whatever the product's choice for its bus.
    batcher = ScriptBatcher(backplane.redis, backplane._scripts["post"])
    backplane._posts = None if variant.startswith("one at a time") else batcher
    rooms = ["r%d" % n for n in range(greenlets)]
    subscriber = server.client.pubsub()
    subscriber.subscribe(*[backplane._channel(room) for room in rooms])
    reader = gevent.spawn(drain, subscriber)  # as a node's subscriber reads them
    try:
        for room in rooms:  # the script loaded, the rooms made
            backplane.post(room, "bench", "warm", "x", time.time())
        per = posts // greenlets

        def poster(room):
            for n in range(per):
                backplane.post(room, "bench", "m%d" % n, "hello, room", time.time())

        cpu, started = server.cpu(), time.monotonic()
        gevent.joinall([gevent.spawn(poster, room) for room in rooms], raise_error=True, timeout=300)
        elapsed, used = time.monotonic() - started, server.cpu() - cpu
    finally:
        reader.kill()
        subscriber.close()
        backplane.close()
    return used / (per * greenlets) * 1e6, per * greenlets / elapsed


def drain(subscriber):
    while True:
        subscriber.get_message(timeout=1.0)


class _NoBus:
    """Stands for the ZeroMQ bus: takes what the node would publish and drops it."""

    def publish(self, channel, data):
        pass

    def close(self):
        pass


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=20000)
    parser.add_argument("--greenlets", type=int, default=16)
    parser.add_argument("--reps", type=int, default=3)
    options = parser.parse_args(argv)
    server = Redis()
    server.url = "redis://127.0.0.1:%d/0" % server.port
    figures = {variant: [] for variant in VARIANTS}
    try:
        for round_number in range(options.reps):
            for variant in VARIANTS:
                cpu, rate = one_round(
                    server,
                    variant,
                    options.posts,
                    options.greenlets,
                    round_number * 10 + len(figures[variant]),
                )
                figures[variant].append((cpu, rate))
                print("%-14s round %d: %6.1f µs/msg  %6.0f msg/s" % (variant, round_number, cpu, rate))
    finally:
        server.stop()
    print()
    print("| variant | Redis CPU µs/msg (median, range) | msg/s (median) |")
    print("| --- | --- | --- |")
    for variant, runs in figures.items():
        cpus = [cpu for cpu, _ in runs]
        print(
            "| %s | %.1f (%.1f–%.1f) | %.0f |"
            % (variant, statistics.median(cpus), min(cpus), max(cpus), statistics.median(r for _, r in runs))
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
