"""Emit-to-ack time of the third-party Socket.IO 0.9 clients against chatwsgi, per transport.

Starts chatwsgi in this process (make_app + make_server, shipped settings, the sender's rate
limits lifted), then for each client (npm socket.io-client 0.9.16 under Node, PyPI
socketIO-client 0.5.7.4; each in its driver subprocess, tests/support/remote.py) and
transport, one client alone in a room sends N acked messages ONE AT A TIME: each is emitted
after the previous one's ack. Prints the median and p90 in ms as a markdown table. The time
runs from writing the emit command to the driver's stdin to reading the ack line from its
stdout, so it includes the pipes and the driver's own loop; our raw in-process client
(tests/support/sioclient.py) is the baseline without them.

    .venv/bin/python bench/clients.py                    # 100 messages per client x transport
    .venv/bin/python bench/clients.py --messages 500 --warmup 20

Needs tests/thirdparty/node_modules (make tests/thirdparty/node_modules/.installed).
"""

import argparse
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests.support

from chatwsgi import make_app, make_server  # noqa: E402
from tests.support.remote import KINDS, TRANSPORTS, ack_summary, remote_client  # noqa: E402
from tests.support.sioclient import SocketIOClient  # noqa: E402


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100, help="acked messages per client x transport")
    parser.add_argument("--warmup", type=int, default=5, help="messages sent first and not counted")
    return parser.parse_args(argv)


def send_one_at_a_time(client, room, messages, warmup):
    """Join ``room`` and send ``warmup + messages`` acked messages, each after the last ack;
    return the emit-to-ack times (seconds) of the counted ones."""
    assert client.call("nickname", {"nickname": room})["ok"]
    assert client.call("join", {"room": room})["ok"]
    times = []
    for n in range(warmup + messages):
        started = time.perf_counter()
        ack = client.call("message", {"room": room, "id": "m%d" % n, "text": "message %d: héllo 🎉" % n})
        elapsed = time.perf_counter() - started
        assert ack == {"ok": True, "id": "m%d" % n, "seq": n + 1}, ack
        if n >= warmup:
            times.append(elapsed)
    return times


def measure_remote(address, kind, transport, options):
    client = remote_client(kind, address, transport)
    try:
        times = send_one_at_a_time(client, "%s-%s" % (kind, transport), options.messages, options.warmup)
        return ack_summary([("message", t) for t in times]), client.of_kind("ready")[0]["client"]
    finally:
        client.close()


def measure_raw(address, transport, options):
    client = SocketIOClient(address, transport).connect()
    try:
        times = send_one_at_a_time(client, "raw-%s" % transport, options.messages, options.warmup)
        return ack_summary([("message", t) for t in times]), "ours (raw, in-process)"
    finally:
        client.close()


def main(argv=None):
    options = parse(argv)
    # The sender's limits lifted (messages, and packets of any kind), as bench/servers do.
    server = make_server(make_app(rate=1e9, burst=10**9), port=0, max_packet_rate=1e9, max_packet_burst=10**9)
    server.start()
    address = server.address[:2]
    rows = []
    try:
        for kind in KINDS:
            for transport in TRANSPORTS:
                rows.append((transport, *measure_remote(address, kind, transport, options)))
        for transport in TRANSPORTS:
            rows.append((transport, *measure_raw(address, transport, options)))
    finally:
        server.stop(timeout=1)
    print(
        "Emit-to-ack, %d acked messages per row sent one at a time (each after the previous ack, "
        "not batched), after %d warm-up messages; chatwsgi with its shipped settings in the "
        "measuring process; Python %s." % (options.messages, options.warmup, platform.python_version())
    )
    print()
    print("| client | transport | messages | median ms | p90 ms |")
    print("| --- | --- | --- | --- | --- |")
    for transport, (count, median, p90), client in rows:
        print("| %s | %s | %d | %.2f | %.2f |" % (client, transport, count, median, p90))


if __name__ == "__main__":
    main()
