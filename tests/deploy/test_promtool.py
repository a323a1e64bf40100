"""The shipped Prometheus config and rules pass promtool's checks and their unit tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.stack import PROMETHEUS_DIR

RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))


def promtool(*args: str, cwd: Path = PROMETHEUS_DIR) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.skip("promtool is missing (Debian package prometheus: apt-get install prometheus)")
    return subprocess.run(
        [binary, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def test_there_are_rules_and_rule_tests() -> None:
    assert [path.name for path in RULE_FILES] == ["alerts.yml", "recording.yml"]
    assert RULE_TESTS, "no promtool unit tests under deploy/prometheus/tests"


def test_config_is_valid() -> None:
    result = promtool("check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 rule files found" in result.stdout, result.stdout


def test_rules_are_valid() -> None:
    result = promtool("check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass() -> None:
    result = promtool("test", "rules", *map(str, RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS), result.stdout


def test_rule_unit_tests_can_fail(tmp_path: Path) -> None:
    """A wrong expectation is reported: the unit tests are really evaluated."""
    broken = tmp_path / "broken_test.yml"
    text = RULE_TESTS[0].read_text().replace("../rules/", str(PROMETHEUS_DIR / "rules") + "/")
    mutated = text.replace("severity: critical", "severity: info", 1)
    assert mutated != text
    broken.write_text(mutated)
    result = promtool("test", "rules", str(broken), cwd=tmp_path)
    assert result.returncode != 0, result.stdout
    assert "FAILED" in result.stdout + result.stderr


def test_every_alert_has_for_severity_and_annotations() -> None:
    alerts = [
        rule
        for group in yaml.safe_load((PROMETHEUS_DIR / "rules" / "alerts.yml").read_text())["groups"]
        for rule in group["rules"]
    ]
    assert alerts
    tested = "\n".join(path.read_text() for path in RULE_TESTS)
    for rule in alerts:
        name = rule["alert"]
        assert rule.get("for"), f"{name} has no `for`"
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        assert {"summary", "description"} <= set(rule["annotations"]), name
        assert f"alertname: {name}" in tested, f"{name} has no promtool unit test"
