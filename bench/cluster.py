"""Fan-out over the backplanes: 1 node in memory, 1 node on SQLite, 1 and 2 nodes on Redis.

For each repetition and configuration, N clients in the room 'bench' (N/2 in each of two
load generator processes), then the scenarios of bench/loadgen.py:

  1 node, local    chatwsgi_server.py as run.py measures it (in-memory backplane)
  1 node, sqlite   the same with history in a SQLite file (serve.py's default store)
  1 node, redis    the same server on the Redis backplane
  2 nodes, redis   two such nodes, N/2 clients each; the sender is on node B, the measuring
                   load generator's receivers on node A, so latency crosses nodes
  2 nodes, zmq     the same, live frames through a ZeroMQ forwarder (python -m
                   chatwsgi.forwarder, pinned to core 1 with Redis) instead of Redis pub/sub

Every node is pinned to core 0, the load generators and redis-server to core 1: the
server side has the same one core in every configuration, so the figures give the
backplane's cost and check the split, not scale-out over more cores. Reported (medians
over the repetitions): deliveries/s, the nodes' CPU per delivery, broadcast latency
p50/p99, the sender's emit-to-ack time in a room of its own, and Redis's CPU and script
time per posted message. Writes bench/results/<date>-cluster.json and .md.

    python bench/cluster.py --clients 10000 --reps 3 --messages 100   # `make bench-cluster`
    python bench/cluster.py --clients 200 --reps 1 --messages 20 --out /tmp/smoke
"""

import argparse
import contextlib
import datetime
import json
import os
import platform
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import redis
from run import BENCH, Server, free_port, launch_loadgen, medians, pinned, server_specs, terminate, versions

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
CONFIGS = {  # name -> (nodes, on Redis)
    "1 node, local": (1, False),
    "1 node, sqlite": (1, False),
    "1 node, redis": (1, True),
    "2 nodes, redis": (2, True),
    "2 nodes, zmq": (2, True),
}
ZMQ = {"2 nodes, zmq"}  # configurations whose live frames go through a forwarder
SHORT = {"1-local": "1 node, local", "1-sqlite": "1 node, sqlite", "1-redis": "1 node, redis"}
SHORT["2-redis"] = "2 nodes, redis"
SHORT["2-zmq"] = "2 nodes, zmq"
BASELINE = "1 node, local"
FIGURES = [
    ("deliveries_per_second", "deliveries/s"),
    ("server_cpu_us_per_delivery", "server CPU µs/delivery"),
    ("single_cpu_us_per_delivery", "one at a time: server CPU µs/delivery"),
    ("latency_p50_ms", "p50 ms"),
    ("latency_p99_ms", "p99 ms"),
    ("ack_p50_ms", "ack p50 ms"),
    ("redis_cpu_us_per_message", "Redis CPU µs/msg"),
    ("redis_script_us_per_message", "Redis script µs/msg (quiet)"),
    ("forwarder_cpu_us_per_message", "forwarder CPU µs/msg"),
    ("ceiling_messages_per_second", "msg/s ceiling (1 core each)"),
    ("connect_seconds", "connect s"),
]
RATIOS = {"deliveries_per_second", "server_cpu_us_per_delivery", "latency_p50_ms", "latency_p99_ms"}
RATIOS |= {"ack_p50_ms", "connect_seconds", "single_cpu_us_per_delivery"}


class Lines:
    """The lines a child process prints, each awaited with a deadline (select, then os.read)."""

    def __init__(self, process, what):
        self.process, self.what = process, what
        self.fd, self.buffer = process.stdout.fileno(), b""

    def next(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.fd], [], [], remaining)[0]:
                raise TimeoutError("%s printed no line within %.0f s" % (self.what, timeout))
            chunk = os.read(self.fd, 65536)
            if not chunk:
                raise RuntimeError("%s ended (exit status %s)" % (self.what, self.process.poll()))
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()

    def json(self, timeout):
        return json.loads(self.next(timeout))


