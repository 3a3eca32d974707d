"""The listening socket's backlog: a burst of connections waits in the kernel, none is dropped."""

import socket as blocking_socket
import subprocess
import time

import pytest

from chatwsgi import make_app, make_server
from chatwsgi.server import LISTEN_BACKLOG
from tests.conftest import TEST_SERVER_SETTINGS

pytestmark = pytest.mark.live


def somaxconn():
    with open("/proc/sys/net/core/somaxconn") as value:
        return int(value.read())


def test_the_listen_backlog_is_the_server_s_not_gevent_s_128():
    server = make_server(make_app(), port=0, **TEST_SERVER_SETTINGS)
    server.start()
    try:
        port = server.address[1]
        listing = subprocess.run(["ss", "-ltnH", "sport = :%d" % port], capture_output=True, text=True).stdout
        assert int(listing.split()[2]) == min(LISTEN_BACKLOG, somaxconn())  # Send-Q of a listener
    finally:
        server.stop(timeout=1)


def test_a_burst_of_1000_connections_waits_in_the_queue_with_no_syn_dropped(server, address):
    # Blocking connects do not yield to the in-process server: the whole burst queues in the
    # kernel before it accepts one. Past a full queue the kernel drops SYNs and the client
    # retries after a second.
    burst, slowest = [], 0.0
    try:
        for _ in range(1000):
            started = time.monotonic()
            burst.append(blocking_socket.create_connection(address, timeout=10))
            slowest = max(slowest, time.monotonic() - started)
    finally:
        for sock in burst:
            sock.close()
    assert len(burst) == 1000 and slowest < 0.5, slowest
