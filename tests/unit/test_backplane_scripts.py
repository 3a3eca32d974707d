"""The Redis backplane's Lua scripts can run on a Redis Cluster: every key they touch is declared.

A script may only touch keys passed in KEYS (Redis Cluster routes it by them, and refuses
keys of two slots); the one call whose first argument is not a key is the publish, whose
channel the caller tags with the room.
"""

import re

import pytest

from chatwsgi.backplane.redis import SCRIPT_NAMES, SCRIPTS, load_script

CALL = re.compile(r"redis\.call\(([^,()]+), ([^,()]+)")


def test_every_script_file_is_loaded():
    assert sorted(path.stem for path in SCRIPTS.glob("*.lua")) == sorted(SCRIPT_NAMES)


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_every_call_names_a_declared_key(name):
    calls = CALL.findall(load_script(name))
    assert calls
    for command, first in calls:
        if command == "ARGV[10]":  # PUBLISH or SPUBLISH to the room's channel
            assert (name, first) == ("post", "ARGV[7]")
        else:
            assert re.fullmatch(r"KEYS\[\d\]", first), (command, first)
