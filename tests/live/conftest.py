"""Fixtures of the live tests."""

import pytest

from tests.support.faults import Faults


@pytest.fixture
def faults():
    """What the server reports while the test runs; asserted clean at the end."""
    recorder = Faults().start()
    yield recorder
    recorder.stop()
    recorder.assert_clean()
