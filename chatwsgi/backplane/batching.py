"""Posts of concurrent greenlets sent to Redis together: one pipeline per batch.

Most of what a post costs Redis is not the script but the request around it: a read, a
write and, with ``appendfsync always``, an fsync per pass of its event loop. Posts that
arrive while a batch is in flight go together in the next one, so Redis pays that once
per batch. A post alone goes at once: nothing waits for a batch to fill.

Measured with ``bench/redis_post.py`` (one Redis, appendfsync always, 20,000 posts): with
the ZeroMQ bus (the script publishes nothing) 41 µs of Redis CPU per message one at a time,
13 µs batched, at 16 and at 64 posters. With Redis pub/sub it depends on the concurrency
(16 posters: 42 one at a time, 58 batched; 64: 46 and 38), so the backplane batches only
when it publishes elsewhere.
"""

import gevent
import gevent.event
from redis.exceptions import NoScriptError

MOST_PER_BATCH = 64


class ScriptBatcher:
    """Runs one registered script (``redis.Redis.register_script``) for many greenlets,
    batching the calls that queue up while one batch is in flight."""

    def __init__(self, client, script, most=MOST_PER_BATCH):
        self.client, self.script, self.most = client, script, most
        self._queue = []  # (keys, args, AsyncResult) waiting for the next batch
        self._sender = None  # the greenlet sending batches while there are any

    def run(self, keys, args):
        """The script's reply for ``keys`` and ``args``; raises what Redis or the connection
        raised (a failed connection fails every call of its batch: each caller retries)."""
        result = gevent.event.AsyncResult()
        self._queue.append((keys, args, result))
        if self._sender is None:
            self._sender = gevent.spawn(self._send_while_queued)
        return result.get()

    def _send_while_queued(self):
        try:
            while self._queue:
                batch, self._queue = self._queue[: self.most], self._queue[self.most :]
                try:
                    replies = self._send([(keys, args) for keys, args, _ in batch])
                except Exception as error:  # every caller of the batch raises it (see shared)
                    replies = [error] * len(batch)
                for (_, _, result), reply in zip(batch, replies, strict=True):
                    if isinstance(reply, Exception):
                        result.set_exception(reply)
                    else:
                        result.set(reply)
        finally:
            self._sender = None

    def _send(self, calls):
        replies = self._pipeline(calls)
        unknown = [n for n, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if unknown:  # Redis restarted since the script was loaded: load it, send those again
            self.client.script_load(self.script.script)
            for n, reply in zip(unknown, self._pipeline([calls[n] for n in unknown]), strict=True):
                replies[n] = reply
        return replies

    def _pipeline(self, calls):
        with self.client.pipeline(transaction=False) as pipe:
            for keys, args in calls:
                pipe.evalsha(self.script.sha, len(keys), *keys, *args)
            return pipe.execute(raise_on_error=False)
