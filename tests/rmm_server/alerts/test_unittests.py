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


def test_every_problem_of_a_unit_test_file_comes_at_once_with_its_position(
    tmp_path: Path,
) -> None:
    test_file = tmp_path / "broken.yaml"
    test_file.write_text(
        "interval: 0s\n"
        "agent: {hostname: h, clients: c}\n"
        "polices: ..\n"
        "tests:\n"
        "  - name: first\n"
        "    series: {'cpu{mode=user}': '1 2', memory_usage_ratio: '0.1 abc'}\n"
        "    expect:\n"
        "      - at: soon\n"
        "        firing: [{labels: {a: b}}]\n"
        "  - name: second\n"
        "    expct: []\n"
        "    seconds_since_report: 0x3 zz\n"
    )
    with pytest.raises(InvalidArgument) as caught:
        run_unit_test_file(test_file)
    assert str(caught.value).splitlines() == [
        f"{test_file}:3:1: unknown key 'polices' (allowed keys: policies, interval, agent, tests)",
        f"{test_file}:1:11: interval must be above 0 (e.g. 1m)",
        f"{test_file}:2:22: agent: unknown key 'clients' (allowed keys: id, hostname, client,"
        " site, tags, os, interval_seconds, info)",
        f"{test_file}:6:14: test 1 \"first\": series: series 'cpu{{mode=user}}': labels must be"
        ' name="value" pairs',
        f"{test_file}:6:59: test 1 \"first\": series: series value 'abc' is not a, a+bxN, axN or _",
        f"{test_file}:8:13: test 1 \"first\", at soon: at: duration 'soon' is not understood: use"
        " numbers with units ms, s, m, h, d, w, y (e.g. 30s, 1h30m, 7d)",
        f"{test_file}:9:18: test 1 \"first\", at soon: missing required key 'rule'",
        f"{test_file}:11:5: test 2 \"second\": unknown key 'expct' (allowed keys: name, series,"
        " seconds_since_report, expect)",
        f"{test_file}:12:27: test 2 \"second\": seconds_since_report: series value 'zz' is not a,"
        " a+bxN, axN or _",
    ]


def test_a_unit_test_file_without_tests_is_refused_with_its_position(tmp_path: Path) -> None:
    test_file = tmp_path / "empty.yaml"
    test_file.write_text("interval: 1m\ntests: {}\n")
    with pytest.raises(InvalidArgument, match=rf"^{test_file}:2:8: a unit-test file needs a"):
        run_unit_test_file(test_file)
    test_file.write_text("interval: 1m\ntests: [\n")
    with pytest.raises(InvalidArgument, match=rf"^{test_file}:3:1: not valid YAML"):
        run_unit_test_file(test_file)
