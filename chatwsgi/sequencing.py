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
        self._swept = {}  # room -> the last seq stored when the previous sweep looked

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

    def overdue(self, stored):
        """Rooms whose messages stored at least one sweep ago have still not been delivered.

        ``stored``: room -> the last seq stored now (what a sweep read). A message the bus
        dropped at the end of a burst is followed by no other that would reveal the gap;
        a room behind what was stored a whole sweep earlier has lost one, while one behind
        only what was stored just now may have it in flight.
        """
        late = [room for room, seq in self._swept.items() if room in self._last and self._last[room][1] < seq]
        self._swept = {room: seq for room, seq in stored.items() if room in self._last}
        return sorted(late)


class Holdback:
    """Messages that arrived ahead of a gap, held for a moment while the missing ones come.

    Two nodes publishing one room's messages on a bus that does not order them (ZeroMQ)
    often deliver seq 8 before seq 7, which arrives a millisecond later. Holding 8 for a
    short ``window`` (seconds) saves fetching 7 from the store; past the window the gap
    is repaired from the store all the same. A window of 0 holds nothing.
    """

    def __init__(self, window):
        self.window = window
        self._held = {}  # room -> {seq: message}
        self._since = {}  # room -> when its oldest held message arrived

    def hold(self, room, seq, message, now):
        """Keep ``message`` (seq ``seq`` of ``room``) until its turn, or until the window ends."""
        self._held.setdefault(room, {})[seq] = message
        self._since.setdefault(room, now)

    def take(self, room, seq):
        """The held messages of ``room`` from ``seq`` on with no hole, in order, no longer held."""
        held = self._held.get(room)
        taken = []
        while held and seq in held:
            taken.append(held.pop(seq))
            seq += 1
        if held is not None and not held:
            self.drop(room)
        return taken

    def drop(self, room):
        """Every message held for ``room``, in seq order, no longer held."""
        self._since.pop(room, None)
        held = self._held.pop(room, {})
        return [held[seq] for seq in sorted(held)]

    def due(self, now):
        """Rooms whose held messages waited the whole window: repair their gap now."""
        return sorted(room for room, since in self._since.items() if now - since >= self.window)

    def wait(self, now):
        """Seconds until the next room is due, or None when nothing is held."""
        if not self._since:
            return None
        return max(0.0, min(self._since.values()) + self.window - now)