class RedisServer:
    """redis-server on 127.0.0.1 and a free port, nothing persisted, pinned to core 1."""

    def __init__(self, directory):
        self.port = free_port()
        self.url = "redis://127.0.0.1:%d/0" % self.port
        self.process = subprocess.Popen(
            pinned(1, [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", directory])
            + ["--save", "", "--appendonly", "no", "--loglevel", "notice"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=10)
        try:
            lines = Lines(self.process, "redis-server")
            for _ in range(200):  # its banner, then the line that says it listens
                if "Ready to accept connections" in lines.next(30):
                    break
            else:
                raise RuntimeError("redis-server did not say it was ready")
            self.client.config_set("loglevel", "warning")  # nobody reads its stdout from here on
        except BaseException:
            self.stop()
            raise

    def flush(self):
        self.client.flushall()
        self.client.config_resetstat()

    def usage(self):
        """CPU seconds, and script calls and microseconds, so far; at µs resolution.

        INFO, not /proc: /proc counts 10 ms ticks, coarser than what 100 messages cost Redis.
        """
        cpu = self.client.info("cpu")
        stats = self.client.info("commandstats")
        scripts = [stats.get("cmdstat_" + name, {}) for name in ("evalsha", "eval")]
        return {
            "cpu": cpu["used_cpu_user"] + cpu["used_cpu_sys"],
            "script_calls": sum(s.get("calls", 0) for s in scripts),
            "script_usec": sum(s.get("usec", 0) for s in scripts),
        }

    def stop(self):
        self.client.close()
        terminate(self.process)


class Forwarder:
    """``python -m chatwsgi.forwarder`` on two free ports in a row, pinned to core 1."""

    def __init__(self):
        self.port = free_port_pair()
        self.url = "zmq://127.0.0.1:%d" % self.port
        self.process = subprocess.Popen(
            pinned(1, [sys.executable, "-m", "chatwsgi.forwarder", "--port", str(self.port)]),
            cwd=BENCH.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        line = Lines(self.process, "the forwarder").next(30)
        if not line.startswith("forwarding on"):
            self.stop()
            raise RuntimeError("the forwarder said %r" % line)

    def stop(self):
        terminate(self.process)


def free_port_pair():
    """The first of two free ports in a row, below the ephemeral range (clients take those)."""
    for port in range(21000 + os.getpid() % 5000, 32000, 2):
        with socket.socket() as first, socket.socket() as second:
            try:
                first.bind(("127.0.0.1", port))
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise RuntimeError("no two free ports in a row")


def cpu_seconds(pid):
    """CPU seconds of a process's live threads, at ns resolution (``/proc/<pid>/task/*/schedstat``;
    ``/proc/<pid>/stat`` counts 10 ms ticks, coarser than what 100 messages cost a forwarder)."""
    total = 0
    for thread in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/schedstat" % (pid, thread)) as stat:
            total += int(stat.read().split()[0])
    return total / 1e9


def snapshot(pids, redis_server):
    """CPU seconds of each labelled process, Redis's own usage, and the time."""
    return {
        "time": time.monotonic(),
        "cpu": {label: cpu_seconds(pid) for label, pid in pids.items()},
        "redis": redis_server.usage() if redis_server else {"cpu": 0.0, "script_calls": 0, "script_usec": 0},
    }


def release(process):
    process.stdin.write(b"\n")
    process.stdin.flush()


def one_run(config, options, redis_server):
    """One configuration once: a dict of figures (and the load generator's raw phases)."""
    count, on_redis = CONFIGS[config]
    command, env, protocol = server_specs()["chatwsgi"]
    redis_server.flush()
    nodes, helper, loadgen = [], None, None
    forwarder = Forwarder() if config in ZMQ else None
    share = options.clients // 2  # the receivers-only process's clients
    own = options.clients - share  # the measuring process's receivers (it adds the sender)
    try:
        for name in "ab"[:count]:
            extra = ["--redis", redis_server.url, "--node", name] if on_redis else []
            if forwarder is not None:
                extra += ["--fanout", forwarder.url]
            if config == "1 node, sqlite":
                extra = ["--data", os.path.join(options.data_dir, "bench-%d.sqlite3" % time.time_ns())]
            nodes.append(Server(command + extra, env))
        # home: the measuring load generator's receivers; away: the sender and the other half.
        home, away = nodes[0], nodes[-1]
        helper = launch_loadgen(
            away,
            protocol,
            "--clients",
            share,
            "--receivers-only",
            "--report-on-stdin",
            "--first-index",
            own + 1,
            "--batch",
            options.batch,
        )
        helper_lines = Lines(helper, "the receivers-only load generator")
        helper_connected = helper_lines.json(options.connect_timeout)
        release(helper)  # from now on it reads (and counts) what it receives
        sender = ["--sender-port", away.port] if away is not home else []
        loadgen = launch_loadgen(
            home,
            protocol,
            "--clients",
            own,
            "--messages",
            options.messages,
            "--timeout",
            options.timeout,
            "--other-receivers",
            share,
            "--scenarios",
            "fanout,latency,ack",
            "--batch",
            options.batch,
            *sender,
        )
        lines = Lines(loadgen, "the measuring load generator")
        connected = lines.json(options.connect_timeout)
        pids = {"node-" + name: node.process.pid for name, node in zip("ab", nodes, strict=False)}
        pids.update(loadgen=loadgen.pid, helper=helper.pid)
        if forwarder is not None:
            pids["forwarder"] = forwarder.process.pid
        # Redis's housekeeping costs more per second than a few messages: measure it while
        # every client is connected and quiet (the measuring load generator waits), subtract it.
        idle = snapshot(pids, redis_server if on_redis else None)
        if on_redis:
            time.sleep(options.idle_seconds)  # a measuring interval, not a wait for anything
        # The fan-out is the first scenario: it starts on the release and ends with its line.
        before = snapshot(pids, redis_server if on_redis else None)
        release(loadgen)
        phases = {"fanout": lines.json(options.timeout * 2)}
        after = snapshot(pids, redis_server if on_redis else None)
        phases["latency"] = lines.json(options.timeout * 4)
        # The ack scenario, alone on the line from here, posts one message at a time.
        quiet = snapshot(pids, redis_server if on_redis else None)
        phases["ack"] = lines.json(options.timeout * 4)
        quiet_end = snapshot(pids, redis_server if on_redis else None)
        loadgen.wait(options.timeout)
        release(helper)
        held = helper_lines.json(30)
    finally:
        for process in (helper, loadgen):
            if process is not None and process.poll() is None:
                process.kill()
            if process is not None:
                process.wait()
        for node in nodes:
            node.stop()
        if forwarder is not None:
            forwarder.stop()
    connected["connect_seconds"] += helper_connected["connect_seconds"]
    snapshots = {"idle": idle, "before": before, "after": after, "quiet": quiet, "quiet_end": quiet_end}
    return figures(config, options, share, phases, held, snapshots, connected)


def redis_delta(snapshots, start, end, key):
    return snapshots[end]["redis"][key] - snapshots[start]["redis"][key]


def figures(config, options, share, phases, held, snapshots, connected):
    fanout, latency, ack = phases["fanout"], phases["latency"], phases["ack"]
    before, after = snapshots["before"], snapshots["after"]
    window = after["time"] - before["time"]
    cpu = {label: after["cpu"][label] - before["cpu"][label] for label in before["cpu"]}
    cpu["redis"] = redis_delta(snapshots, "before", "after", "cpu")
    node_cpu = sum(seconds for label, seconds in cpu.items() if label.startswith("node-"))
    idle_window = max(before["time"] - snapshots["idle"]["time"], 1e-6)
    redis_idle = redis_delta(snapshots, "idle", "before", "cpu") / idle_window
    redis_cpu = cpu["redis"] - redis_idle * window
    fan = {key: redis_delta(snapshots, "before", "after", key) for key in ("script_usec", "script_calls")}
    quiet = {key: redis_delta(snapshots, "quiet", "quiet_end", key) for key in before["redis"]}
    quiet["cpu"] -= redis_idle * (snapshots["quiet_end"]["time"] - snapshots["quiet"]["time"])
    on_redis, messages = CONFIGS[config][1], options.messages

    def per_message(value, scale=1.0):
        return round(value * scale / messages, 2) if on_redis else None

    # Every receiver of the other process got every broadcast of fan-out and latency.
    expected = share * (messages + (latency.get("broadcasts") or 0))
    # The latency phase, one broadcast at a time (between the fan-out's end and the ack's start):
    # each message written to every client on its own, as a quiet chat's are.
    single = snapshots["quiet"]["cpu"]
    single_cpu = sum(single[label] - after["cpu"][label] for label in single if label.startswith("node-"))
    single_deliveries = (latency.get("broadcasts") or 0) * (options.clients + 1)
    core1 = cpu["loadgen"] + cpu["helper"] + cpu["redis"] + cpu.get("forwarder", 0.0)
    forwarder_cpu = cpu.get("forwarder")
    # What one core each for Redis and the forwarder could take, at these costs per message.
    busiest = max(redis_cpu, forwarder_cpu or 0.0) / messages if on_redis else None
    return {
        "server": config,
        "clients": options.clients,
        "nodes": CONFIGS[config][0],
        "connect_seconds": round(connected["connect_seconds"], 2),
        "deliveries_per_second": fanout.get("deliveries_per_second"),
        "server_cpu_us_per_delivery": round(node_cpu / max(fanout["delivered"], 1) * 1e6, 3),
        "single_cpu_us_per_delivery": round(single_cpu / max(single_deliveries, 1) * 1e6, 3),
        "latency_p50_ms": latency.get("p50_ms"),
        "latency_p99_ms": latency.get("p99_ms"),
        "broadcasts": latency.get("broadcasts"),
        "ack_p50_ms": ack.get("p50_ms"),
        "ack_p99_ms": ack.get("p99_ms"),
        "acks": ack.get("acks"),
        # Over the fan-out, less the idle rate: what a message costs Redis under load.
        "redis_cpu_us_per_message": per_message(redis_cpu, 1e6),
        "fanout_redis_script_us_per_message": per_message(fan["script_usec"]),
        "fanout_redis_script_calls": fan["script_calls"],
        # Over the ack scenario (one message at a time, core 1 nearly idle): the same, quiet.
        "redis_script_us_per_message": per_message(quiet["script_usec"]),
        "quiet_redis_cpu_us_per_message": per_message(quiet["cpu"], 1e6),
        "quiet_redis_script_calls": quiet["script_calls"],
        "redis_idle_cpu_us_per_second": round(redis_idle * 1e6, 1),
        "forwarder_cpu_us_per_message": None if forwarder_cpu is None else per_message(forwarder_cpu, 1e6),
        "ceiling_messages_per_second": round(1 / busiest) if busiest else None,
        "other_process_delivered": held.get("delivered"),
        "other_process_expected": expected,
        "fanout_complete": bool(
            fanout.get("complete")
            and latency.get("broadcasts") == messages
            and ack.get("acks") == messages
            and not ack.get("failed")
            and held.get("delivered") == expected
        ),
        # Core 1 holds both load generators and redis-server: its busy share over the fan-out.
        "loadgen_core_share": round(core1 / window, 3),
        "window_seconds": round(window, 3),
        "window_cpu_seconds": {label: round(seconds, 4) for label, seconds in cpu.items()},
        "phases": phases,
    }


def markdown(summary, record):
    """The table (ratios against the 1-node in-memory run) and how it was made."""
    date = datetime.date.today().isoformat()
    lines = [
        "# Cluster benchmark %s" % date,
        "",
        "Reproduce: `%s`." % record["command"],
        "",
        "Every chat node is pinned to core 0 (two nodes share it); both load generators and",
        "redis-server are pinned to core 1. The server side has one core in every configuration,",
        "so this measures what the Redis backplane costs and that the split delivers everything,",
        "not scale-out over more cores. In `2 nodes, redis` the sender is on node B and the",
        "measured receivers on node A: the latency crosses nodes through Redis; in `2 nodes, zmq`",
        "through a ZeroMQ forwarder (pinned to core 1 too), Redis storing and numbering only.",
        "Ratios in brackets are configuration / `%s` (deliveries/s: above 1 is more;" % BASELINE,
        "the rest: above 1 costs more). `valid` needs a complete fan-out on both load generators",
        "and core 1 at most 80 % busy.",
        "",
        "| clients | configuration | " + " | ".join(label for _, label in FIGURES) + " | valid |",
        "| --- | --- | " + " | ".join("---" for _ in FIGURES) + " | --- |",
    ]
    base = {row["clients"]: row for row in summary if row["server"] == BASELINE}
    for row in summary:
        cells = []
        for key, _ in FIGURES:
            value, reference = row[key], base.get(row["clients"], {}).get(key)
            cell = "–" if value is None else "%g" % value
            if row["server"] != BASELINE and key in RATIOS and value and reference:
                cell += " (×%.2f)" % (value / reference)
            cells.append(cell)
        valid = "yes" if row["valid"] else "NO"
        lines.append("| %d | %s | %s | %s |" % (row["clients"], row["server"], " | ".join(cells), valid))
    lines.append("")
    for row in summary:
        local = base.get(row["clients"], {}).get("ack_p50_ms")
        if row["server"] != BASELINE and row["ack_p50_ms"] is not None and local is not None:
            lines.append(
                "- %s, %d clients: the store's cost seen by the sender (ack p50 − local's): %.3f ms"
                % (row["server"], row["clients"], row["ack_p50_ms"] - local)
            )
    lines += [
        "",
        "How to read it: *deliveries/s* and *server CPU µs/delivery* are over the fan-out phase",
        "(%d messages sent back to back; CPU of every node from `/proc/<pid>/task/*/schedstat`)."
        % record["messages"],
        "*one at a time: server CPU µs/delivery* is the nodes' CPU over the latency phase (the",
        "broadcasts below, one at a time, with 10 ms between them) per delivery: no message shares",
        "a write with the next, as in a quiet chat, and through Redis as in memory.",
        "*p50/p99* are per broadcast, one at a time, from sending to the last recipient of the",
        "measuring load generator (N/2 clients plus the sender). *ack p50* is emit to ack for the",
        "sender alone in a room: the ack follows the store, so the difference to `%s`" % BASELINE,
        "is the Redis round trip. *Redis CPU µs/msg* is redis-server's CPU over the fan-out",
        "(`INFO cpu`) less its idle rate (measured for %g s with every client connected and"
        % record["idle_seconds"],
        "quiet) per message. *Redis script µs/msg (quiet)* is the time inside scripts",
        "(`INFO commandstats`, EVALSHA: the post script, and the sender's one join) per message",
        "during the ack scenario, when core 1 is nearly idle; during the fan-out Redis shares",
        "core 1 with busy load generators and that wall-clock time includes waits for the core",
        "(in the JSON as `fanout_redis_script_us_per_message`). *forwarder CPU µs/msg*: the",
        "forwarder's CPU over the fan-out per message (`schedstat`, ns). *msg/s ceiling*:",
        "1 s / the larger of Redis's and the forwarder's CPU per message, what one core each",
        "could take at these costs (derived, not measured at saturation).",
        "",
        "Machine: %s" % record["machine"],
        "",
        "Versions: `%s`" % json.dumps(record["versions"]),
    ]
    return "\n".join(lines) + "\n"


def machine():
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        model = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "")
    pinning = "taskset pinning" if shutil.which("taskset") else "NOT pinned (no taskset)"
    return "%d cores (%s), Linux %s, %s; nodes on core 0, load generators and redis-server on core 1" % (
        os.cpu_count() or 0,
        model or "unknown CPU",
        platform.release(),
        pinning,
    )


def all_versions():
    found = versions()
    found["redis-py"] = version("redis")
    found["redis-server"] = subprocess.run(
        [REDIS_SERVER, "--version"], capture_output=True, text=True, timeout=10
    ).stdout.strip()
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10000, help="N, split in halves")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--messages", type=int, default=100, help="per scenario")
    parser.add_argument("--configs", default=",".join(SHORT), help="a subset of %s" % ",".join(SHORT))
    parser.add_argument("--timeout", type=float, default=120.0, help="the load generator's waits")
    parser.add_argument("--connect-timeout", type=float, default=600.0)
    parser.add_argument(
        "--idle-seconds", type=float, default=2.0, help="Redis's idle CPU is measured this long per run"
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=50,
        help="connections opened at once, in every configuration; above the Redis backplane's pool"
        " of 64 connections a burst of joins fails with 'Too many connections'",
    )
    parser.add_argument("--out", default=str(BENCH / "results"))
    options = parser.parse_args(argv)
    configs = [SHORT.get(name, name) for name in map(str.strip, options.configs.split(",")) if name]
    unknown = [name for name in configs if name not in CONFIGS]
    if unknown or options.clients < 2:
        parser.error("unknown configuration %s" % unknown if unknown else "--clients needs at least 2")
    if not os.access(REDIS_SERVER, os.X_OK):
        parser.error("redis-server is not installed (Debian: apt-get install redis-server)")
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as directory:
        redis_server = RedisServer(directory)
        options.data_dir = directory  # the SQLite files of the "1 node, sqlite" runs
        try:
            for rep in range(options.reps):
                for config in configs:
                    result = one_run(config, options, redis_server)
                    print(json.dumps({k: v for k, v in result.items() if k != "phases"}), flush=True)
                    runs.append(dict(result, rep=rep))
        finally:
            redis_server.stop()
    summary = medians(runs, FIGURES)
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / (datetime.date.today().isoformat() + "-cluster")
    command = "python bench/cluster.py " + " ".join(argv if argv is not None else sys.argv[1:])
    record = {
        "command": command,
        "messages": options.messages,
        "idle_seconds": options.idle_seconds,
        "machine": machine(),
        "versions": all_versions(),
        "runs": runs,
        "medians": summary,
    }
    stem.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(summary, record))
    print(stem.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
