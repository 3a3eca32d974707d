"""Redis Cluster: messages/s and Redis CPU per message on 1 shard against 3, rooms spread.

No chat nodes and no browsers: what is measured is the backplane's Redis side. ``--senders``
processes post to ``--rooms`` rooms (``r0``, ``r1``, ... spread over the shards by their hash
tag) for ``--seconds``: a greenlet per room with its own connection to the room's master,
one request in flight on each, as a node's connection pool sends them. Each request is the
one ``RedisBackplane.post`` makes (the post script by EVALSHA, with the keys and arguments
``post`` itself builds: it runs with its Redis call recorded, and the sender sends that on a
plain socket). Going past redis-py's cluster client keeps the load generator's CPU per
message several times below Redis's, so that what limits the rate is Redis and the machine,
not the load generator (a sender busier than ``BUSY`` of its core makes the run invalid).

One more process is a node (``RedisBackplane`` with a member in every room, subscribed to
every room's shard channel) and counts what it receives: all of them, each once, in order,
or the run is invalid. After the senders stop, each room's seq in Redis says how many were
stored; the node waits until it has them all or makes no progress for ``STALL`` seconds,
and a shortfall is reported per room (stored in Redis but not delivered: a product bug).

Each configuration is a fresh cluster of masters only (appendfsync always, as
deploy/redis.conf), acks without WAIT. Reported per configuration (``--reps`` runs each,
interleaved): messages/s, Redis CPU µs per message (``INFO cpu`` of every master, user +
sys, less the masters' idle rate measured for 2 s before), the post script's own time
(``INFO commandstats`` EVALSHA; wall time, which includes waits for a core on a busy
machine), each master's and each sender's share of a core, and the machine's busy share.

    python bench/redis_shards.py                       # 1 and 3 shards, results in bench/results
    python bench/redis_shards.py --seconds 3 --reps 1 --out /tmp/shards
"""

import argparse
import datetime
import hashlib
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

BUSY = 0.8  # a sender busier than this share of its core may be what limits the rate
STALL = 5.0  # seconds without a delivery after which the node stops waiting
WAIT_MOST = 60.0  # and at most this long after the senders stop
TEXT = "hello, shard"


def rooms(count):
    return ["r%d" % n for n in range(count)]


def command(*parts):
    """One command in RESP, each argument as redis-py sends it (str() of numbers)."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part if isinstance(part, bytes) else str(part).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def sender(url, names, seconds, most):
    """Post as fast as acks come back, a greenlet and a connection per room, for ``seconds``
    or ``most`` messages per room; print what was posted and the posting's CPU."""
    import gevent
    from gevent import socket

    from chatwsgi.backplane.redis import RedisBackplane

    backplane = RedisBackplane(url, "sender-%d" % os.getpid(), wait_ms=0)
    sha = backplane._scripts["post"].sha
    recorded = []

    def record(name, keys, *args):  # instead of Redis: what post() would send, and a reply
        recorded.append((name, keys, args))
        return 0, 1

    backplane._run = record
    posted, wrong = dict.fromkeys(names, 0), []

    def post(room, connection):
        buffer = b""
        while posted[room] < most and time.monotonic() < deadline:
            backplane.post(room, "bench", "m%d" % posted[room], TEXT, time.time())
            name, keys, args = recorded.pop()
            assert name == "post", name
            connection.sendall(command("EVALSHA", sha, len(keys), *keys, *args))
            while buffer.count(b"\r\n") < (1 if buffer[:1] == b"-" else 3):
                data = connection.recv(4096)
                if not data:
                    raise ConnectionError("Redis closed the connection")
                buffer += data
            if buffer[:1] == b"-":
                raise RuntimeError(buffer.decode())
            lines = buffer.split(b"\r\n")
            seq, created = int(lines[1][1:]), int(lines[2][1:])
            buffer = b""
            posted[room] += 1
            if (seq, created) != (posted[room], 1):  # each room starts empty: 1, 2, 3, ...
                wrong.append((room, posted[room], seq, created))

    connections = {}
    for room in names:
        node = backplane.redis.get_node_from_key(backplane._room_key(room, "seq"))
        connections[room] = socket.create_connection((node.host, node.port))
    backplane.close()
    cpu, started = cpu_seconds(), time.monotonic()
    deadline = started + seconds
    gevent.joinall([gevent.spawn(post, room, connections[room]) for room in names], raise_error=True)
    elapsed, cpu = time.monotonic() - started, cpu_seconds() - cpu
    result = {"posted": sum(posted.values()), "cpu": cpu, "elapsed": elapsed, "wrong": wrong[:10]}
    print(json.dumps(result), flush=True)


