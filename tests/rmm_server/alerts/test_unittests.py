"""The policy unit-test runner: series notation, and the shipped policies' own tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from rmm_common.errors import InvalidArgument
from rmm_server.alerts.unittests import expand_series, parse_series_key, run_unit_test_file

ROOT = Path(__file__).resolve().parents[3]


def test_series_notation() -> None:
    assert expand_series("1 2 3") == [1, 2, 3]
    assert expand_series("1+2x3") == [1, 3, 5, 7]
    assert expand_series("0.5x2 _ 4") == [0.5, 0.5, 0.5, None, 4]
    assert expand_series("10-1x2") == [10, 9, 8]
    with pytest.raises(InvalidArgument):
        expand_series("abc")


def test_series_keys() -> None:
    assert parse_series_key('disk_usage_ratio{mountpoint="/",fstype="ext4"}') == (
        "disk_usage_ratio",
        {"mountpoint": "/", "fstype": "ext4"},
    )
    assert parse_series_key("cpu_usage_ratio") == ("cpu_usage_ratio", {})
    with pytest.raises(InvalidArgument):
        parse_series_key("cpu{mountpoint=/}")


@pytest.mark.parametrize("path", sorted((ROOT / "policies" / "tests").glob("*.yaml")))
def test_shipped_policy_unit_tests_pass(path: Path) -> None:
    results = run_unit_test_file(path)
    assert results
    assert [r.describe() for r in results if not r.passed] == []


def test_a_wrong_expectation_fails_with_a_reason(tmp_path: Path) -> None:
    test_file = tmp_path / "wrong.yaml"
    test_file.write_text(
        f"policies: {ROOT / 'policies'}\n"
        "interval: 1m\n"
        "agent: {hostname: h, client: c, site: s, tags: [server]}\n"
        "tests:\n"
        "  - name: expects a firing that cannot happen\n"
        "    series: {'memory_usage_ratio': '0.1x5'}\n"
        "    expect:\n"
        "      - at: 3m\n"
        "        firing: [{rule: MemoryHigh}]\n"
    )
    [result] = run_unit_test_file(test_file)
    assert not result.passed
    assert result.failures == ["at 180s: expected firing MemoryHigh{}, not found"]
