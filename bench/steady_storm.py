"""Steady chat and the reconnect storm, for every server (issue 16), beside the floor.

**steady**: ``--clients`` members in R rooms of ``--clients``/R for each R of ``--rooms``;
random members send at each offered rate of ``--steps`` (messages/s) for ``--step-seconds``;
per server and step: the server's CPU per delivery (and less its idle share), deliveries/s,
send-to-each-recipient latency p50/p99, everything delivered or not. The *highest rate held*
is the highest step with p99 < 100 ms, every delivery made and the load generator below
80 % of its core. Beside it the floor (bench/floor.py: one prebuilt frame written to each of
R-size sockets), so CPU per delivery is also given as a ratio to the floor.

**storm**: ``--clients`` clients connect and complete nickname + join (the peers: connect +
an acked ``join``) into rooms of ``--clients``/``--storm-rooms``, at most ``--window`` at
once: total seconds, joins/s, server CPU per join; chatwsgi also on the Redis backplane
(``--redis``: a redis-server of our own, 127.0.0.1, a free port, pinned to core 1).

Server on core 0, load generator on core 1, as bench/run.py. Writes
bench/results/<date>-steady-storm.json and .md.

    python bench/steady_storm.py --clients 10000 --reps 2                    # the full run
    python bench/steady_storm.py --clients 200 --rooms 10 --steps 20,50 --step-seconds 2 \\
        --reps 1 --servers chatwsgi,naive --out /tmp/smoke                    # a smoke run
"""

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from run import BENCH, PYTHON, Server, available, launch_loadgen, server_specs, versions

P99_LIMIT_MS = 100.0
LOADGEN_LIMIT = 0.8


def release(loadgen, timeout):
    """Let a load generator waiting on stdin go on; its remaining JSON lines by phase."""
    loadgen.stdin.write(b"\n")
    loadgen.stdin.flush()
    lines = []
    try:
        out, _ = loadgen.communicate(timeout=timeout)
        lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    finally:
        if loadgen.poll() is None:
            loadgen.kill()
            loadgen.wait()
    return lines


def drive(command, env, protocol, flags, budget):
    """Start the server, run one load generator with ``flags`` against it, stop the server:
    (the load generator's 'connected' report, its later reports by phase, within ``budget`` s)."""
    server = Server(command, env)
    try:
        loadgen = launch_loadgen(server, protocol, *flags)
        connected = json.loads(loadgen.stdout.readline())
        phases = {p["phase"]: p for p in release(loadgen, budget)}
    finally:
        server.stop()
    return connected, phases


def steady_run(name, rooms, options):
    """One server, one room count: the connect figures, then every step's."""
    command, env, protocol = server_specs()[name]
    # Each step lasts at most its sending time plus the drain timeout, plus a settle second.
    budget = len(options.steps.split(",")) * (options.step_seconds + options.drain_timeout + 2) + 60
    connected, phases = drive(
        command,
        env,
        protocol,
        (
            *("--clients", options.clients, "--rooms", rooms, "--window", options.window),
            *("--scenarios", "steady", "--steps", options.steps, "--step-seconds", options.step_seconds),
            *("--drain-timeout", options.drain_timeout, "--p99-limit", P99_LIMIT_MS, "--seed", options.seed),
            *("--idle-seconds", options.idle_seconds),
        ),
        budget,
    )
    result = phases.get("steady", {})
    return {
        "server": name,
        "clients": options.clients,
        "rooms": rooms,
        "room_size": options.clients // rooms,
        "connected": connected,
        "server_idle_core_share": result.get("server_idle_core_share"),
        "steps": result.get("steps", []),
        "highest_rate_held": result.get("highest_rate_held"),
    }


def storm_run(name, options, redis_server=None, window=None):
    """One storm: every client connects and joins, at most ``window`` (``--window``) at once."""
    window = window or options.window
    command, env, protocol = server_specs()[name]
    if redis_server is not None:
        redis_server.flush()
        command = command + ["--redis", redis_server.url, "--node", "a"]
    connected, _ = drive(
        command,
        env,
        protocol,
        (
            *("--clients", options.clients, "--rooms", options.storm_rooms, "--window", window),
            *("--scenarios", "", "--settle", 0),
        ),
        60,
    )
    return {
        "server": name + (" (redis, window %d)" % window if redis_server is not None else ""),
        "clients": options.clients,
        "rooms": options.storm_rooms,
        "window": window,
        "seconds": connected["joined_seconds"],
        "joins_per_second": connected["joins_per_second"],
        "server_cpu_us_per_join": connected["server_cpu_us_per_join"],
        "loadgen_core_share": connected["loadgen_core_share"],
        "join_failures": connected["join_failures"],
        "join_failure_sample": connected["join_failure_sample"],
        "valid": connected["loadgen_core_share"] <= LOADGEN_LIMIT and not connected["join_failures"],
    }


