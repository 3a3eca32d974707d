"""The ZeroMQ fan-out forwarder: chat nodes publish to it and subscribe from it.

    python -m chatwsgi.forwarder --port 5560     # XSUB on 5560, XPUB on 5561

Nodes started with ``--fanout zmq://127.0.0.1:5560`` connect their PUB socket to PORT
and their SUB socket to PORT + 1. The forwarder is pyzmq's own proxy between the two:
frames go down to the subscribers, subscriptions go up to the publishers, so a node
receives only the rooms it subscribed to and a publisher sends nothing nobody wants. It
keeps no state: restarted, it is at once what it was (nodes reconnect by themselves).
"""

import argparse
import os
import signal
import sys
import threading

import zmq

# Frames queued per peer before ZeroMQ drops them (nodes repair from Redis); the nodes'
# sockets use the same.
HIGH_WATER_MARK = 100_000


def subscribers_port(port):
    """The port subscribers connect to, beside the publishers' ``port``."""
    return port + 1


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m chatwsgi.forwarder", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=5560, help="publishers' port; subscribers use the next (default: 5560)"
    )
    return parser.parse_args(argv)


def bind_sockets(context, host, port):
    """(XSUB bound on ``port``, XPUB bound on the subscribers' port)."""
    publishers = context.socket(zmq.XSUB)
    publishers.setsockopt(zmq.RCVHWM, HIGH_WATER_MARK)
    publishers.bind("tcp://%s:%d" % (host, port))
    subscribers = context.socket(zmq.XPUB)
    subscribers.setsockopt(zmq.SNDHWM, HIGH_WATER_MARK)
    subscribers.bind("tcp://%s:%d" % (host, subscribers_port(port)))
    return publishers, subscribers


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    context = zmq.Context()
    try:
        publishers, subscribers = bind_sockets(context, args.host, args.port)
    except zmq.ZMQError as error:
        ports = (args.host, args.port, subscribers_port(args.port), error)
        print("cannot bind %s:%d-%d: %s" % ports, file=sys.stderr)
        return 2
    # The proxy runs in C in a thread of its own; this one waits for a stop signal. A signal
    # does not reliably interrupt zmq.proxy (libzmq retries), so it never has to.
    stops = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stops)  # the proxy's thread inherits the mask
    threading.Thread(target=zmq.proxy, args=(publishers, subscribers), daemon=True).start()
    ports = (args.host, args.port, subscribers_port(args.port))
    print("forwarding on %s: publishers %d, subscribers %d" % ports, flush=True)
    stop = signal.sigwait(stops)
    print("forwarder stopping (%s)" % signal.Signals(stop).name, flush=True)
    # Nothing to flush: it holds no state. Leave without waiting on the proxy's sockets.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
