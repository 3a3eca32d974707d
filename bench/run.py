"""Run the benchmark: each server pinned to core 0, the load generator to core 1, side by side.

For every size N and repetition: start the server, read its RSS after a GC, connect N
websocket clients, read the RSS again (memory per idle connection), then fan-out (server
CPU per delivery, deliveries/s) and broadcast latency (send to last recipient, p50/p99).
Writes bench/results/<date>.json, .md (medians, ratios chatwsgi/peer) and .png. Steady chat in
rooms and the reconnect storm are bench/steady_storm.py (same servers, same pinning).

    python bench/run.py --sizes 1000,5000,10000 --reps 3        # what `make bench` runs
    python bench/run.py --sizes 50 --reps 1 --servers chatwsgi,naive --out /tmp/smoke
"""

import argparse
import contextlib
import datetime
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PEERS = BENCH / "peers"
PYTHON = sys.executable


def server_specs():
    """name -> (command, environment, loadgen protocol flags)."""
    ours = {"PYTHONPATH": "%s:%s" % (ROOT, BENCH / "servers")}
    return {
        "chatwsgi": ([PYTHON, str(BENCH / "servers/chatwsgi_server.py")], ours, ["--protocol", "sio09"]),
        "naive": ([PYTHON, str(BENCH / "servers/naive_server.py")], ours, ["--protocol", "sio09", "--naive"]),
        "python-socketio": (
            [str(PEERS / "pysio-venv/bin/python"), str(BENCH / "servers/pysio_server.py")],
            {},
            ["--protocol", "sio5"],
        ),
        "node": (
            ["node", "--expose-gc", str(BENCH / "servers/node_server.js")],
            {"NODE_PATH": str(PEERS / "node/node_modules")},
            ["--protocol", "sio5"],
        ),
    }


def installed(command):
    """True when the server's interpreter and script are on this machine."""
    return shutil.which(command[0]) is not None and all(
        Path(part).exists() for part in command[1:] if part.endswith((".py", ".js"))
    )


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def pinned(core, command):
    return (["taskset", "-c", str(core)] if shutil.which("taskset") else []) + command


