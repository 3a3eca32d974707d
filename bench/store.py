"""What storing a message costs the event loop: a room in memory against one in a SQLite file.

Posting blocks the loop for as long as the store takes (sqlite3 is not cooperative), so
this times ``post`` one message at a time (not batched), then the reads a reconnecting
client causes (a catch-up page of 500, a page of 50 older messages), side by side in one
process, interleaved over ``--reps`` rounds; medians in µs.

    .venv/bin/python bench/store.py                  # 3,000 posts x 5 rounds
    .venv/bin/python bench/store.py --posts 20000 --reps 3
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chatwsgi.rooms import Retention, Room  # noqa: E402
from chatwsgi.sqlite_store import DURABLE_RETENTION, SqliteStore  # noqa: E402


def per_call(call, count):
    """Mean µs of ``call(n)`` over n in range(count)."""
    started = time.perf_counter()
    for number in range(count):
        call(number)
    return (time.perf_counter() - started) / count * 1e6


def one_round(room, posts, round_number):
    text = "x" * 100
    post = per_call(lambda n: room.post("alice", "r%d-%d" % (round_number, n), text, time.time()), posts)
    last = room.last_seq
    catch_up = per_call(lambda n: room.after(last - 500), 200)
    older = per_call(lambda n: room.before(last - 1000, 50), 200)
    return {"post": post, "catch-up page of 500": catch_up, "50 older": older}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=3000)
    parser.add_argument("--reps", type=int, default=5)
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-store-") as directory:
        store = SqliteStore(Path(directory) / "bench.sqlite3", DURABLE_RETENTION)
        rooms = {"memory": Room("bench", Retention(most=10**6)), "sqlite": store.open("bench")}
        results = {name: [] for name in rooms}
        for round_number in range(options.reps):
            for name, room in rooms.items():
                results[name].append(one_round(room, options.posts, round_number))
        store.close()
    print("| store | " + " | ".join("%s µs" % key for key in results["memory"][0]) + " |")
    print("| --- " * (1 + len(results["memory"][0])) + "|")
    for name, rounds in results.items():
        cells = ["%.1f" % statistics.median(r[key] for r in rounds) for key in rounds[0]]
        print("| %s | %s |" % (name, " | ".join(cells)))


if __name__ == "__main__":
    main()
