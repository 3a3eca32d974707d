"""Running ``serve.py`` as a real subprocess, the way a user starts the chat."""

import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
URL_RE = re.compile(r"serving on (http://127\.0\.0\.1:\d+)")


class ServeProcess:
    """``python serve.py`` on a free port; ``url`` once it prints that it serves."""

    def __init__(self, *args, env=None, cwd=ROOT):
        environment = dict(os.environ, **(env or {}))
        for name in [name for name, value in environment.items() if value is None]:
            del environment[name]  # a variable the test wants unset
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "serve.py"), "--port", "0", *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=environment,
        )
        self.output = b""
        self.url = self.wait_for_output(URL_RE).group(1)

    def wait_for_output(self, pattern, timeout=20):
        """Read output until ``pattern`` matches; the match."""
        deadline = time.monotonic() + timeout
        while True:
            match = pattern.search(self.output.decode("utf-8", "replace"))
            if match:
                return match
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.process.poll() is not None:
                raise AssertionError("serve.py said: %s" % self.output.decode("utf-8", "replace"))
            ready, _, _ = select.select([self.process.stdout], [], [], min(remaining, 0.5))
            if ready:
                self.output += os.read(self.process.stdout.fileno(), 65536)

    def read_output(self):
        """Add what the process printed since the last read (without waiting) to ``output``."""
        while not self.process.stdout.closed and select.select([self.process.stdout], [], [], 0)[0]:
            chunk = os.read(self.process.stdout.fileno(), 65536)
            if not chunk:
                break
            self.output += chunk

    def stop(self, timeout=10):
        """SIGTERM, then wait; the exit code (killed after ``timeout``)."""
        terminate(self.process, timeout)
        if self.process.stdout.closed:  # stopped before
            return self.process.returncode
        rest = self.process.stdout.read()
        self.output += rest or b""
        self.process.stdout.close()
        return self.process.returncode


def terminate(process, timeout=10):
    """SIGTERM a process and wait for it, killing it after ``timeout``; its exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode
