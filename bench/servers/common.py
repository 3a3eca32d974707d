"""What every benchmarked server of ours shares: flags, fd limit, gc on SIGUSR1, 'ready'."""

import argparse
import gc
import resource
import signal
import sys

import debughook
import gevent


def parse_port(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    return parser.parse_args(argv).port


def serve(server):
    """Raise the fd limit, start, say 'ready', answer SIGUSR1 with gc + 'gc-done', stop on SIGTERM."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    stopping = gevent.event.Event()

    def collect():
        gc.collect()
        print("gc-done", flush=True)

    # Handlers first: SIGUSR1's default action would end a server that said "ready" too soon.
    gevent.signal_handler(signal.SIGUSR1, lambda: gevent.spawn(collect))
    gevent.signal_handler(signal.SIGTERM, stopping.set)
    debughook.install(server)  # SIGUSR2: a memory probe, only with CHATWSGI_DEBUG_DIR set
    server.start()
    gc.collect()
    gc.freeze()  # as serve.py does once it serves
    print("ready", flush=True)
    stopping.wait()
    server.stop(timeout=1)
    sys.exit(0)
