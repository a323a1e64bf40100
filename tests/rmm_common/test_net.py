"""Which addresses count as loopback, and the refusal of plaintext beyond it."""

from __future__ import annotations

import pytest

from rmm_common.errors import ConfigError
from rmm_common.net import PLAINTEXT_BEYOND_LOOPBACK_FLAG, check_plaintext, is_loopback


@pytest.mark.parametrize(
    "host", ["localhost", "LOCALHOST", "127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"]
)
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "::", "", "10.0.0.5", "192.168.1.1", "rmm.example.net", "localhost.evil"]
)
def test_hosts_beyond_loopback(host: str) -> None:
    assert not is_loopback(host)


def test_plaintext_beyond_loopback_needs_the_second_flag() -> None:
    assert check_plaintext("127.0.0.1:50051", "tokens", allowed=False) is False
    assert check_plaintext("[::1]:50051", "tokens", allowed=False) is False
    with pytest.raises(ConfigError) as refused:
        check_plaintext("0.0.0.0:50051", "tokens", allowed=False)
    assert PLAINTEXT_BEYOND_LOOPBACK_FLAG in str(refused.value)
    assert "0.0.0.0:50051" in str(refused.value)
    assert check_plaintext("0.0.0.0:50051", "tokens", allowed=True) is True
