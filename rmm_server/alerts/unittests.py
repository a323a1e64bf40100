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

The file is read strictly (rmm_common/yamlnodes.py): unknown keys are errors, and every problem
is reported at once, each with file:line:col.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from rmm_common.durations import parse_duration
from rmm_common.errors import InvalidArgument, PolicyError
from rmm_common.yamlnodes import Unreadable, Where, compose, mapping, scalar
from rmm_server.alerts.lifecycle import (
    Alert,
    AlertState,
    EndNow,
    Observation,
    advance,
    fingerprint,
)
from rmm_server.policy import AgentContext, PolicySet, SeriesSample, load_policy_dir

T = TypeVar("T")
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


_TOP_KEYS = ("policies", "interval", "agent", "tests")
_AGENT_KEYS = ("id", "hostname", "client", "site", "tags", "os", "interval_seconds", "info")
_TEST_KEYS = ("name", "series", "seconds_since_report", "expect")
_EXPECT_KEYS = ("at", "firing", "pending")
_ALERT_KEYS = ("rule", "labels")


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _text(node: yaml.Node, where: Where, context: str, what: str) -> str | None:
    """Return a scalar as text (numbers too, as the notation allows), or record an error."""
    if not isinstance(node, yaml.ScalarNode):
        where.at(node, context, f"{what} must be one value, not a list or mapping")
        return None
    try:
        value = scalar(node)
    except Unreadable as exc:
        where.at(node, context, f"{what}: YAML cannot read this value: {exc.reason}")
        return None
    return str(value)


def _parsed(
    node: yaml.Node, where: Where, context: str, what: str, parse: Callable[[str], T]
) -> T | None:
    """Return `parse` of a scalar's text; record an InvalidArgument at `node`."""
    text = _text(node, where, context, what)
    if text is None:
        return None
    try:
        return parse(text)
    except InvalidArgument as exc:
        where.at(node, context, f"{what}: {exc}")
        return None


def _labels(node: yaml.Node, where: Where, context: str) -> dict[str, str] | None:
    if _is_null(node):
        return {}
    if not isinstance(node, yaml.MappingNode):
        where.at(node, context, "labels must be a mapping of label names to values")
        return None
    labels: dict[str, str] = {}
    ok = True
    for key_node, value_node in node.value:
        key = _text(key_node, where, context, "a label name")
        value = _text(value_node, where, context, f"labels.{key}")
        if key is None or value is None:
            ok = False
        elif key in labels:
            where.at(key_node, context, f"labels: duplicate key {key!r}", "keep one")
            ok = False
        else:
            labels[key] = value
    return labels if ok else None


def _expected(node: yaml.Node, where: Where, context: str) -> tuple[ExpectedAlert, ...] | None:
    if not isinstance(node, yaml.SequenceNode):
        where.at(node, context, "expected a list of {rule, labels}")
        return None
    found: list[ExpectedAlert] = []
    for item in node.value:
        items = mapping(item, where, context, _ALERT_KEYS, ("rule",))
        if items is None or "rule" not in items:
            continue
        rule = _text(items["rule"][1], where, context, "rule")
        labels = _labels(items["labels"][1], where, context) if "labels" in items else {}
        if rule is not None and labels is not None:
            found.append(ExpectedAlert(rule, labels))
    return tuple(found) if len(found) == len(node.value) else None


def _expectation(node: yaml.Node, where: Where, context: str) -> Expectation | None:
    items = mapping(node, where, context, _EXPECT_KEYS)
    if items is None:
        return None
    at: float | None = 0.0
    if "at" in items:
        at_node = items["at"][1]
        if isinstance(at_node, yaml.ScalarNode):
            context = f"{context}, at {at_node.value}"
        at = _parsed(at_node, where, context, "at", parse_duration)
    firing = _expected(items["firing"][1], where, context) if "firing" in items else ()
    pending = _expected(items["pending"][1], where, context) if "pending" in items else None
    if at is None or firing is None or ("pending" in items and pending is None):
        return None
    return Expectation(at_seconds=at, firing=firing, pending=pending)