class Counter:
    """A backplane listener with a member in every room: counts messages, checks their order."""

    def __init__(self):
        self.received, self.out_of_order, self.last, self.count = 0, 0, {}, {}

    def deliver(self, room, frame, exclude=None):
        pass

    def deliver_message(self, message):
        self.out_of_order += message.seq != self.last.get(message.room, 0) + 1
        self.last[message.room] = message.seq
        self.count[message.room] = self.count.get(message.room, 0) + 1
        self.received += 1

    def receives(self, room):
        return True

    def restore(self):
        return set()


def subscriber(url, count):
    """A node in every room: once told how many were stored (a line on stdin), wait for them
    (until none arrives for STALL seconds, WAIT_MOST at most) and print what it received."""
    import logging

    import gevent
    from gevent.os import make_nonblocking, nb_read

    from chatwsgi.backplane.redis import RedisBackplane

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    backplane = RedisBackplane(url, "watcher", wait_ms=0)
    counter = backplane.listener = Counter()
    backplane.start()
    for room in rooms(count):
        backplane.history(room)  # subscribed, and following the room from its last message
    print("ready", flush=True)
    cpu = cpu_seconds()
    make_nonblocking(0)
    line = b""
    while not line.endswith(b"\n"):
        line += nb_read(0, 100)
    stored, told = int(line), time.monotonic()
    progress, seen = told, counter.received
    while counter.received < stored and time.monotonic() - told < WAIT_MOST:
        gevent.sleep(0.05)
        if counter.received != seen:
            progress, seen = time.monotonic(), counter.received
        elif time.monotonic() - progress > STALL:
            break
    result = {
        "received": counter.received,
        "out_of_order": counter.out_of_order,
        "waited": round(time.monotonic() - told, 2),
        "last": counter.last,
        "count": counter.count,
        "cpu": cpu_seconds() - cpu,
    }
    print(json.dumps(result), flush=True)
    backplane.stop()


def redis_usage(servers):
    """(CPU seconds, EVALSHA calls, EVALSHA seconds) summed over the masters."""
    cpu = calls = script = 0.0
    for port in servers.ports:
        info = servers.command(port, "INFO", "all")
        cpu += info["used_cpu_user"] + info["used_cpu_sys"]
        calls += info.get("cmdstat_evalsha", {}).get("calls", 0)
        script += info.get("cmdstat_evalsha", {}).get("usec", 0)
    return cpu, calls, script / 1e6


