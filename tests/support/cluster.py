"""Real cluster parts for tests: redis-server, HAProxy with deploy/haproxy.cfg, chat nodes.

Each starts on a free 127.0.0.1 port with its files in a temp dir and is stopped by
the fixture that made it.
"""

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
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
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"


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


class RedisClusterServers:
    """A Redis Cluster on 127.0.0.1: 3 masters and 3 replicas by default (redis-server with
    deploy/redis.conf, cluster mode, each in its own dir under ``directory``), made with
    ``redis-cli --cluster create``. ``node_timeout`` (ms) is how long a master may be
    silent before its replica takes over."""

    def __init__(self, directory, node_timeout=1000, masters=3, replicas=1):
        self.directory = Path(directory)
        self.node_timeout = node_timeout
        self.masters = masters
        self.ports = [free_port() for _ in range(masters * (1 + replicas))]
        self.processes = {}
        for port in self.ports:
            self.start(port)
        addresses = ["127.0.0.1:%d" % port for port in self.ports]
        if masters == 1 and not replicas:  # redis-cli makes 3 masters at least: every slot by hand
            self.command(self.ports[0], "CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        else:
            subprocess.run(
                [REDIS_CLI, "--cluster", "create", *addresses, "--cluster-replicas", str(replicas)]
                + ["--cluster-yes"],
                check=True,
                capture_output=True,
                timeout=60,
            )
        chatting.wait_until(lambda: self.healthy(len(self.ports)), timeout=30)
        self.url = "redis-cluster://" + ",".join(addresses)

    def start(self, port):
        """Start the server of ``port`` (again, on its data) and wait for PING."""
        directory = self.directory / str(port)
        directory.mkdir(exist_ok=True)
        self.processes[port] = subprocess.Popen(
            [
                REDIS_SERVER, str(REDIS_CONFIG), "--port", str(port), "--dir", str(directory),
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(self.node_timeout), "--cluster-port", str(free_port()),
                "--repl-diskless-sync-delay", "0",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        chatting.wait_until(lambda: answers(port, b"PING\r\n", b"+PONG"), timeout=15)

    def healthy(self, servers=6):
        """Every live server says cluster_state:ok; all masters, and ``servers`` connected in
        all, each replica in sync with its master."""
        for port, process in self.processes.items():
            if process.poll() is not None:
                continue
            if "cluster_state:ok" not in self.command(port, "CLUSTER", "INFO"):
                return False
        roles = self.roles()
        if sorted(roles.values()).count("master") != self.masters or len(roles) != servers:
            return False
        # Every replica in sync with its master (else a WAIT for a replica waits in vain).
        replicas = [port for port, role in roles.items() if role == "slave"]
        return all(
            self.command(port, "INFO", "replication")["master_link_status"] == "up" for port in replicas
        )

    def roles(self):
        """{port: 'master' or 'slave'} of the connected servers, as one live server sees them."""
        port = next(port for port, process in self.processes.items() if process.poll() is None)
        roles = {}
        for line in self.command(port, "CLUSTER", "NODES").splitlines():
            fields = line.split()
            flags = fields[2].split(",")
            if "fail" not in flags and "fail?" not in flags and fields[7] == "connected":
                roles[int(fields[1].split(":")[1].split("@")[0])] = "master" if "master" in flags else "slave"
        return roles

    def master_of(self, key):
        """The port of the master serving ``key``'s slot."""
        port = next(port for port, process in self.processes.items() if process.poll() is None)
        slot = self.command(port, "CLUSTER", "KEYSLOT", key)
        for start, end, master, *_ in self.command(port, "CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return int(master[1])
        raise AssertionError("no master serves slot %d" % slot)

    def kill(self, port):
        """SIGKILL the server of ``port``."""
        self.processes[port].kill()
        self.processes[port].wait(10)

    def command(self, port, *args):
        """One command to the server of ``port`` over a fresh connection; its reply."""
        with redis.Redis(port=port, socket_timeout=5, decode_responses=True) as connection:
            return connection.execute_command(*args)

    def stop(self):
        """SIGTERM every server and wait."""
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            process.wait(10)


def free_ports_in_a_row(count=2):
    """The first of ``count`` ports in a row that nothing listens on (a forwarder binds two,
    make cluster's balancer and nodes three): picked below the ephemeral range, where
    outgoing connections (the kernel's picks) never take the ones after it."""
    chooser = random.Random()
    for _ in range(200):
        port = chooser.randrange(20000, 32000)
        probes = [socket.socket() for _ in range(count)]
        try:
            for offset, probe in enumerate(probes):
                probe.bind(("127.0.0.1", port + offset))
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
        return port
    raise AssertionError("no %d free ports in a row" % count)


class Forwarder:
    """``python -m chatwsgi.forwarder`` on a fixed pair of ports (restartable there); its
    ``url`` is what nodes take as ``--fanout``."""

    def __init__(self):
        self.port = free_ports_in_a_row(2)
        self.url = "zmq://127.0.0.1:%d" % self.port
        self.process = None
        self.start()

    def start(self):
        """Start (again, on the same ports) and wait until it says it forwards."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "chatwsgi.forwarder", "--port", str(self.port)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        line = self.process.stdout.readline().decode()
        assert line.startswith("forwarding on"), line + self.process.stdout.read().decode()

    def kill(self):
        """SIGKILL: the forwarder dies at once, with whatever it had queued."""
        self.process.kill()
        self.process.wait(10)
        self.process.stdout.close()

    def stop(self):
        """SIGTERM and wait (SIGKILL after 10 s, and fail); return its exit status."""
        try:
            if self.process.poll() is None:
                self.process.terminate()
                self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise
        finally:
            self.process.stdout.close()
        return self.process.returncode


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
    """redis-server (or a Redis Cluster, ``redis_cluster``), nodes n1 and n2, and HAProxy
    (deploy/haproxy.cfg) in front of them; with ``fanout='zmq'``, a ZeroMQ forwarder the
    nodes' live frames go through."""

    def __init__(self, directory, redis_cluster=False, extra=(), fanout="redis"):
        self.clients, self.nodes, self.lb, self.forwarder = [], [], None, None
        self.redis = RedisClusterServers(directory) if redis_cluster else RedisServer(directory)
        try:
            if fanout == "zmq":
                self.forwarder = Forwarder()
                extra = ("--fanout", self.forwarder.url, *extra)
            self.nodes = [Node(name, self.redis.url, TTL, extra=NODE_FLAGS + extra) for name in ("n1", "n2")]
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
        if self.forwarder is not None:
            parts.append(self.forwarder)
        errors = []
        for part in parts:
            try:
                part.stop()
            except Exception as error:
                errors.append(error)
        if errors:
            raise errors[0]
