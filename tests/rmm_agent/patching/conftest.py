"""Skip tests marked `linux` on other systems."""

from __future__ import annotations

import sys

import pytest


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip a `linux`-marked test when not running on Linux."""
    if item.get_closest_marker("linux") is not None and not sys.platform.startswith("linux"):
        pytest.skip("needs Linux facilities (/proc, /sys, dpkg)")