def machine_busy():
    """(busy, total) clock ticks of every core so far (/proc/stat)."""
    fields = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def run(masters, options, log_dir):
    from chatwsgi.backplane.redis import load_script
    from tests.support.cluster import RedisClusterServers

    directory = tempfile.mkdtemp(prefix="shards-")
    servers = RedisClusterServers(directory, masters=masters, replicas=0)
    python = [sys.executable, __file__]
    names = rooms(options.rooms)
    log_path = Path(log_dir) / ("subscriber-%d-shards-%d.log" % (masters, time.time_ns()))
    watcher = None
    try:
        sha = hashlib.sha1(load_script("post").encode()).hexdigest()
        for port in servers.ports:
            assert servers.command(port, "SCRIPT", "LOAD", load_script("post")) == sha
        with log_path.open("w") as log_file:
            watcher = subprocess.Popen(
                [*python, "--subscriber", servers.url, str(options.rooms)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log_file,
                text=True,
            )
        assert watcher.stdout.readline().strip() == "ready"
        idle = redis_usage(servers)
        time.sleep(2.0)
        idle_rate = (redis_usage(servers)[0] - idle[0]) / 2.0
        before, busy_before = redis_usage(servers), machine_busy()
        started = time.monotonic()
        share = [names[index :: options.senders] for index in range(options.senders)]
        senders = [
            subprocess.Popen(
                [*python, "--sender", servers.url, ",".join(part), str(options.seconds), str(options.most)],
                stdout=subprocess.PIPE,
                text=True,
            )
            for part in share
        ]
        sent = [json.loads(process.communicate(timeout=options.seconds + 60)[0]) for process in senders]
        elapsed = time.monotonic() - started
        after, busy_after = redis_usage(servers), machine_busy()
        posted = sum(s["posted"] for s in sent)
        stored = {}
        for room in names:  # how many each room holds: its seq (a fresh cluster: from 1)
            key = "chatwsgi:{room:%s}:seq" % room
            stored[room] = int(servers.command(servers.master_of(key), "GET", key) or 0)
        seen = json.loads(watcher.communicate("%d\n" % sum(stored.values()), timeout=120)[0].splitlines()[-1])
    finally:
        if watcher is not None and watcher.poll() is None:
            watcher.kill()
        servers.stop()
    missing = {
        room: {
            "stored": stored[room],
            "received": seen["count"].get(room, 0),
            "last": seen["last"].get(room, 0),
        }
        for room in names
        if seen["count"].get(room, 0) != stored[room]
    }
    log_lines = log_path.read_text().splitlines()
    notable = [line for line in log_lines if " INFO " not in line or "delivered" in line or "down" in line]
    posting = max(s["elapsed"] for s in sent)  # the senders' posting, without their start-up
    redis_cpu = after[0] - before[0] - idle_rate * elapsed
    loadgen_busy = max(s["cpu"] / s["elapsed"] for s in sent)
    complete = seen["received"] == posted == sum(stored.values()) and not seen["out_of_order"]
    return {
        "shards": masters,
        "rooms": options.rooms,
        "seconds": round(posting, 2),
        "messages": posted,
        "stored": sum(stored.values()),
        "messages_per_second": round(posted / posting),
        "redis_cpu_us_per_message": round(redis_cpu / posted * 1e6, 2),
        "redis_idle_cpu_share": round(idle_rate, 4),
        "redis_busy_share_per_master": round(redis_cpu / posting / masters, 3),
        "evalsha_calls": int(after[1] - before[1]),
        "redis_script_wall_us_per_message": round((after[2] - before[2]) / posted * 1e6, 2),
        "loadgen_cpu_us_per_message": round(sum(s["cpu"] for s in sent) / posted * 1e6, 1),
        "loadgen_busiest_core_share": round(loadgen_busy, 3),
        "loadgen_wrong_replies": sum(len(s["wrong"]) for s in sent),
        "machine_busy_share": round((busy_after[0] - busy_before[0]) / (busy_after[1] - busy_before[1]), 3),
        "subscriber_received": seen["received"],
        "subscriber_out_of_order": seen["out_of_order"],
        "subscriber_waited_s": seen["waited"],
        "subscriber_cpu_us_per_message": round(seen["cpu"] / max(seen["received"], 1) * 1e6, 1),
        "subscriber_missing_by_room": missing,
        "subscriber_log": {"path": str(log_path), "lines": len(log_lines), "notable": notable[:20]},
        "complete": complete,
        "loadgen_ok": loadgen_busy <= BUSY and not any(s["wrong"] for s in sent),
        "valid": complete and loadgen_busy <= BUSY and not any(s["wrong"] for s in sent),
    }


def median(values):
    values = sorted(values)
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


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
        "Reproduce: `python bench/redis_shards.py --shards %s --senders %d --rooms %d --seconds %g"
        " --reps %d`." % (options.shards, options.senders, options.rooms, options.seconds, options.reps),
        "",
        "%d sender processes, %d rooms (a greenlet and a connection each, one request in flight), posting"
        " for %g s; one subscribing node; %d cores; appendfsync always; no replicas, no WAIT."
        % (options.senders, options.rooms, options.seconds, os.cpu_count()),
        "`valid`: every stored message delivered once and in order, and no sender busier than"
        " %d %% of its core." % (BUSY * 100),
        "",
        "| shards | run | messages/s | Redis CPU µs/msg | busy share per master | script wall µs/msg"
        " | loadgen CPU µs/msg | busiest sender core | machine busy | received | valid |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for n, r in enumerate(results):
        lines.append(
            "| %d | %d | %d | %s | %s | %s | %s | %s | %s | %d of %d | %s |"
            % (
                r["shards"],
                n + 1,
                r["messages_per_second"],
                r["redis_cpu_us_per_message"],
                r["redis_busy_share_per_master"],
                r["redis_script_wall_us_per_message"],
                r["loadgen_cpu_us_per_message"],
                r["loadgen_busiest_core_share"],
                r["machine_busy_share"],
                r["subscriber_received"],
                r["stored"],
                r["valid"],
            )
        )
    lines += ["", "Medians over the runs of each configuration (valid runs only):", ""]
    lines += ["| shards | valid runs | messages/s | Redis CPU µs/msg | ratio 3/1 msgs/s | ratio 3/1 CPU |"]
    lines += ["| --- | --- | --- | --- | --- | --- |"]
    medians = {}
    for shards in sorted({r["shards"] for r in results}):
        runs = [r for r in results if r["shards"] == shards and r["valid"]]
        if runs:
            medians[shards] = (
                median([r["messages_per_second"] for r in runs]),
                median([r["redis_cpu_us_per_message"] for r in runs]),
            )
    for shards, (rate, cpu) in medians.items():
        ratios = ("–", "–")
        if 1 in medians and shards != 1:
            ratios = ("%.2f" % (rate / medians[1][0]), "%.2f" % (cpu / medians[1][1]))
        count = len([r for r in results if r["shards"] == shards and r["valid"]])
        lines.append("| %d | %d | %d | %.1f | %s | %s |" % (shards, count, rate, cpu, *ratios))
    lines += [
        "",
        "How to read it: *Redis CPU µs/msg* is every master's `INFO cpu` (user + sys) over the run,"
        " less their idle rate, per message posted. *busy share per master*: that CPU over the"
        " posting time and the masters; well below 1, Redis did not limit the rate. *machine busy*"
        " (`/proc/stat`, every core) near 1: the cores were, shared by Redis, the senders, the"
        " subscribing node and whatever else runs on the machine; with 2 cores, 3 masters cannot"
        " scale out, and each gets fewer requests per event-loop pass (a read, a write and an"
        " fsync per pass, shared by its requests), hence more CPU per message. *script wall"
        " µs/msg* is `INFO commandstats` EVALSHA time, wall clock: on a busy machine it includes"
        " waits for a core. *received*: messages the node delivered, of those stored (each room's"
        " seq); a shortfall is listed per room in the JSON with the node's log.",
        "",
    ]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main():
    if sys.argv[1:2] == ["--sender"]:
        from gevent import monkey

        monkey.patch_all()
        url, names, seconds, most = sys.argv[2:]
        return sender(url, names.split(","), float(seconds), int(most))
    if sys.argv[1:2] == ["--subscriber"]:
        from gevent import monkey

        monkey.patch_all()
        url, count = sys.argv[2:]
        return subscriber(url, int(count))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shards", default="1,3", help="configurations to run (default: %(default)s)")
    parser.add_argument("--senders", type=int, default=2, help="sender processes (default: %(default)s)")
    parser.add_argument("--rooms", type=int, default=32, help="rooms, all senders (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=10.0, help="posting time (default: %(default)s)")
    parser.add_argument("--most", type=int, default=5000, help="messages per room, at most (%(default)s)")
    parser.add_argument("--reps", type=int, default=2, help="runs of each configuration (%(default)s)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"), help="results directory")
    options = parser.parse_args()
    log_dir = tempfile.mkdtemp(prefix="shards-logs-")
    configurations = [int(masters) for masters in options.shards.split(",")] * options.reps
    write([run(masters, options, log_dir) for masters in configurations], options)


if __name__ == "__main__":
    main()
