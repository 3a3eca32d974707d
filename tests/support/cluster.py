"""Real cluster parts for tests: redis-server, HAProxy with deploy/haproxy.cfg, chat nodes.

Each starts on a free 127.0.0.1 port with its files in a temp dir and is stopped by
the fixture that made it.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import redis

from tests.support import chatting
from tests.support.processes import ServeProcess
from tests.support.sioclient import http

ROOT = Path(__file__).resolve().parents[2]
HAPROXY_CONFIG = ROOT / "deploy" / "haproxy.cfg"
REDIS_CONFIG = ROOT / "deploy" / "redis.conf"
# Debian puts them in /usr/sbin and /usr/bin; a non-root PATH may lack /usr/sbin.
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port():
    """A port nothing listens on now (the kernel's pick for a throwaway socket)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def answers(port, request, expected):
    """Whether a line-protocol server on ``port`` answers ``request`` with ``expected``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(request)
            return sock.recv(64).startswith(expected)
    except OSError:
        return False


class RedisServer:
    """redis-server on 127.0.0.1 with deploy/redis.conf (the append-only file on), data in
    ``directory``."""

    def __init__(self, directory):
        self.directory = Path(directory)
        self.port = free_port()
        self.url = "redis://127.0.0.1:%d/0" % self.port
        self.process = None
        self.start()

    def start(self, empty=False):
        """Start (again, on the same port; its data lost if ``empty``) and wait for PING."""
        if empty:
            shutil.rmtree(self.directory)
            self.directory.mkdir()
        self.process = subprocess.Popen(
            [REDIS_SERVER, str(REDIS_CONFIG), "--port", str(self.port), "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        chatting.wait_until(lambda: answers(self.port, b"PING\r\n", b"+PONG"), timeout=15)

    def stop(self):
        """SIGTERM (redis-server flushes its append-only file) and wait."""
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def kill(self):
        """SIGKILL: Redis dies at once; what it acknowledged is in the append-only file."""
        self.process.kill()
        self.process.wait(10)

    def subscribers(self, channel):
        """How many connections are subscribed to ``channel``."""
        with redis.Redis(port=self.port, socket_timeout=5) as connection:
            return connection.pubsub_numsub(channel)[0][1]

    def command(self, *args):
        """One command over a fresh connection; its reply."""
        with redis.Redis(port=self.port, socket_timeout=5, decode_responses=True) as connection:
            return connection.execute_command(*args)


class HAProxy:
    """haproxy -db with deploy/haproxy.cfg in front of ``nodes`` ((host, port) of n1, n2)."""

    def __init__(self, nodes):
        self.port = free_port()
        self.address = ("127.0.0.1", self.port)
        self.url = "http://127.0.0.1:%d" % self.port
        env = dict(os.environ, CHATWSGI_LB_BIND="127.0.0.1:%d" % self.port)
        for index, (host, port) in enumerate(nodes, 1):
            env["CHATWSGI_NODE%d" % index] = "%s:%d" % (host, port)
        self.process = subprocess.Popen(
            [HAPROXY, "-db", "-f", str(HAPROXY_CONFIG)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        chatting.wait_until(self._answers, timeout=15)

    def _answers(self):
        if self.process.poll() is not None:
            raise AssertionError("haproxy exited: %s" % self.process.stdout.read().decode())
        try:
            return http(self.address, "GET", "/healthz", timeout=2).status == 200
        except OSError:
            return False

    def stop(self):
        """Stop haproxy."""
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process.stdout.close()


class Node:
    """``python serve.py --redis URL --node NAME`` on a fixed port (restartable there)."""

    def __init__(self, name, redis_url, ttl=10.0, port=None, extra=()):
        self.name, self.redis_url, self.ttl = name, redis_url, ttl
        self.port = port or free_port()
        self.address = ("127.0.0.1", self.port)
        self.extra = extra
        self.serving = None
        self.start()

    def start(self):
        """Start serve.py on this node's port; return once it serves."""
        self.serving = ServeProcess(
            "--port", str(self.port), "--redis", self.redis_url, "--node", self.name,
            "--node-ttl", str(self.ttl), *self.extra,
        )  # fmt: skip

    def kill(self):
        """SIGKILL: the node dies without a word to anyone."""
        self.serving.process.send_signal(signal.SIGKILL)
        self.serving.stop()  # reaps it and closes its output pipe

    def stop(self):
        """SIGTERM and wait (a graceful stop)."""
        return self.serving.stop()

    def health(self):
        """This node's /healthz answer."""
        return json.loads(http(self.address, "GET", "/healthz").body)

    def log(self):
        """What the node has printed so far."""
        self.serving.read_output()
        return self.serving.output.decode("utf-8", "replace")


TTL = 3.0  # the nodes' heartbeat ttl here (10 s by default), so a death is noticed quickly
NODE_FLAGS = ()  # the defaults: 15 messages shown on a join, 2 minutes kept for catch-up


class Cluster:
    """redis-server, nodes n1 and n2, and HAProxy (deploy/haproxy.cfg) in front of them."""

    def __init__(self, directory):
        self.clients, self.nodes, self.lb = [], [], None
        self.redis = RedisServer(directory)
        try:
            self.nodes = [Node(name, self.redis.url, TTL, extra=NODE_FLAGS) for name in ("n1", "n2")]
            self.lb = HAProxy([node.address for node in self.nodes])
        except Exception:
            self.stop()
            raise

    def node(self, name):
        return next(node for node in self.nodes if node.name == name)

    def chatter(self, nickname, transport="websocket", **options):
        """A client through HAProxy; ``client.node`` names the node its cookie pins it to."""
        client = chatting.chatter(self.lb.address, nickname, transport, **options)
        client.node, client.nickname = client.cookie.split("=", 1)[1], nickname
        self.clients.append(client)
        return client

    def stop(self):
        """Stop everything, even when one part fails to stop (the first error is raised after)."""
        for client in self.clients:
            client.close()
        parts = ([self.lb] if self.lb is not None else []) + self.nodes + [self.redis]
        errors = []
        for part in parts:
            try:
                part.stop()
            except Exception as error:
                errors.append(error)
        if errors:
            raise errors[0]
