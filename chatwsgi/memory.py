"""Giving memory back to the system after a wave of connections has gone.

glibc's allocator keeps the memory of freed objects for reuse: after 10,000 clients
disconnect, a server's RSS stays near its peak although nothing uses it. ``malloc_trim``
hands the free pages back. ``TrimPolicy`` (pure) says when that is worth a call: once
the sessions have fallen well below their peak since the last trim.
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


@functools.cache
def malloc_trim():
    """glibc's ``malloc_trim``, or None on a C library without it (looked up once)."""
    library = ctypes.util.find_library("c")
    return getattr(ctypes.CDLL(library), "malloc_trim", None) if library else None


def collect_and_release():
    """Free what the departed sessions left (their objects sit in reference cycles until a
    full collection), then hand the free pages back: tens of milliseconds, once per wave."""
    gc.collect()
    return release_free_memory()


def release_free_memory():
    """Return the allocator's free pages to the system (glibc); whether it could."""
    trim = malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
