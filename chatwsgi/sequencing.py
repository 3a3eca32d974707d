"""Each room's messages delivered on this node once, in sequence order, with no holes.

Pure bookkeeping for a live feed that may drop or repeat messages (Redis pub/sub drops
what a node misses while its subscription is down). It remembers, per room, the last
sequence number delivered to this node's members and the history (epoch) it belongs
to, and says what a message that just arrived needs: delivering, dropping as already
seen, or the messages before it fetched first.
"""

DELIVER = "deliver"  # the next one: deliver it
SEEN = "seen"  # delivered before (or in the history a joining member read): drop it
GAP = "gap"  # some before it never arrived: fetch and deliver those first


class Sequencer:
    """The last sequence number delivered per room, and its history's epoch."""

    def __init__(self):
        self._last = {}  # room -> (epoch or None when not known yet, last delivered seq)

    def follow(self, room, epoch, seq):
        """Members here have the room up to ``seq`` of history ``epoch`` (they just read
        it); follow the room from there, unless already following it."""
        self._last.setdefault(room, (epoch, seq))

    def position(self, room):
        """(epoch, last delivered seq) of a followed room, or None."""
        return self._last.get(room)

    def offer(self, room, seq):
        """What to do with message ``seq`` of ``room``, just arrived. An unfollowed room
        is followed from its first message."""
        known = self._last.get(room)
        if known is None or seq == known[1] + 1:
            return DELIVER
        return SEEN if seq <= known[1] else GAP

    def delivered(self, room, seq, epoch=None):
        """Message ``seq`` of ``room`` (of history ``epoch``, if known) went to the members here."""
        if epoch is None:
            epoch = self._last.get(room, (None, 0))[0]
        self._last[room] = (epoch, seq)

    def restart(self, room, epoch):
        """The room's history was reset (Redis lost it): follow epoch ``epoch`` from its start."""
        self._last[room] = (epoch, 0)

    def forget(self, room):
        """Nobody here is in the room: stop following it."""
        self._last.pop(room, None)

    def rooms(self):
        """The rooms followed, sorted."""
        return sorted(self._last)
