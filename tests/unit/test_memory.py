"""memory.py: when a server freezes its heap and hands freed memory back, and that it can here."""

from chatwsgi.memory import FreezePolicy, TrimPolicy, release_free_memory


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


def test_the_heap_is_frozen_each_time_the_sessions_grew_by_a_quarter():
    policy = FreezePolicy(least=1000, growth=0.25)
    grown = [n for n in range(0, 20001, 250) if policy.should_freeze(n)]
    # 1,000 at least, then a quarter: each freeze leaves a young heap a quarter the size.
    assert grown == [1000, 2000, 3000, 4000, 5000, 6250, 8000, 10000, 12500, 15750, 19750]


def test_growth_is_counted_from_the_lowest_count_since_the_last_freeze():
    policy = FreezePolicy(least=1000)
    assert [policy.should_freeze(n) for n in (1000, 200, 900, 1199, 1200)] == [True] + [False] * 3 + [True]


def test_a_full_collection_is_due_every_refresh_interval_and_after_a_wave():
    policy = FreezePolicy(refresh_every=600.0)
    assert policy.should_refresh(100.0) is False  # starts the clock
    assert policy.should_refresh(699.0) is False
    assert policy.should_refresh(700.0) is True
    policy.refreshed_at(700.0, sessions=5000)  # also after a wave's trim
    assert policy.should_refresh(1299.0) is False
    assert policy.should_freeze(6000) is False and policy.should_freeze(6250) is True
