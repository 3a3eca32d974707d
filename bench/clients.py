"""Emit-to-ack time of Socket.IO 0.9 clients against chatwsgi, per client and transport.

Starts ``serve.py --port 0 --rate 1000 --burst 1000 --log-level WARNING`` as its own process
on 127.0.0.1 (the shipped server and settings; only the sender's message rate limit lifted
from 5/s, burst 10), then for each client and transport one client alone in a room of its own
sends N acked ``message`` events ONE AT A TIME: each is emitted after the previous one's ack
(not batched). Prints the median and p90 in ms as a markdown table. The clients:

- the real page in headless Chromium (static/chat.js and the js.socketio 0.9 client it loads,
  ``?transport=X``) over websocket, xhr-polling and jsonp-polling: once the page is connected
  with a nickname and in its room, an async script emits on ``window.chat.socket`` and times
  each emit->ack with ``performance.now()`` IN THE PAGE;
- npm socket.io-client 0.9.16 under Node and PyPI socketIO-client 0.5.7.4 over websocket and
  xhr-polling, each in its driver subprocess (tests/support/remote.py): the time runs from
  writing the emit command to the driver's stdin to reading the ack line from its stdout, so it
  includes the pipes and the driver's own loop;
- our raw client (tests/support/sioclient.py, on gevent in this process) as the baseline.

Every row talks to the same server process, over TCP on 127.0.0.1. The server's per-session
packet limit (max_packet_rate 50/s, burst 100, heartbeats included) is not a serve.py flag, so
a row sends at most --warmup + --messages = 80 packets of messages (the page's own nickname,
join and rooms requests come on top): hence the default of 60 messages.

    .venv/bin/python bench/clients.py                     # 60 messages per client x transport
    .venv/bin/python bench/clients.py --messages 40 --markdown bench/results/DATE-clients.md

Needs tests/thirdparty/node_modules (make tests/thirdparty/node_modules/.installed) and
Debian's chromium + chromium-driver (as the browser tests).
"""

import argparse
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the repository, for tests.support and tests.browser

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402

from tests.browser.conftest import CHROMIUM_FLAGS  # noqa: E402
from tests.browser.pages import TRANSPORTS as PAGE_TRANSPORTS  # noqa: E402
from tests.browser.pages import open_chat, transport_in_use  # noqa: E402
from tests.support.processes import terminate  # noqa: E402
from tests.support.remote import KINDS, TRANSPORTS, ack_summary, remote_client  # noqa: E402
from tests.support.sioclient import SocketIOClient  # noqa: E402

SERVER_FLAGS = ["--rate", "1000", "--burst", "1000", "--log-level", "WARNING"]
URL_RE = re.compile(r"serving on http://(127\.0\.0\.1):(\d+)")
# Packets of messages one row may send (the session's packet bucket holds 100, refilled at 50/s;
# a few go to connecting, the nickname, the join and the page's rooms requests).
MAX_PACKETS = 80
SCRIPT_TIMEOUT = 120  # seconds for one page's whole run of acked messages

# Runs in the page: emit warmup + messages acked messages one at a time on the /chat socket,
# each after the previous ack; the callback gets {times: [ms of the counted ones]} or {error}.
PAGE_SCRIPT = """
var count = arguments[0], warmup = arguments[1], prefix = arguments[2], limit_ms = arguments[3];
var done = arguments[arguments.length - 1];  // selenium's callback comes last
var socket = window.chat.socket, room = window.chat.state.room, times = [], n = 0;
var give_up = setTimeout(function () { done({error: 'no ack for message ' + n}); }, limit_ms);
function next() {
  if (n >= warmup + count) { clearTimeout(give_up); done({times: times}); return; }
  var id = prefix + n, text = 'message ' + n + ': h\\u00e9llo \\ud83c\\udf89', started = performance.now();
  socket.emit('message', {room: room, id: id, text: text}, function (ack) {
    var elapsed = performance.now() - started;
    if (!ack || ack.ok !== true || ack.id !== id || ack.seq !== n + 1) {
      clearTimeout(give_up);
      done({error: 'message ' + n + ' acked ' + JSON.stringify(ack)});
      return;
    }
    if (n >= warmup) times.push(elapsed);
    n += 1;
    Promise.resolve().then(next);  // the next emit once the client's ack handling has returned
  });
}
next();
"""


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=60, help="acked messages per client x transport")
    parser.add_argument("--warmup", type=int, default=5, help="messages sent first and not counted")
    parser.add_argument("--markdown", help="also write the table, date, load and command to this file")
    options = parser.parse_args(argv)
    if options.messages < 1 or options.warmup < 0:
        parser.error("--messages must be at least 1 and --warmup at least 0")
    if options.messages + options.warmup > MAX_PACKETS:
        parser.error(
            "--warmup + --messages must be at most %d: the server's per-session packet limit "
            "(max_packet_rate 50/s, burst 100) is not a serve.py flag" % MAX_PACKETS
        )
    return options


