"""batching.ScriptBatcher on a real redis-server: concurrent calls share a pipeline, each gets
its own reply or its own error, and a Redis restarted without its scripts is no failure."""

import gevent
import pytest
import redis

from chatwsgi.backplane.batching import ScriptBatcher
from tests.support.cluster import free_port

pytestmark = pytest.mark.live

# A script with a key and an argument: INCR the key, answer {new value, argument}.
COUNTER = "return {redis.call('INCR', KEYS[1]), ARGV[1]}"


class CountingRedis(redis.Redis):
    """A real client that counts the pipelines it opens."""

    pipelines = 0

    def pipeline(self, *args, **kwargs):
        self.pipelines += 1
        return super().pipeline(*args, **kwargs)


@pytest.fixture
def client(redis_server):
    connection = CountingRedis(port=redis_server.port, decode_responses=True)
    connection.delete("batching:n", "batching:text")
    yield connection
    connection.close()


def run_at_once(batcher, calls):
    """Start every call in its own greenlet at once; their results (or exceptions) in order."""
    greenlets = [gevent.spawn(batcher.run, keys, args) for keys, args in calls]
    gevent.joinall(greenlets, timeout=30)
    return [g.value if g.successful() else g.exception for g in greenlets]


def test_calls_made_together_share_a_pipeline_and_keep_their_order(client):
    batcher = ScriptBatcher(client, client.register_script(COUNTER), most=64)
    client.script_load(COUNTER)  # else the first batch meets NOSCRIPT and goes twice
    replies = run_at_once(batcher, [(["batching:n"], ["call %d" % n]) for n in range(100)])
    assert replies == [[n + 1, "call %d" % n] for n in range(100)]
    assert client.pipelines == 2  # 64, then the 36 that queued behind them


def test_a_call_alone_goes_at_once(client):
    batcher = ScriptBatcher(client, client.register_script(COUNTER))
    client.script_load(COUNTER)
    assert batcher.run(["batching:n"], ["alone"]) == [1, "alone"]
    assert batcher.run(["batching:n"], ["again"]) == [2, "again"]
    assert client.pipelines == 2


def test_an_error_redis_answers_fails_its_own_call_only(client):
    client.set("batching:text", "not a number")
    batcher = ScriptBatcher(client, client.register_script(COUNTER))
    replies = run_at_once(
        batcher, [(["batching:n"], ["a"]), (["batching:text"], ["b"]), (["batching:n"], ["c"])]
    )
    assert replies[0] == [1, "a"] and replies[2] == [2, "c"]
    assert isinstance(replies[1], redis.ResponseError) and "not an integer" in str(replies[1])


def test_scripts_lost_by_a_restart_are_loaded_again_and_nothing_runs_twice(client):
    batcher = ScriptBatcher(client, client.register_script(COUNTER))
    assert batcher.run(["batching:n"], ["before"]) == [1, "before"]
    client.script_flush()  # what a restarted Redis has: no scripts
    replies = run_at_once(batcher, [(["batching:n"], ["after %d" % n]) for n in range(5)])
    assert replies == [[n + 2, "after %d" % n] for n in range(5)]
    assert client.get("batching:n") == "6"


def test_a_failed_connection_fails_every_call_of_the_batch():
    nowhere = redis.Redis(port=free_port(), socket_connect_timeout=1)
    batcher = ScriptBatcher(nowhere, nowhere.register_script(COUNTER))
    replies = run_at_once(batcher, [(["batching:n"], [n]) for n in range(3)])
    assert all(isinstance(reply, redis.ConnectionError) for reply in replies)
    assert batcher._sender is None  # the next call starts a batch of its own