class Server:
    """One benchmarked server process, pinned to core 0."""

    def __init__(self, command, env):
        self.port = free_port()
        self.process = subprocess.Popen(
            pinned(0, command + ["--port", str(self.port)]),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=dict(os.environ, **env),
            preexec_fn=raise_open_files,
        )
        self.expect("ready", 30)

    def expect(self, line, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.process.stdout.readline().decode().strip()
            if text == line:
                return
            if not text and self.process.poll() is not None:
                break
        raise RuntimeError("server did not say %r" % line)

    def rss_after_gc(self):
        """Resident memory in bytes after the server's own full garbage collection."""
        self.process.send_signal(signal.SIGUSR1)
        self.expect("gc-done", 30)
        with open("/proc/%d/status" % self.process.pid) as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def stop(self):
        terminate(self.process)


def terminate(process):
    """SIGTERM and wait up to 10 s, then SIGKILL: every benchmarked process ends."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def available(names, specs):
    """The servers of the comma-separated ``names`` that are installed (the rest said on stderr)."""
    names = [n for n in names.split(",") if n]
    missing = [n for n in names if not installed(specs[n][0])]
    if missing:
        print("not installed (run bench/peers/install.sh): %s" % ", ".join(missing), file=sys.stderr)
    return [n for n in names if n not in missing]


def raise_open_files():
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def launch_loadgen(server, protocol, *args, core=1):
    """A load generator against ``server``, pinned to ``core``; it pauses once connected."""
    command = [PYTHON, str(BENCH / "loadgen.py"), "--port", server.port, "--server-pid", server.process.pid]
    command += ["--wait-stdin", *args, *protocol]
    return subprocess.Popen(
        pinned(core, [str(part) for part in command]),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        preexec_fn=raise_open_files,
    )


def connect_and_weigh(server, loadgen):
    """Wait until every client is connected, read the server's RSS after a GC, release the clients."""
    connected = json.loads(loadgen.stdout.readline())
    loaded = server.rss_after_gc()
    loadgen.stdin.write(b"\n")
    loadgen.stdin.flush()
    return connected, loaded


def one_run(name, size, options):
    """Memory, fan-out and latency of one server at one size: a dict of figures."""
    command, env, protocol = server_specs()[name]
    server = Server(command, env)
    helpers = []
    try:
        baseline = server.rss_after_gc()
        # With --loadgens K, K-1 processes only hold receivers; the last one also sends and measures.
        share = size // options.loadgens
        own = size - share * (options.loadgens - 1)
        for number in range(1, options.loadgens):
            helper = launch_loadgen(
                server,
                protocol,
                "--clients",
                share,
                "--receivers-only",
                "--first-index",
                own + 1 + (number - 1) * share,  # after the measuring process's own and its sender
                core=1 + number % max(1, (os.cpu_count() or 2) - 1),
            )
            json.loads(helper.stdout.readline())  # connected
            helpers.append(helper)
        loadgen = launch_loadgen(
            server,
            protocol,
            "--clients",
            own,
            "--messages",
            options.messages,
            "--timeout",
            options.timeout,
            "--other-receivers",
            share * len(helpers),
        )
        connected, loaded = connect_and_weigh(server, loadgen)
        for helper in helpers:  # they wait on stdin like the measuring one: release them to read
            helper.stdin.write(b"\n")
            helper.stdin.flush()
        phases = {p["phase"]: p for p in map(json.loads, loadgen.stdout.read().splitlines())}
        loadgen.wait(options.timeout * 4)
    finally:
        for helper in helpers:
            helper.kill()
            helper.wait()
        server.stop()
    fanout, latency = phases.get("fanout", {}), phases.get("latency", {})
    return {
        "server": name,
        "clients": size,
        "connect_seconds": connected["connect_seconds"],
        "rss_per_connection_bytes": round((loaded - baseline) / size),
        "server_cpu_us_per_delivery": fanout.get("server_cpu_us_per_delivery"),
        "single_broadcast_cpu_us_per_delivery": latency.get("single_broadcast_cpu_us_per_delivery"),
        "deliveries_per_second": fanout.get("deliveries_per_second"),
        "fanout_complete": fanout.get("complete"),
        "latency_p50_ms": latency.get("p50_ms"),
        "latency_p99_ms": latency.get("p99_ms"),
        "broadcasts": latency.get("broadcasts"),
        "loadgen_core_share": max(fanout.get("loadgen_core_share", 0), latency.get("loadgen_core_share", 0)),
    }


def open_files(pid):
    """How many descriptors a process has open (each client connection is one)."""
    return len(os.listdir("/proc/%d/fd" % pid))


def wait_for_disconnects(server, idle_files, timeout=120):
    """Wait until the server holds no more descriptors than when it had no clients."""
    deadline = time.monotonic() + timeout
    while open_files(server.process.pid) > idle_files:
        if time.monotonic() > deadline:
            raise RuntimeError("the server kept %d descriptors" % open_files(server.process.pid))
        time.sleep(0.2)  # polling a condition with a deadline


def one_wave(server, protocol, size):
    """Connect ``size`` clients, release them, drop them all: one connect/disconnect wave."""
    loadgen = launch_loadgen(server, protocol, "--clients", size, "--scenarios", "hold", "--hold-seconds", 1)
    connect_and_weigh(server, loadgen)
    loadgen.stdout.readline()  # its hold report: every client was connected
    loadgen.kill()
    loadgen.wait()


def capacity_run(name, options):
    """Hold ``--capacity`` connections for ``--hold-seconds``: drops, idle CPU, RSS per connection.

    The hold is the first of ``--waves`` connect/disconnect waves; after the last, the
    server's RSS is compared with its baseline (memory handed back, or kept for reuse).
    """
    command, env, protocol = server_specs()[name]
    server = Server(command, env)
    try:
        baseline = server.rss_after_gc()
        idle_files = open_files(server.process.pid)
        loadgen = launch_loadgen(
            server,
            protocol,
            "--clients",
            options.capacity,
            "--scenarios",
            "hold",
            "--hold-seconds",
            options.hold_seconds,
        )
        connected, loaded = connect_and_weigh(server, loadgen)
        held = json.loads(loadgen.stdout.readline())
        after = server.rss_after_gc()
        loadgen.kill()
        loadgen.wait()
        wait_for_disconnects(server, idle_files)
        for _ in range(options.waves - 1):
            one_wave(server, protocol, options.capacity)
            wait_for_disconnects(server, idle_files)
        after_waves = server.rss_after_gc()
    finally:
        server.stop()
    return dict(
        held,
        server=name,
        clients=options.capacity,
        connect_seconds=connected["connect_seconds"],
        rss_per_connection_bytes=round((loaded - baseline) / options.capacity),
        rss_growth_while_held_bytes=after - loaded,
        waves=options.waves,
        rss_baseline_bytes=baseline,
        rss_after_waves_bytes=after_waves,
        rss_after_waves_vs_baseline=round(after_waves / baseline, 3),
    )


FIGURES = [
    ("single_broadcast_cpu_us_per_delivery", "one broadcast at a time: CPU µs/delivery"),
    ("server_cpu_us_per_delivery", "back to back: CPU µs/delivery"),
    ("deliveries_per_second", "deliveries/s"),
    ("latency_p50_ms", "p50 ms"),
    ("latency_p99_ms", "p99 ms"),
    ("rss_per_connection_bytes", "RSS B/conn"),
]


def medians(runs, figures=FIGURES):
    """Median of each figure per (server, size); a run is invalid when the loadgen passed 80 % of its core."""
    table = {}
    for run in runs:
        table.setdefault((run["server"], run["clients"]), []).append(run)
    summary = []
    for (name, size), group in sorted(table.items(), key=lambda item: (item[0][1], item[0][0])):
        row = {"server": name, "clients": size, "reps": len(group)}
        for key, _ in figures:
            values = [r[key] for r in group if r[key] is not None]
            row[key] = round(statistics.median(values), 3) if values else None
        row["valid"] = all(r["loadgen_core_share"] <= 0.8 and r["fanout_complete"] for r in group)
        summary.append(row)
    return summary


def markdown(summary, versions, command):
    lines = [
        "# Benchmark %s" % datetime.date.today().isoformat(),
        "",
        "Reproduce: `%s` (server on core 0, load generator on core 1, websocket only)." % command,
        "Ratios are chatwsgi / peer: below 1 means chatwsgi uses less (CPU, memory, latency);",
        "for deliveries/s above 1 means chatwsgi delivers more.",
        "",
        "| clients | server | " + " | ".join(label for _, label in FIGURES) + " | valid |",
        "| --- | --- | " + " | ".join("---" for _ in FIGURES) + " | --- |",
    ]
    ours = {row["clients"]: row for row in summary if row["server"] == "chatwsgi"}
    for row in summary:
        cells = []
        for key, _ in FIGURES:
            value, base = row[key], ours.get(row["clients"], {}).get(key)
            cell = "–" if value is None else ("%g" % value)
            if row["server"] != "chatwsgi" and value and base:
                cell += " (×%.2f)" % (base / value)
            cells.append(cell)
        lines.append(
            "| %d | %s | %s | %s |"
            % (row["clients"], row["server"], " | ".join(cells), "yes" if row["valid"] else "NO")
        )
    lines += ["", "Versions: `%s`" % json.dumps(versions)]
    return "\n".join(lines) + "\n"


def plot(summary, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name in sorted({row["server"] for row in summary}):
        rows = [row for row in summary if row["server"] == name]
        sizes = [row["clients"] for row in rows]
        axes[0].plot(sizes, [row["server_cpu_us_per_delivery"] for row in rows], marker="o", label=name)
        axes[1].plot(sizes, [row["latency_p99_ms"] for row in rows], marker="o", label=name)
    axes[0].set(title="Server CPU per delivery", xlabel="clients", ylabel="µs")
    axes[1].set(title="Broadcast to last recipient, p99", xlabel="clients", ylabel="ms")
    for axis in axes:
        axis.legend()
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def versions():
    """Exact versions of what was measured."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": sys.version.split()[0]}
    for package in ("chatwsgi", "gevent", "gevent-websocket", "gevent-socketio-hartwork", "WebOb"):
        with contextlib.suppress(PackageNotFoundError):
            found[package] = version(package)
    peers = PEERS / "versions.json"
    if peers.exists():
        found.update(json.loads(peers.read_text()))
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,5000,10000")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--servers", default="chatwsgi,naive,python-socketio,node")
    parser.add_argument("--messages", type=int, default=100, help="broadcasts per scenario")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--out", default=str(BENCH / "results"))
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument(
        "--loadgens", type=int, default=1, help="load generator processes (spread over cores 1..n-1)"
    )
    parser.add_argument(
        "--capacity", type=int, default=0, help="opt-in: hold this many connections (e.g. 19000) instead"
    )
    parser.add_argument("--hold-seconds", type=float, default=600.0)
    parser.add_argument("--waves", type=int, default=3, help="capacity: connect/disconnect waves")
    options = parser.parse_args(argv)
    specs = server_specs()
    names = available(options.servers, specs)
    if options.capacity:
        for name in names:
            print(json.dumps(capacity_run(name, options)), flush=True)
        return 0
    runs = []
    for size in map(int, options.sizes.split(",")):
        for rep in range(options.reps):
            for name in names:
                result = one_run(name, size, options)
                print(json.dumps(result), flush=True)
                runs.append(dict(result, rep=rep))
    summary = medians(runs)
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / datetime.date.today().isoformat()
    command = "python bench/run.py " + " ".join(argv if argv is not None else sys.argv[1:])
    record = {"command": command, "versions": versions(), "runs": runs, "medians": summary}
    stem.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(summary, record["versions"], command))
    if not options.no_plot:
        plot(summary, stem.with_suffix(".png"))
    print(stem.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