class ServerProcess:
    """``serve.py --port 0`` with the bench's flags, its output in a temporary file (never a
    pipe nobody reads); ``address`` once it says where it serves."""

    def __init__(self, flags, timeout=20):
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop)
        self.seen = ""  # the output, kept once the file is closed
        command = [sys.executable, str(ROOT / "serve.py"), "--port", "0", *flags]
        self.process = subprocess.Popen(command, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)
        try:
            self.address = self._wait_for_address(timeout)
        except BaseException:
            self.stop()
            raise

    def output(self):
        if self.log.closed:
            return self.seen
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")

    def _wait_for_address(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            match = URL_RE.search(self.output())
            if match:
                return match.group(1), int(match.group(2))
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("serve.py did not start: %s" % self.output())
            time.sleep(0.05)

    def stop(self, timeout=10):
        """SIGTERM, then wait (killed after ``timeout``); the exit code."""
        terminate(self.process, timeout)
        if not self.log.closed:
            self.seen = self.output()
            self.log.close()
        return self.process.returncode


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
        return ack_summary([("message", t) for t in times]), "ours (raw, gevent, bench process)"
    finally:
        client.close()


def open_chromium():
    """A headless Chromium with the browser tests' flags and a profile of its own."""
    profile = tempfile.mkdtemp(prefix="chatwsgi-bench-chromium-")
    try:
        chrome = webdriver.ChromeOptions()
        chrome.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
        for flag in CHROMIUM_FLAGS + ["--user-data-dir=" + profile, "--window-size=1100,800"]:
            chrome.add_argument(flag)
        service = Service(shutil.which("chromedriver") or "/usr/bin/chromedriver")
        driver = webdriver.Chrome(service=service, options=chrome)
    except BaseException:
        shutil.rmtree(profile, ignore_errors=True)
        raise
    driver.set_page_load_timeout(20)
    driver.set_script_timeout(SCRIPT_TIMEOUT + 10)
    return driver, profile


def measure_browser(address, transport, options):
    drivers = []

    def browser(**window):
        drivers.append(open_chromium())
        return drivers[-1][0]

    room = "browser-%s" % transport
    try:
        driver = open_chat(browser, "http://%s:%d" % address, room, transport, room=room)
        assert transport_in_use(driver) == transport, transport_in_use(driver)
        # Let the page's own start-up requests (rooms, throttled to one a second) go first.
        time.sleep(1.5)
        result = driver.execute_async_script(
            PAGE_SCRIPT, options.messages, options.warmup, "m", SCRIPT_TIMEOUT * 1000
        )
        assert "error" not in result, result["error"]
        client = "browser: Chromium %s, js.socketio %s" % (
            driver.capabilities.get("browserVersion", "?"),
            driver.execute_script("return window.io && io.version"),
        )
        return ack_summary([("message", ms / 1000) for ms in result["times"]]), client
    finally:
        for driver, profile in drivers:
            driver.quit()
            shutil.rmtree(profile, ignore_errors=True)


def describe(options):
    return (
        "Emit-to-ack, %d acked `message` events per row sent ONE AT A TIME (each after the previous "
        "ack, not batched), after %d warm-up messages; one client alone in its own room. Server: "
        "`serve.py --port 0 %s` in its own process on 127.0.0.1 (shipped settings, only the message "
        "rate limit lifted from 5/s burst 10), the same process for every row. Browser rows are timed "
        "in the page with performance.now(); the Node and PyPI rows from the bench process, across the "
        "driver's stdin/stdout pipes; the raw row in the bench process. Python %s."
        % (options.messages, options.warmup, " ".join(SERVER_FLAGS), platform.python_version())
    )


def table(rows):
    lines = ["| client | transport | median ms | p90 ms | n |", "| --- | --- | --- | --- | --- |"]
    for transport, (count, median, p90), client in rows:
        lines.append("| %s | %s | %.2f | %.2f | %d |" % (client, transport, median, p90, count))
    return "\n".join(lines)


def write_markdown(path, options, argv, text):
    command = ".venv/bin/python bench/clients.py" + "".join(" " + shlex.quote(a) for a in argv)
    uptime = subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    Path(path).write_text(
        "# Clients: emit-to-ack, one message at a time (%s)\n\n"
        "%s\n\n"
        "Run %s on a %d-core machine, nothing pinned; `uptime` at the end of the run: `%s`\n\n"
        "```sh\n%s\n```\n\n%s\n"
        % (
            time.strftime("%Y-%m-%d"),
            describe(options),
            time.strftime("%Y-%m-%d %H:%M %Z"),
            os.cpu_count(),
            uptime,
            command,
            text,
        )
    )


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    options = parse(argv)
    rows = []
    server = ServerProcess(SERVER_FLAGS)
    try:
        address = server.address
        for transport in PAGE_TRANSPORTS:
            rows.append((transport, *measure_browser(address, transport, options)))
        for kind in KINDS:
            for transport in TRANSPORTS:
                rows.append((transport, *measure_remote(address, kind, transport, options)))
        for transport in PAGE_TRANSPORTS:
            rows.append((transport, *measure_raw(address, transport, options)))
    finally:
        code = server.stop()
    if code != 0:
        print("serve.py exited with %s: %s" % (code, server.output()[-2000:]), file=sys.stderr)
    text = table(rows)
    print(describe(options))
    print()
    print(text)
    if options.markdown:
        write_markdown(options.markdown, options, argv, text)


if __name__ == "__main__":
    main()
