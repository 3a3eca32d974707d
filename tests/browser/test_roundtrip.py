"""Round trip of one message (emit -> ack) in Chromium on each transport: no 40 ms stalls (B17).

The medians are written to tests/artifacts/roundtrip.json for the record.
"""

import json
import statistics

import pytest

from tests.browser.conftest import ARTIFACTS
from tests.browser.pages import TRANSPORTS, open_chat
from tests.support.processes import ServeProcess

pytestmark = pytest.mark.browser

SAMPLES = 20
MEASURE = """
var done = arguments[arguments.length - 1], room = arguments[0], count = arguments[1];
var times = [], n = 0;
function one() {
  var started = performance.now();
  window.chat.socket.emit('message', {room: room, id: 'rt' + n + '-' + Date.now(), text: 'ping ' + n},
    function (ack) {
      if (!ack || !ack.ok) return done({error: ack});
      times.push(performance.now() - started);
      n += 1;
      if (n < count + 2) one(); else done({times: times.slice(2)});  // two warm-up rounds
    });
}
one();
"""


@pytest.fixture(scope="module")
def fast_chat_url():
    """A server whose rate limit does not pace the measurement."""
    server = ServeProcess("--rate", "1000", "--burst", "1000")
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def medians():
    results = {}
    yield results
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "roundtrip.json").write_text(json.dumps(results, indent=2) + "\n")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_message_round_trip(browser, fast_chat_url, medians, transport):
    page = open_chat(browser, fast_chat_url, "rt-" + transport, transport, room="rt-" + transport)
    page.set_script_timeout(60)
    result = page.execute_async_script(MEASURE, "rt-" + transport, SAMPLES)
    assert "times" in result, result
    median = statistics.median(result["times"])
    medians[transport] = {"median_ms": round(median, 2), "samples_ms": [round(t, 2) for t in result["times"]]}
    print("%s: median %.2f ms over %d" % (transport, median, SAMPLES))
    # The fastest of the 20: a stall delays every request, a busy machine only some (the
    # tests run two files at once; a median of 26 ms once failed a 25 ms limit on xhr).
    assert min(result["times"]) < LIMIT_MS[transport]


# A delayed-ACK stall (B17) adds ~40 ms to each request of a round trip, the fastest included. websocket and
# xhr-polling measure a few ms. jsonp-polling is slower in the browser itself: a capture
# (tcpdump on lo) showed the server answering in < 1 ms, with no stall between header and body
# segments, while Chromium took ~25 ms to send each form POST (a fresh iframe navigation)
# and ~50 ms to start the next <script> poll; with two stalls it would exceed 150 ms.
LIMIT_MS = {"websocket": 25.0, "xhr-polling": 25.0, "jsonp-polling": 150.0}
