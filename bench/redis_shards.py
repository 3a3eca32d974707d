"""Redis Cluster: messages/s and Redis CPU per message on 1 shard against 3, rooms spread.

No chat nodes and no browsers: what is measured is the backplane's Redis side. ``--senders``
processes each run ``--greenlets`` greenlets, each posting to its own room in a loop
(``RedisBackplane.post``: the post script and its SPUBLISH) for ``--seconds``; one more
process is a node with every room's members, subscribed to every room's shard channel,
and counts what it receives (all of them, each once, in order, or the run is invalid). Rooms
``r0``, ``r1``, ... spread over the shards by their hash tag. Each configuration is a fresh
cluster of masters only (appendfsync always, as deploy/redis.conf), acks without WAIT.

Reported per configuration: messages/s posted, Redis CPU µs per message (``INFO cpu`` of
every master, user + sys), the post script's own µs (``INFO commandstats``), the
load generator's CPU per message, and the deliveries the subscribing node counted.

    python bench/redis_shards.py                       # 1 and 3 shards, results in bench/results
    python bench/redis_shards.py --seconds 3 --out /tmp/shards
"""

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def rooms(count):
    return ["r%d" % n for n in range(count)]


def sender(url, first_room, greenlets, seconds):
    """Post as fast as acks come back, one room per greenlet; print how many were posted."""
    import gevent

    from chatwsgi.backplane.redis import RedisBackplane

    backplane = RedisBackplane(url, "sender-%d" % os.getpid(), wait_ms=0)
    names = rooms(first_room + greenlets)[first_room:]
    posted = [0] * greenlets
    deadline = time.monotonic() + seconds

    def post(index, room):
        while time.monotonic() < deadline:
            backplane.post(room, "bench", "m%d" % posted[index], "hello, shard", time.time())
            posted[index] += 1

    gevent.joinall([gevent.spawn(post, i, room) for i, room in enumerate(names)], raise_error=True)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"posted": sum(posted), "cpu": usage.ru_utime + usage.ru_stime}), flush=True)


class Counter:
    """A backplane listener with a member in every room: counts messages, checks their order."""

    def __init__(self):
        self.received, self.out_of_order, self.last = 0, 0, {}

    def deliver(self, room, frame, exclude=None):
        pass

    def deliver_message(self, message):
        self.out_of_order += message.seq != self.last.get(message.room, 0) + 1
        self.last[message.room] = message.seq
        self.received += 1

    def receives(self, room):
        return True

    def restore(self):
        return set()


def subscriber(url, count):
    """A node in every room: once told how many were posted (a line on stdin), wait for them
    (10 s at most) and print what it received."""
    import gevent
    from gevent.os import make_nonblocking, nb_read

    from chatwsgi.backplane.redis import RedisBackplane

    backplane = RedisBackplane(url, "watcher", wait_ms=0)
    counter = backplane.listener = Counter()
    backplane.start()
    for room in rooms(count):
        backplane.history(room)  # subscribed, and following the room from its last message
    print("ready", flush=True)
    make_nonblocking(0)
    line = b""
    while not line.endswith(b"\n"):
        line += nb_read(0, 100)
    deadline = time.monotonic() + 10.0
    while counter.received < int(line) and time.monotonic() < deadline:
        gevent.sleep(0.05)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result = {"received": counter.received, "out_of_order": counter.out_of_order}
    print(json.dumps(dict(result, cpu=usage.ru_utime + usage.ru_stime)), flush=True)
    backplane.stop()


def redis_usage(servers):
    """(CPU seconds, post script µs) summed over the masters."""
    cpu = script = 0.0
    for port in servers.ports:
        info = servers.command(port, "INFO", "all")
        cpu += info["used_cpu_user"] + info["used_cpu_sys"]
        script += info.get("cmdstat_evalsha", {}).get("usec", 0)
    return cpu, script / 1e6


def run(masters, options):
    from tests.support.cluster import RedisClusterServers

    directory = tempfile.mkdtemp(prefix="shards-")
    servers = RedisClusterServers(directory, masters=masters, replicas=0)
    python = [sys.executable, __file__]
    try:
        count = options.senders * options.greenlets
        watcher = subprocess.Popen(
            [*python, "--subscriber", servers.url, str(count)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert watcher.stdout.readline().strip() == "ready"
        before = redis_usage(servers)
        started = time.monotonic()
        senders = [
            subprocess.Popen(
                [*python, "--sender", servers.url, str(index * options.greenlets)]
                + [str(options.greenlets), str(options.seconds)],
                stdout=subprocess.PIPE,
                text=True,
            )
            for index in range(options.senders)
        ]
        sent = [json.loads(process.communicate(timeout=options.seconds + 60)[0]) for process in senders]
        elapsed = time.monotonic() - started
        after = redis_usage(servers)
        posted = sum(s["posted"] for s in sent)
        seen = json.loads(watcher.communicate("%d\n" % posted, timeout=60)[0].splitlines()[-1])
    finally:
        servers.stop()
    return {
        "shards": masters,
        "rooms": count,
        "seconds": round(elapsed, 2),
        "messages": posted,
        "messages_per_second": round(posted / elapsed),
        "redis_cpu_us_per_message": round((after[0] - before[0]) / posted * 1e6, 2),
        "redis_script_us_per_message": round((after[1] - before[1]) / posted * 1e6, 2),
        "loadgen_cpu_us_per_message": round(sum(s["cpu"] for s in sent) / posted * 1e6, 1),
        "subscriber_received": seen["received"],
        "subscriber_out_of_order": seen["out_of_order"],
        "subscriber_cpu_us_per_message": round(seen["cpu"] / max(seen["received"], 1) * 1e6, 1),
        "valid": seen["received"] == posted and not seen["out_of_order"],
    }


def write(results, options):
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / ("%s-redis-shards" % datetime.date.today().isoformat())
    record = {
        "machine": {"cores": os.cpu_count(), "platform": platform.platform()},
        "options": vars(options),
        "runs": results,
    }
    stem.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [
        "# Redis Cluster: 1 shard against 3 (`bench/redis_shards.py`)",
        "",
        "%d senders x %d greenlets, one room each, posting for %d s; one subscribing node; %d cores."
        % (options.senders, options.greenlets, options.seconds, os.cpu_count()),
        "",
        "| shards | messages/s | Redis CPU µs/msg | script µs/msg | loadgen CPU µs/msg | received | valid |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        lines.append(
            "| %(shards)d | %(messages_per_second)d | %(redis_cpu_us_per_message)s | "
            "%(redis_script_us_per_message)s | %(loadgen_cpu_us_per_message)s | "
            "%(subscriber_received)d of %(messages)d | %(valid)s |" % r
        )
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main():
    if sys.argv[1:2] == ["--sender"]:
        from gevent import monkey

        monkey.patch_all()
        url, first, greenlets, seconds = sys.argv[2:]
        return sender(url, int(first), int(greenlets), float(seconds))
    if sys.argv[1:2] == ["--subscriber"]:
        from gevent import monkey

        monkey.patch_all()
        url, count = sys.argv[2:]
        return subscriber(url, int(count))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shards", default="1,3", help="configurations to run (default: %(default)s)")
    parser.add_argument("--senders", type=int, default=2, help="sender processes (default: %(default)s)")
    parser.add_argument("--greenlets", type=int, default=8, help="rooms per sender (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=10.0, help="posting time (default: %(default)s)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"), help="results directory")
    options = parser.parse_args()
    write([run(int(masters), options) for masters in options.shards.split(",")], options)


if __name__ == "__main__":
    main()
