"""liveness.py: the client always hears from us well inside its timeout, whatever the settings."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatwsgi.liveness import MARGIN, Liveness


def test_the_defaults_are_the_reference_servers():
    liveness = Liveness()
    # socket.io 0.9.16: heartbeat interval 25, heartbeat timeout 60, close timeout 60, polling 20.
    assert liveness.advertised == (60, 60)
    assert liveness.heartbeat_every == 25
    assert liveness.poll_hold == 20
    assert liveness.worst_silence == 30  # a heartbeat 25 s after the last, visited 5 s late


def test_the_old_defaults_are_corrected_not_trusted():
    # The handshake used to say a close timeout of 20 s with heartbeats 25-30 s apart: the
    # client dropped every idle connection. Now the heartbeats come often enough.
    liveness = Liveness(close_timeout=20, poll_duration=10)
    assert liveness.client_timeout == 20
    assert liveness.heartbeat_every == 5
    assert liveness.worst_silence <= 20 * MARGIN


def test_the_test_suites_short_settings():
    liveness = Liveness(heartbeat_timeout=60, close_timeout=3, poll_duration=1, tend_interval=0.2)
    assert liveness.slices == 3  # a visit every 0.6 s, not 1 s, in a 1.5 s margin
    assert liveness.heartbeat_every == pytest.approx(0.9)
    assert liveness.worst_silence == pytest.approx(1.5)


def test_short_timeouts_make_the_tender_visit_each_session_more_often():
    assert Liveness(close_timeout=4).slices == 1
    assert Liveness(close_timeout=4).heartbeat_every == 1
    assert Liveness(close_timeout=20).slices == 5


@pytest.mark.parametrize(
    "settings",
    [
        {"heartbeat_interval": 0},
        {"poll_duration": -1},
        {"tend_interval": 0},
        {"tend_slices": 0},
        {"close_timeout": 0.5},  # the handshake says whole seconds: this would say 0
        {"heartbeat_timeout": 0},
        {"close_timeout": 10, "tend_interval": 3},  # a tender waking every 3 s, 5 s of margin
    ],
)
def test_settings_that_cannot_keep_the_promise_are_refused(settings):
    with pytest.raises(ValueError):
        Liveness(**settings)


seconds = st.floats(min_value=0.01, max_value=600, allow_nan=False)


@given(
    heartbeat_interval=seconds,
    heartbeat_timeout=seconds,
    close_timeout=seconds,
    poll_duration=seconds,
    tend_interval=st.floats(min_value=0.01, max_value=10),
    tend_slices=st.integers(min_value=1, max_value=20),
)
def test_any_accepted_settings_keep_the_client_hearing_from_us(**settings):
    try:
        liveness = Liveness(**settings)
    except ValueError:
        return
    # What the client is told, and what it then waits before giving up on us.
    heartbeat_timeout, close_timeout = liveness.advertised
    assert heartbeat_timeout <= settings["heartbeat_timeout"]
    assert close_timeout <= settings["close_timeout"]
    timeout = min(heartbeat_timeout, close_timeout)
    # Websocket: a heartbeat due heartbeat_every after the last leaves on the tender's next
    # visit to the session, at most tend_interval x tend_slices later.
    assert 0 < liveness.heartbeat_every <= settings["heartbeat_interval"]
    assert 1 <= liveness.slices <= settings["tend_slices"]
    websocket_gap = liveness.heartbeat_every + settings["tend_interval"] * liveness.slices
    assert websocket_gap <= timeout * MARGIN + 1e-9
    # Polling: a held poll is answered (a noop at worst) within poll_hold.
    assert 0 < liveness.poll_hold <= settings["poll_duration"]
    assert liveness.poll_hold <= timeout * MARGIN
    assert liveness.worst_silence <= timeout * MARGIN + 1e-9
