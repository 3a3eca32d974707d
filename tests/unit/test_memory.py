"""memory.py: when a server hands freed memory back, and that it can here."""

from chatwsgi.memory import TrimPolicy, release_free_memory


def test_a_trim_once_the_sessions_fell_well_below_their_peak():
    policy = TrimPolicy(least=1000)
    assert [policy.should_trim(n) for n in (0, 5000, 10000, 9500, 8100)] == [False] * 5
    assert policy.should_trim(7500) is True  # a quarter below the peak of 10,000
    assert policy.should_trim(7000) is False  # the peak is 7,500 now
    assert policy.should_trim(0) is True


def test_small_servers_trim_after_a_thousand_left():
    policy = TrimPolicy(least=1000)
    assert [policy.should_trim(n) for n in (1200, 300, 201)] == [False, False, False]
    assert policy.should_trim(200) is True


def test_release_free_memory_works_on_this_machine():
    assert release_free_memory() is True  # glibc (Debian)


def test_the_tail_of_a_wave_is_trimmed_once_it_stops_falling():
    policy = TrimPolicy(least=1000)
    assert [policy.should_trim(n) for n in (19001, 9000, 600, 300)] == [False, True, True, False]
    assert policy.should_trim(300) is True  # steady: the last 300 departures are trimmed
    assert [policy.should_trim(n) for n in (300, 5000, 4990, 4990)] == [False] * 4
