"""Policy unit tests, the way `promtool test rules` tests Prometheus rules.

A test file gives input series over time for one agent and the alerts expected at given times;
the runner evaluates the real policies step by step through the real alert lifecycle:

```yaml
policies: ..                 # policy file or directory, relative to this file (default "..")
interval: 1m                 # time between evaluations
agent: {hostname: web01, client: acme, site: hq, tags: [server], os: linux}
tests:
  - name: disk low fires after its for and clears below the clear threshold
    series:
      'disk_usage_ratio{mountpoint="/",device="/dev/sda1",fstype="ext4"}': "0.5 0.96x10 0.84"
    seconds_since_report: "0x20"      # optional, per step; a big value makes the agent offline
    expect:
      - at: 6m
        firing: [{rule: DiskSpaceLow, labels: {mountpoint: /}}]
      - at: 12m
        firing: []
```

Series notation: values separated by spaces; `a+bxN` is a, then N more values each b larger;
`axN` is a repeated N more times; `_` is a step without a value (the series is absent).
An expectation lists every alert firing at that time (`firing:`) and, optionally, every pending
one (`pending:`); `labels` need only name the labels that matter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rmm_common.durations import parse_duration
from rmm_common.errors import InvalidArgument, PolicyError
from rmm_server.alerts.lifecycle import (
    Alert,
    AlertState,
    EndNow,
    Observation,
    advance,
    fingerprint,
)
from rmm_server.policy import AgentContext, PolicySet, SeriesSample, load_policy_dir

SERIES_KEY_RE = re.compile(r"^\s*([a-z_][a-z0-9_]*)\s*(?:\{(.*)\})?\s*$")
LABEL_RE = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')
STEP_RE = re.compile(r"^(_|-?[0-9.eE+-]+?)(?:([+-][0-9.eE]+))?(?:x([0-9]+))?$")


def expand_series(text: str) -> list[float | None]:
    """Expand promtool-style notation ("1 2 3+1x2 _ 5x3") into one value per step."""
    values: list[float | None] = []
    for token in str(text).split():
        found = STEP_RE.match(token)
        if not found:
            raise InvalidArgument(f"series value {token!r} is not a, a+bxN, axN or _")
        start, step, count = found.groups()
        repeat = int(count) if count else 0
        if start == "_":
            values.extend([None] * (repeat + 1))
            continue
        first = float(start)
        increment = float(step) if step else 0.0
        values.extend(first + increment * i for i in range(repeat + 1))
    return values


def parse_series_key(key: str) -> tuple[str, dict[str, str]]:
    """Split `name{label="value",...}` into the name and its labels."""
    found = SERIES_KEY_RE.match(key)
    if not found:
        raise InvalidArgument(f'series {key!r} is not name{{label="value",...}}')
    name, body = found.group(1), found.group(2) or ""
    labels: dict[str, str] = {}
    position = 0
    while position < len(body):
        label = LABEL_RE.match(body, position)
        if not label:
            raise InvalidArgument(f'series {key!r}: labels must be name="value" pairs')
        labels[label.group(1)] = label.group(2).replace('\\"', '"')
        position = label.end()
    return name, labels


@dataclass(frozen=True, slots=True)
class ExpectedAlert:
    rule: str
    labels: Mapping[str, str]

    def matches(self, alert: Alert, rule_name: str) -> bool:
        """Say whether a live alert is this expected one."""
        labels = alert.series_labels
        return rule_name == self.rule and all(labels.get(k) == v for k, v in self.labels.items())

    def __str__(self) -> str:
        inner = ",".join(f"{k}={v}" for k, v in sorted(self.labels.items()))
        return f"{self.rule}{{{inner}}}"


@dataclass(frozen=True, slots=True)
class Expectation:
    at_seconds: float
    firing: tuple[ExpectedAlert, ...]
    pending: tuple[ExpectedAlert, ...] | None


@dataclass(frozen=True, slots=True)
class UnitTest:
    name: str
    series: Mapping[tuple[str, tuple[tuple[str, str], ...]], list[float | None]]
    seconds_since_report: list[float | None]
    expectations: tuple[Expectation, ...]


@dataclass(slots=True)
class UnitResult:
    name: str
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Say whether every expectation held."""
        return not self.failures

    def describe(self) -> str:
        """Return a line (and the failures) for a person."""
        if self.passed:
            return f"PASS {self.name}"
        return "\n".join([f"FAIL {self.name}", *(f"  {failure}" for failure in self.failures)])

    def as_dict(self) -> dict[str, Any]:
        """Return the result as JSON-ready data."""
        return {"name": self.name, "passed": self.passed, "failures": list(self.failures)}


def _expected(items: Any, where: str) -> tuple[ExpectedAlert, ...]:
    if not isinstance(items, list):
        raise InvalidArgument(f"{where}: expected a list of {{rule, labels}}")
    found = []
    for item in items:
        if not isinstance(item, dict) or "rule" not in item:
            raise InvalidArgument(f"{where}: each alert needs a rule name")
        labels = {str(k): str(v) for k, v in (item.get("labels") or {}).items()}
        found.append(ExpectedAlert(str(item["rule"]), labels))
    return tuple(found)