def floor(sizes, broadcasts):
    """bench/floor.py's CPU µs per delivery for each size (recipients of one broadcast)."""
    command = [PYTHON, str(BENCH / "floor.py"), "--sizes", ",".join(map(str, sizes))]
    command += ["--broadcasts", str(broadcasts)]
    out = subprocess.run(command, capture_output=True, text=True, timeout=600, check=True).stdout
    found = {}
    for size, cpu, p50, p99 in re.findall(r"^\| (\d+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$", out, re.M):
        found[int(size)] = {"cpu_us_per_delivery": float(cpu), "p50_ms": float(p50), "p99_ms": float(p99)}
    return {"command": " ".join(["python"] + command[1:]), "sizes": found}


def span(values, digits=1):
    """'a' or 'a–b' over the repetitions (None left out)."""
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    low, high = min(values), max(values)
    text = "%.*f" % (digits, low)
    return text if round(low, digits) == round(high, digits) else text + "–" + "%.*f" % (digits, high)


def steady_tables(runs, floors):
    lines = []
    for rooms in sorted({r["rooms"] for r in runs}):
        group = [r for r in runs if r["rooms"] == rooms]
        size = group[0]["room_size"]
        base = (floors.get(size) or floors.get(str(size)) or {}).get("cpu_us_per_delivery")  # JSON: str keys
        lines += [
            "",
            "### %d rooms of %d (floor at %d recipients: %s µs/delivery)"
            % (rooms, size, size, "%.2f" % base if base else "not measured"),
            "",
            "| server | msg/s offered | sent/s | deliveries/s | CPU µs/delivery | less idle | × floor "
            "| p50 ms | p99 ms | all delivered | loadgen core | others on core 0 | held |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for name in dict.fromkeys(r["server"] for r in group):
            mine = [r for r in group if r["server"] == name]
            rates = sorted({s["rate"] for r in mine for s in r["steps"]})
            for rate in rates:
                steps = [s for r in mine for s in r["steps"] if s["rate"] == rate]
                cpu = [s["server_cpu_us_per_delivery"] for s in steps]
                lines.append(
                    "| %s | %g | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |"
                    % (
                        name,
                        rate,
                        span([s["sent_per_second"] for s in steps], 0),
                        span([s["deliveries_per_second"] for s in steps], 0),
                        span(cpu),
                        span([s["server_cpu_us_per_delivery_less_idle"] for s in steps]),
                        span([c / base for c in cpu], 2) if base else "–",
                        span([s["p50_ms"] for s in steps]),
                        span([s["p99_ms"] for s in steps]),
                        "/".join("yes" if s["complete"] else "NO" for s in steps),
                        span([s["loadgen_core_share"] for s in steps], 2),
                        span([s.get("others_on_server_core") for s in steps], 2),
                        "/".join(
                            "yes" if s["held"] and s["loadgen_core_share"] <= LOADGEN_LIMIT else "no"
                            for s in steps
                        ),
                    )
                )
        lines += ["", "Highest rate held (msg/s, per repetition):"]
        for name in dict.fromkeys(r["server"] for r in group):
            held = [r["highest_rate_held"] for r in group if r["server"] == name]
            lines.append("- %s: %s" % (name, ", ".join("%g" % h if h else "none" for h in held)))
    return lines


def storm_table(runs):
    lines = [
        "",
        "| server | seconds | joins/s | server CPU µs/join | loadgen core | failed joins | valid |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in dict.fromkeys(r["server"] for r in runs):
        mine = [r for r in runs if r["server"] == name]
        lines.append(
            "| %s | %s | %s | %s | %s | %s | %s |"
            % (
                name,
                span([r["seconds"] for r in mine], 2),
                span([r["joins_per_second"] for r in mine], 0),
                span([r["server_cpu_us_per_join"] for r in mine], 0),
                span([r["loadgen_core_share"] for r in mine], 2),
                span([r["join_failures"] for r in mine], 0),
                "/".join("yes" if r["valid"] else "NO" for r in mine),
            )
        )
    return lines


def markdown(record):
    lines = ["# Steady chat and reconnect storm, %s" % record["date"], "", "Machine: %s." % record["machine"]]
    lines.append(
        "Load average (1/5/15 min) before: %s, after: %s."
        % tuple(" / ".join("%.2f" % x for x in record[k]) for k in ("loadavg_before", "loadavg_after"))
    )
    commands = record.get("commands", [record["command"]])
    lines += ["", "Reproduce (in order):", ""] + ["- `%s`" % c for c in commands]
    if record["steady"]:
        lines += ["", "## Steady chat", "", "Floor: `%s`." % record["floor"]["command"]]
        lines += steady_tables(record["steady"], record["floor"]["sizes"])
    if record["storm"]:
        lines += ["", "## Reconnect storm", ""]
        first = record["storm"][0]
        lines.append(
            "%d clients connect and join (rooms of %d), at most %d at once unless the name says"
            " otherwise; ranges over the repetitions."
            % (first["clients"], first["clients"] // first["rooms"], first["window"])
        )
        lines += storm_table(record["storm"])
    long = record.get("long_steps")  # a run with steps long enough to hold a heartbeat period
    if long:
        lines += ["", "## Steady chat, %g-second steps" % long["step_seconds"], ""]
        lines += ["Reproduce: `%s`" % long["command"], "", "Floor: `%s`." % long["floor"]["command"]]
        lines += steady_tables(long["steady"], long["floor"]["sizes"])
    if record.get("notes"):
        lines += ["", "## Notes", ""] + record["notes"]
    if record.get("errors"):
        lines += ["", "## Runs that failed", ""] + ["- `%s`" % json.dumps(e) for e in record["errors"]]
    lines += ["", "Versions: `%s`" % json.dumps(record["versions"])]
    return "\n".join(lines) + "\n"


def machine():
    cores = len(os.sched_getaffinity(0))
    return "%d cores, Linux %s, Python %s; server on core 0, load generator on core 1" % (
        cores,
        platform.release(),
        platform.python_version(),
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10000)
    parser.add_argument("--rooms", default="100,1000", help="steady: room counts ('' for none)")
    parser.add_argument("--steps", default="10,20,50,100,200,500,1000", help="steady: offered msg/s")
    parser.add_argument("--step-seconds", type=float, default=5.0)
    parser.add_argument("--drain-timeout", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--idle-seconds", type=float, default=3.0, help="steady: idle CPU measured first")
    parser.add_argument("--storm-rooms", type=int, default=100, help="storm: room count (0: no storm)")
    parser.add_argument("--window", type=int, default=500, help="clients connecting at once")
    parser.add_argument("--redis", action="store_true", help="storm: chatwsgi on Redis as well")
    parser.add_argument(
        "--redis-windows", default="500,50", help="storm on Redis: windows (its pool holds 64 connections)"
    )
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--servers", default="chatwsgi,naive,python-socketio,node")
    parser.add_argument("--floor-broadcasts", type=int, default=1000)
    parser.add_argument("--out", default=str(BENCH / "results"))
    parser.add_argument("--name", default="steady-storm", help="results file: <date>-<name>.json/.md")
    parser.add_argument("--append", action="store_true", help="add to that file's runs (same date)")
    options = parser.parse_args(argv)
    specs = server_specs()
    names = available(options.servers, specs)
    room_counts = [int(r) for r in options.rooms.split(",") if r]
    record = {
        "date": datetime.date.today().isoformat(),
        "command": shlex.join(["python", "bench/steady_storm.py", *(sys.argv[1:] if argv is None else argv)]),
        "machine": machine(),
        # Other processes on the machine show here: the 1/5/15-minute load before and after.
        "loadavg_before": [round(x, 2) for x in os.getloadavg()],
        "loadavg_after": None,
        "versions": versions(),
        "floor": {"command": None, "sizes": {}},
        "steady": [],
        "storm": [],
        "errors": [],
    }
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / ("%s-%s" % (record["date"], options.name))
    record["commands"] = [record["command"]]
    if options.append and stem.with_suffix(".json").exists():
        # More repetitions or configurations into the same results: earlier runs are kept.
        earlier = json.loads(stem.with_suffix(".json").read_text())
        record["commands"] = earlier.get("commands", [earlier["command"]]) + record["commands"]
        record["loadavg_before"] = earlier["loadavg_before"]
        for key in ("steady", "storm", "errors"):
            record[key] = earlier.get(key, [])
        record["floor"] = earlier["floor"]

    def save():
        """Written after every run: a run cut short leaves the ones before it."""
        record["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
        stem.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
        stem.with_suffix(".md").write_text(markdown(record))

    def attempt(kind, run, *args, rep):
        try:
            result = dict(run(*args), rep=rep)
        except Exception as error:  # one failed run is recorded, the others still run
            record["errors"].append({"kind": kind, "args": repr(args[:1]), "rep": rep, "error": repr(error)})
            print(json.dumps(record["errors"][-1]), flush=True)
            return
        print(json.dumps(result), flush=True)
        record[kind].append(result)
        save()

    if room_counts and not record["floor"]["sizes"]:
        record["floor"] = floor(sorted({options.clients // r for r in room_counts}), options.floor_broadcasts)
        print(json.dumps({"floor": record["floor"]}), flush=True)
    redis_server, directory = None, None
    if options.redis and options.storm_rooms and "chatwsgi" in names:
        from cluster import RedisServer

        directory = tempfile.TemporaryDirectory()
        redis_server = RedisServer(directory.name)
    try:
        for rep in range(options.reps):
            if options.storm_rooms:
                for name in names:
                    attempt("storm", storm_run, name, options, rep=rep)
                for window in map(int, filter(None, options.redis_windows.split(","))):
                    if redis_server is not None:
                        attempt("storm", storm_run, "chatwsgi", options, redis_server, window, rep=rep)
            for rooms in room_counts:
                for name in names:
                    attempt("steady", steady_run, name, rooms, options, rep=rep)
    finally:
        if redis_server is not None:
            redis_server.stop()
            directory.cleanup()
        save()
    print(stem.with_suffix(".md").read_text())
    return 1 if record["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
