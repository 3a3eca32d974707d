"""Fixtures of the third-party client tests."""

import pytest

from tests.support.remote import RemoteClients


@pytest.fixture
def remotes(address):
    """Open third-party clients on demand; every driver is killed after the test."""
    pool = RemoteClients(address)
    yield pool
    pool.close()