def parse_unit_test_file(path: Path) -> tuple[Path, float, dict[str, Any], list[UnitTest]]:
    """Read a unit-test file: (policies path, interval, agent facts, tests)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidArgument(f"{path}: cannot read the unit-test file: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("tests"), list):
        raise InvalidArgument(f"{path}: a unit-test file needs a 'tests' list")
    unknown = set(data) - {"policies", "interval", "agent", "tests"}
    if unknown:
        raise InvalidArgument(f"{path}: unknown keys {sorted(unknown)}")
    policies = (path.parent / str(data.get("policies", ".."))).resolve()
    interval = parse_duration(str(data.get("interval", "1m")))
    agent = dict(data.get("agent") or {})
    tests = []
    for index, raw in enumerate(data["tests"], start=1):
        where = f"{path}: test {index}"
        if not isinstance(raw, dict):
            raise InvalidArgument(f"{where}: must be a mapping")
        series = {}
        for key, text in (raw.get("series") or {}).items():
            name, labels = parse_series_key(str(key))
            series[(name, tuple(sorted(labels.items())))] = expand_series(str(text))
        expectations = []
        for item in raw.get("expect") or []:
            at = parse_duration(str(item.get("at", "0s")))
            pending = item.get("pending")
            expectations.append(
                Expectation(
                    at_seconds=at,
                    firing=_expected(item.get("firing", []), f"{where}, at {item.get('at')}"),
                    pending=None
                    if pending is None
                    else _expected(pending, f"{where}, at {item.get('at')}"),
                )
            )
        offline = expand_series(str(raw.get("seconds_since_report", "")))
        tests.append(
            UnitTest(
                name=str(raw.get("name", f"test {index}")),
                series=series,
                seconds_since_report=offline,
                expectations=tuple(expectations),
            )
        )
    return policies, interval, agent, tests


def run_unit_test(
    policies: PolicySet, interval: float, agent: Mapping[str, Any], test: UnitTest
) -> UnitResult:
    """Evaluate one test step by step and compare the alerts with what it expects."""
    result = UnitResult(test.name)
    last_step = max(
        [len(values) for values in test.series.values()]
        + [len(test.seconds_since_report)]
        + [int(e.at_seconds // interval) + 1 for e in test.expectations]
    )
    due = {round(e.at_seconds / interval): e for e in test.expectations}
    for expectation in test.expectations:
        if abs(expectation.at_seconds / interval - round(expectation.at_seconds / interval)) > 1e-9:
            result.failures.append(f"at {expectation.at_seconds:g}s is not a multiple of interval")
    alerts: dict[str, tuple[Alert, str]] = {}
    for step in range(last_step):
        now = step * interval
        samples = [
            SeriesSample(name, dict(labels), value)
            for (name, labels), values in test.series.items()
            if step < len(values) and (value := values[step]) is not None
        ]
        offline = test.seconds_since_report[step] if step < len(test.seconds_since_report) else None
        context = AgentContext(
            agent_id=str(agent.get("id", agent.get("hostname", "agent"))),
            hostname=str(agent.get("hostname", "agent")),
            client=str(agent.get("client", "")),
            site=str(agent.get("site", "")),
            tags=frozenset(str(t) for t in agent.get("tags", [])),
            os=str(agent.get("os", "linux")),
            interval_seconds=float(agent.get("interval_seconds", interval)),
            seconds_since_report=0.0 if offline is None else offline,
            info=dict(agent.get("info", {})),
        )
        seen: set[str] = set()
        for condition in policies.evaluate(context, samples):
            key = fingerprint(condition.rule.key, context.agent_id, condition.series_labels)
            seen.add(key)
            previous = alerts.get(key)
            after = advance(
                previous[0] if previous else None,
                condition.rule,
                context.agent_id,
                condition.series_labels,
                Observation(condition.active, condition.clear, condition.value),
                now,
            )
            _keep(alerts, key, after, condition.rule.name)
        for key, (alert, rule_name) in list(alerts.items()):
            if key not in seen:
                gone = advance(
                    alert,
                    EndNow(alert.rule_key),
                    alert.agent_id,
                    alert.series_labels,
                    Observation(False),
                    now,
                )
                _keep(alerts, key, gone, rule_name)
        expected_now = due.get(step)
        if expected_now is not None:
            _compare(result, expected_now, alerts.values())
    return result


def _keep(
    alerts: dict[str, tuple[Alert, str]], key: str, alert: Alert | None, rule_name: str
) -> None:
    if alert is None or alert.state is AlertState.RESOLVED:
        alerts.pop(key, None)
    else:
        alerts[key] = (alert, rule_name)


def _compare(
    result: UnitResult, expectation: Expectation, live: Sequence[tuple[Alert, str]] | Any
) -> None:
    live = list(live)
    checks: list[tuple[str, tuple[ExpectedAlert, ...] | None]] = [
        ("firing", expectation.firing),
        ("pending", expectation.pending),
    ]
    for state, expected in checks:
        if expected is None:
            continue
        actual = [(a, name) for a, name in live if a.state.value == state]
        unmatched = list(actual)
        for wanted in expected:
            hit = next((pair for pair in unmatched if wanted.matches(pair[0], pair[1])), None)
            if hit is None:
                result.failures.append(
                    f"at {expectation.at_seconds:g}s: expected {state} {wanted}, not found"
                )
            else:
                unmatched.remove(hit)
        for alert, name in unmatched:
            labels = ",".join(f"{k}={v}" for k, v in sorted(alert.series_labels.items()))
            result.failures.append(
                f"at {expectation.at_seconds:g}s: unexpected {state} {name}{{{labels}}}"
            )


def run_unit_test_file(path: Path) -> list[UnitResult]:
    """Run every test in a unit-test file against the policies it names."""
    policies_path, interval, agent, tests = parse_unit_test_file(path)
    try:
        policies = load_policy_dir(policies_path)
    except PolicyError as exc:
        return [UnitResult(f"load {policies_path}", [str(exc)])]
    return [run_unit_test(policies, interval, agent, test) for test in tests]
