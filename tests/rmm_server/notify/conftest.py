"""Fixtures for the notification tests: a real HTTP receiver on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.rmm_server.notify.support import HttpReceiver


@pytest.fixture
def http() -> Iterator[HttpReceiver]:
    """A stdlib HTTP server on 127.0.0.1 recording what it is sent."""
    receiver = HttpReceiver()
    yield receiver
    receiver.close()
