"""Presence notices (join, leave) in batches: at most one batch per room per interval.

Every member of a room hears every join, so a room filling up costs O(members squared)
frames: in a reconnect storm of rooms of 100, the join notices were 40 % of the server's
CPU, most of it one ``write`` per member per notice. Batched, the notices a room makes
within one interval reach each member in one write (the frames of one loop turn share a
write: delivery.py), and a quiet room's notice still goes at once.

Pure: the caller sends what ``offer``, ``tick`` and ``take`` return and calls ``tick``
``interval`` seconds after each batch it sent. A room is *hot* from a notice sent until an
interval passes with nothing to send; notices for a hot room wait for its next tick, or for
``take`` (the caller sends anything else to the room after its waiting notices, so a member
who joins and speaks is announced before the message).
"""


class PresenceBatches:
    """Waiting notices of the hot rooms (room -> list, empty when hot with none waiting)."""

    def __init__(self):
        self.waiting = {}

    def offer(self, room, notice):
        """A notice for the room: ``[notice]`` to send now (the room was quiet; call ``tick``
        after the interval), or ``[]`` when it waits for the room's next tick."""
        waiting = self.waiting.get(room)
        if waiting is None:
            self.waiting[room] = []
            return [notice]
        waiting.append(notice)
        return []

    def tick(self, room):
        """The room's interval ended: its waiting notices to send now (call ``tick`` again
        after the interval), or ``[]`` when none waited (the room is quiet again)."""
        waiting = self.waiting.pop(room, None)
        if waiting:
            self.waiting[room] = []
        return waiting or []

    def take(self, room):
        """Something else is sent to the room: its waiting notices, to send first."""
        waiting = self.waiting.get(room)
        if not waiting:
            return []
        self.waiting[room] = []
        return waiting

    def __len__(self):
        """How many rooms are hot."""
        return len(self.waiting)