def _unit_test(node: yaml.Node, where: Where, index: int) -> UnitTest | None:
    # The name goes into every error of the test, even those found before it is read.
    named = [
        value.value
        for key, value in (node.value if isinstance(node, yaml.MappingNode) else [])
        if isinstance(key, yaml.ScalarNode) and key.value == "name"
        if isinstance(value, yaml.ScalarNode)
    ]
    context = f'test {index} "{named[0]}"' if named else f"test {index}"
    items = mapping(node, where, context, _TEST_KEYS)
    if items is None:
        return None
    name = f"test {index}"
    if "name" in items:
        name = _text(items["name"][1], where, context, "name") or name
    ok = True
    series: dict[tuple[str, tuple[tuple[str, str], ...]], list[float | None]] = {}
    if "series" in items and not _is_null(items["series"][1]):
        series_node = items["series"][1]
        if not isinstance(series_node, yaml.MappingNode):
            where.at(series_node, context, 'series must be a mapping of name{label="value"} keys')
            ok = False
        else:
            for key_node, value_node in series_node.value:
                key = _parsed(key_node, where, context, "series", parse_series_key)
                values = _parsed(value_node, where, context, "series", expand_series)
                if key is None or values is None:
                    ok = False
                else:
                    series[(key[0], tuple(sorted(key[1].items())))] = values
    offline: list[float | None] | None = []
    if "seconds_since_report" in items:
        node_offline = items["seconds_since_report"][1]
        offline = _parsed(node_offline, where, context, "seconds_since_report", expand_series)
    expectations: list[Expectation] = []
    if "expect" in items and not _is_null(items["expect"][1]):
        expect_node = items["expect"][1]
        if not isinstance(expect_node, yaml.SequenceNode):
            where.at(expect_node, context, "expect must be a list of {at, firing, pending}")
            ok = False
        else:
            for item in expect_node.value:
                expectation = _expectation(item, where, context)
                if expectation is None:
                    ok = False
                else:
                    expectations.append(expectation)
    if not ok or offline is None:
        return None
    return UnitTest(name, series, offline, tuple(expectations))


def parse_unit_test_file(path: Path) -> tuple[Path, float, dict[str, Any], list[UnitTest]]:
    """Read a unit-test file: (policies path, interval, agent facts, tests).

    Raise InvalidArgument listing every problem at once, each with file:line:col.
    """
    where = Where(str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"{path}: cannot read the unit-test file: {exc}") from exc
    root = compose(text, where)
    where.raise_errors(InvalidArgument)
    if not isinstance(root, yaml.MappingNode):
        raise InvalidArgument(f"{where.position(root)}: a unit-test file needs a 'tests' list")
    items = mapping(root, where, "", _TOP_KEYS) or {}
    policies = ".."
    if "policies" in items:
        policies = _text(items["policies"][1], where, "", "policies") or policies
    interval = 60.0
    if "interval" in items:
        node = items["interval"][1]
        parsed = _parsed(node, where, "", "interval", parse_duration)
        if parsed is not None and parsed <= 0:
            where.at(node, "", "interval must be above 0", "e.g. 1m")
        elif parsed is not None:
            interval = parsed
    agent = _agent(items["agent"][1], where) if "agent" in items else {}
    tests: list[UnitTest] = []
    tests_node = items["tests"][1] if "tests" in items else None
    if not isinstance(tests_node, yaml.SequenceNode):
        where.add(tests_node or root, "a unit-test file needs a 'tests' list")
    else:
        for index, node in enumerate(tests_node.value, start=1):
            test = _unit_test(node, where, index)
            if test is not None:
                tests.append(test)
    where.raise_errors(InvalidArgument)
    return (path.parent / policies).resolve(), interval, agent, tests


def _agent(node: yaml.Node, where: Where) -> dict[str, Any]:
    """Return the agent's facts (hostname, client, site, tags, os, ...) as plain values."""
    if _is_null(node):
        return {}
    items = mapping(node, where, "agent", _AGENT_KEYS)
    facts: dict[str, Any] = {}
    for key, (_, value_node) in (items or {}).items():
        try:
            facts[key] = scalar(value_node)
        except Unreadable as exc:
            where.at(value_node, "agent", f"{key}: YAML cannot read this value: {exc.reason}")
    return facts


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
