"""The floor of a broadcast: one prebuilt websocket frame written to each of N sockets.

What no server can go below on this machine: a sender (pinned to core 0, like the servers
in bench/run.py) writes one ~130-byte frame with ``os.write`` to each of N connected
loopback sockets, one broadcast at a time; a reader process (pinned to core 1, like the
load generator) drains them all with epoll. Reported: the sender's CPU per delivery
(user + system, from getrusage; on loopback the receive path runs on the sender's core
too, so most of it is kernel time) and the time of one broadcast, p50 and p99.

    .venv/bin/python bench/floor.py --sizes 1000,5000,10000 --broadcasts 200
"""

import argparse
import contextlib
import os
import resource
import select
import socket
import subprocess
import sys
import time

FRAME = b"\x81\x7e\x00\x82" + b"x" * 130  # a text frame of 130 bytes, as a chat message's


def pin(core):
    """Pin this process to ``core`` when the machine has it."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > core:
        os.sched_setaffinity(0, {core})


def reader(port, count):
    """The receiving side: accept ``count`` connections, then drain them until stdin closes."""
    pin(1)
    listener = socket.create_server(("127.0.0.1", port), backlog=count)
    print("listening", flush=True)
    connections = [listener.accept()[0] for _ in range(count)]
    poller = select.epoll()
    by_fd = {}
    for connection in connections:
        connection.setblocking(False)
        poller.register(connection.fileno(), select.EPOLLIN)
        by_fd[connection.fileno()] = connection
    poller.register(sys.stdin.fileno(), select.EPOLLIN | select.EPOLLHUP)
    while True:
        for fd, _ in poller.poll():
            if fd == sys.stdin.fileno():
                return
            with contextlib.suppress(BlockingIOError):
                by_fd[fd].recv(1 << 16)


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(size, broadcasts):
    """(CPU µs per delivery, p50 ms, p99 ms) of ``broadcasts`` broadcasts to ``size`` sockets."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    child = subprocess.Popen(
        [sys.executable, __file__, "--reader", str(port), str(size)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout.readline().strip() == b"listening"
        sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(size)]
        fds = [sock.fileno() for sock in sockets]
        for sock in sockets:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        times, started_cpu = [], cpu_seconds()
        for _ in range(broadcasts):
            started = time.perf_counter()
            for fd in fds:
                os.write(fd, FRAME)
            times.append(time.perf_counter() - started)
            time.sleep(0.005)  # one broadcast at a time: the reader drains in between
        cpu = cpu_seconds() - started_cpu
        for sock in sockets:
            sock.close()
    finally:
        child.stdin.close()
        child.wait(10)
        child.stdout.close()
    times.sort()
    return cpu / (size * broadcasts) * 1e6, times[len(times) // 2] * 1e3, times[int(len(times) * 0.99)] * 1e3


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,5000,10000")
    parser.add_argument("--broadcasts", type=int, default=200)
    parser.add_argument("--reader", nargs=2, type=int, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.reader:
        return reader(*options.reader)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    pin(0)
    print("| recipients | CPU µs per delivery | broadcast p50 ms | p99 ms |")
    print("| --- | --- | --- | --- |")
    for size in map(int, options.sizes.split(",")):
        cpu, p50, p99 = measure(size, options.broadcasts)
        print("| %d | %.2f | %.2f | %.2f |" % (size, cpu, p50, p99), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
