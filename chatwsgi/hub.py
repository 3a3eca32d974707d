"""In-process fan-out: who in each room receives a frame. The single-process backplane.

Delivery is a call to each member's *sink* (a callable taking one encoded frame),
so a broadcast is encoded once and reaches only the room's members.
"""

import time
from collections import defaultdict

from chatwsgi.metrics import NO_METRICS


class LocalHub:
    """Room subscriptions and delivery inside one process."""

    def __init__(self, metrics=NO_METRICS):
        self.metrics = metrics
        self._rooms = defaultdict(dict)  # room -> {member: sink}
        self._joined = defaultdict(set)  # member -> rooms

    def subscribe(self, room, member, sink):
        """Deliver the room's frames to ``sink`` until unsubscribed."""
        self._rooms[room][member] = sink
        self._joined[member].add(room)

    def unsubscribe(self, room, member):
        """Stop delivering the room's frames to ``member``."""
        members = self._rooms.get(room)
        if members is not None:
            members.pop(member, None)
            if not members:
                del self._rooms[room]
        rooms = self._joined.get(member)
        if rooms is not None:
            rooms.discard(room)
            if not rooms:
                del self._joined[member]

    def drop(self, member):
        """Stop delivering every room's frames to ``member``."""
        for room in list(self._joined.get(member, ())):
            self.unsubscribe(room, member)

    def publish(self, room, frame, exclude=None):
        """Hand one encoded frame to every member of ``room`` but ``exclude``."""
        members = self._rooms.get(room)
        if not members:
            return
        started = time.perf_counter()
        if exclude is None:
            sinks = list(members.values())
        else:
            sinks = [sink for member, sink in members.items() if member != exclude]
        for sink in sinks:
            sink(frame)
        self.metrics.broadcast(len(sinks), time.perf_counter() - started)

    def members(self, room):
        """How many members receive the room's frames here."""
        return len(self._rooms.get(room, ()))
