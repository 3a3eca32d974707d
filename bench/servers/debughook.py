"""A memory and CPU probe for a benchmarked server, off unless ``CHATWSGI_DEBUG_DIR`` is set.

With it set, SIGUSR2 writes one JSON line to ``<dir>/probe.jsonl`` after a full collection:
RSS, the allocator's view (glibc ``mallinfo2``, pymalloc's arenas from
``sys._debugmallocstats``), live objects by type (``gc.get_objects``), the server's session
tables, and, when ``CHATWSGI_TRACEMALLOC`` is set (tracemalloc started at import, 8 frames),
the traced total and a snapshot compared with the previous probe's (top 25 lines by growth)
and with the first probe's (what was allocated since and is still alive).
A second SIGUSR2 within the same probe is ignored. Used to tell a leak (objects still alive)
from memory the allocators keep (bench/README.md, "Capacity").
"""

import collections
import ctypes
import gc
import json
import os
import signal
import sys
import tempfile
import time
import tracemalloc

import gevent

DIRECTORY = os.environ.get("CHATWSGI_DEBUG_DIR", "")
if DIRECTORY and os.environ.get("CHATWSGI_TRACEMALLOC"):
    tracemalloc.start(8)


class MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks")
        + ("uordblks", "fordblks", "keepcost")
    ]


def mallinfo2():
    libc = ctypes.CDLL("libc.so.6")
    function = getattr(libc, "mallinfo2", None)
    if function is None:
        return {}
    function.restype = MallInfo2
    info = function()
    return {name: getattr(info, name) for name, _ in MallInfo2._fields_}


def rss():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("VmRSS:", "RssAnon:", "RssFile:")):
                yield line.split(":")[0], int(line.split()[1]) * 1024


def pymalloc_stats():
    """The summary lines of sys._debugmallocstats() (it writes to the C stderr)."""
    with tempfile.TemporaryFile(mode="w+") as capture:
        saved = os.dup(2)
        sys.stderr.flush()
        os.dup2(capture.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        text = capture.read()
    wanted = ("# arenas", "# bytes in", "Total", "# times object malloc", "# pools")
    found = {}
    for line in text.splitlines():
        if line.startswith(wanted) and "=" in line:
            key, value = line.rsplit("=", 1)
            found[key.strip("# ").strip()] = int(value.strip().replace(",", ""))
    return found


class Probe:
    def __init__(self, server):
        self.server = server
        self.previous = self.first = None
        self.busy = False
        self.path = os.path.join(DIRECTORY, "probe.jsonl")

    def __call__(self):
        if not self.busy:
            self.busy = True
            gevent.spawn(self.run)

    def run(self):
        try:
            self.write(self.measure())
        finally:
            self.busy = False

    def measure(self):
        started = time.monotonic()
        gc.collect()
        counts = collections.Counter(type(o).__name__ for o in gc.get_objects())
        server = self.server
        report = {
            "time": time.time(),
            "rss": dict(rss()),
            "mallinfo2": mallinfo2(),
            "pymalloc": pymalloc_stats(),
            "objects": len(gc.get_objects()),
            "top_types": counts.most_common(30),
            "greenlets": counts.get("Greenlet", 0) + counts.get("greenlet", 0),
            "sessions": len(server.sockets),
            "pending": len(getattr(server, "pending", ())),
            "sockets_dict_bytes": sys.getsizeof(server.sockets),
            "pending_dict_bytes": sys.getsizeof(getattr(server, "pending", {})),
        }
        if tracemalloc.is_tracing():
            snapshot = tracemalloc.take_snapshot().filter_traces(
                [tracemalloc.Filter(False, tracemalloc.__file__)]
            )
            report["traced_bytes"] = tracemalloc.get_traced_memory()
            if self.first is None:
                self.first = snapshot
            else:
                report["since_first"] = [
                    [str(stat.traceback[0]), stat.size_diff, stat.count_diff]
                    for stat in snapshot.compare_to(self.first, "lineno")[:40]
                    if stat.count_diff > 0
                ]
            if self.previous is not None:
                report["growth"] = [
                    [str(stat.traceback[0]), stat.size_diff, stat.count_diff]
                    for stat in snapshot.compare_to(self.previous, "lineno")[:25]
                ]
            report["top"] = [
                [str(stat.traceback[0]), stat.size, stat.count] for stat in snapshot.statistics("lineno")[:25]
            ]
            self.previous = snapshot
        report["probe_seconds"] = round(time.monotonic() - started, 3)
        return report

    def write(self, report):
        with open(self.path, "a") as out:
            out.write(json.dumps(report) + "\n")
        print("probe-done", flush=True)


def install(server):
    """Answer SIGUSR2 with a probe (only when CHATWSGI_DEBUG_DIR is set)."""
    if DIRECTORY:
        gevent.signal_handler(signal.SIGUSR2, Probe(server))
