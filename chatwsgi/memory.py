"""The process's memory as sessions come and go: the garbage collector and the allocator.

- **Collecting.** Python's full collection walks every live object: with 10,000 sessions
  (about 40 objects each) it took 250-400 ms, a stall for every client, and during a
  connect storm one came each time the heap grew by a quarter. An ended session leaves no
  reference cycle (tests/live/test_session_garbage.py): reference counting frees it at
  once, and a full collection finds nothing of it. So the long-lived heap can be frozen
  (``gc.freeze``: out of every later collection) each time the sessions grew by a quarter
  (``FreezePolicy``, pure), and collections walk only what is young.
- **Releasing.** glibc's allocator keeps the memory of freed objects for reuse: after
  10,000 clients disconnect, a server's RSS stays near its peak although nothing uses it.
  ``malloc_trim`` hands the free pages back. ``TrimPolicy`` (pure) says when that is worth a
  call: once the sessions have fallen well below their peak since the last trim.

Both act on the whole process (an app hosting the chat included): a full collection still
runs after each wave of departures and every ``FreezePolicy.refresh_every`` seconds, so a
cycle made anywhere is freed within minutes, never kept for good.
"""

import ctypes
import ctypes.util
import functools
import gc


class TrimPolicy:
    """Trim when the session count fell by ``least`` (or a quarter of its peak) since the
    last trim: one call per wave of departures, never one per disconnect. And once more
    when a wave that was trimmed stops falling below the count it was trimmed at: its last
    few hundred departures (fewer than ``least``) kept megabytes of free pages otherwise."""

    def __init__(self, least=1000):
        self.least = least
        self.peak = 0
        self.trimmed_at = None  # the count at the last trim, while the wave may still fall
        self.previous = 0

    def should_trim(self, sessions):
        """Note the session count now (once per tender wake-up); whether to trim."""
        previous, self.previous = self.previous, sessions
        self.peak = max(self.peak, sessions)
        if self.peak - sessions >= max(self.least, self.peak // 4):
            self.peak = self.trimmed_at = sessions
            return True
        if self.trimmed_at is not None and sessions >= previous:
            # The wave stopped falling: its tail is trimmed if it left anything.
            tail, self.trimmed_at = self.trimmed_at - sessions > 0, None
            self.peak = sessions
            return tail
        return False


class FreezePolicy:
    """Freeze the heap when the sessions grew by ``growth`` (a quarter, and at least
    ``least``) since the last freeze, the count it is measured from following the sessions
    down; and every ``refresh_every`` seconds, a full collection first (``refresh``)."""

    def __init__(self, least=1000, growth=0.25, refresh_every=600.0):
        self.least, self.growth, self.refresh_every = least, growth, refresh_every
        self.base = 0  # the session count growth is measured from
        self.refreshed = None  # when the last full collection ran

    def should_freeze(self, sessions):
        """Note the session count now (once per tender wake-up); whether to freeze."""
        if sessions - self.base >= max(self.least, int(self.base * self.growth)):
            self.base = sessions
            return True
        self.base = min(self.base, sessions)
        return False

    def should_refresh(self, now):
        """Whether a full collection is due (the first call starts the clock)."""
        if self.refreshed is None:
            self.refreshed = now
        return now - self.refreshed >= self.refresh_every

    def refreshed_at(self, now, sessions):
        """A full collection ran (a refresh, or after a wave): the heap is frozen as of now."""
        self.refreshed, self.base = now, sessions


def freeze_new():
    """Collect what is not frozen yet, then freeze what is left: the collection walks only the
    objects made since the last freeze (about a fifth of the heap), and no cycle that is
    already garbage is frozen (none was found with 3,000 clients connected, but one made
    anywhere in the process would otherwise wait for the next full collection)."""
    gc.collect()
    gc.freeze()


def collect_all():
    """A full collection over the frozen heap too, then freeze what survived: all of it is
    alive now. The stall of one full collection (250-400 ms at 10,000 sessions)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


@functools.cache
def malloc_trim():
    """glibc's ``malloc_trim``, or None on a C library without it (looked up once)."""
    library = ctypes.util.find_library("c")
    return getattr(ctypes.CDLL(library), "malloc_trim", None) if library else None


def collect_and_release(frozen=True):
    """Free any cycle the departed left, then hand the free pages back: once per wave. With
    ``frozen`` (the heap is frozen as it grows) the frozen part is collected too, and frozen
    again (``collect_all``); without, only what is not frozen (serve.py freezes start-up)."""
    if frozen:
        collect_all()
    else:
        gc.collect()
    return release_free_memory()


def release_free_memory():
    """Return the allocator's free pages to the system (glibc); whether it could."""
    trim = malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
