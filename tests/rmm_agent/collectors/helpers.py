"""Share fixture access and output checks between the collector tests."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from rmm_agent.collectors.base import Collector, CollectorOutput, CommandError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "collectors"


def fixture_path(name: str) -> Path:
    """Return the path of a recorded fixture."""
    path = FIXTURES / name
    assert path.exists(), f"missing fixture {path}"
    return path


def fixture_text(name: str) -> str:
    """Return a recorded fixture's text."""
    return fixture_path(name).read_text(encoding="utf-8")


def check_output(collector: type[Collector] | Collector, output: CollectorOutput) -> None:
    """Assert every sample is declared with its exact labels and a finite value; info is JSON."""
    specs = {spec.name: spec for spec in collector.metrics}
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for sample in output.samples:
        assert sample.name in specs, f"{collector.name}: undeclared metric {sample.name}"
        spec = specs[sample.name]
        assert sorted(sample.labels) == sorted(spec.labels), (
            f"{sample.name}: labels {sorted(sample.labels)} != declared {sorted(spec.labels)}"
        )
        assert all(isinstance(v, str) for v in sample.labels.values()), sample
        assert isinstance(sample.value, float | int) and not isinstance(sample.value, bool)
        assert math.isfinite(sample.value), sample
        series = (sample.name, tuple(sorted(sample.labels.items())))
        assert series not in seen, f"{collector.name}: duplicate series {series}"
        seen.add(series)
    json.dumps(output.info, allow_nan=False)


def values(output: CollectorOutput, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Return one metric's samples as {sorted label items: value}."""
    return {tuple(sorted(s.labels.items())): s.value for s in output.samples if s.name == name}


def value(output: CollectorOutput, name: str, **labels: str) -> float:
    """Return the value of exactly one series."""
    found = [s.value for s in output.samples if s.name == name and s.labels == labels]
    assert len(found) == 1, f"{name}{labels}: {len(found)} samples"
    return found[0]


class FakeRunner:
    """Answer commands from a table of argv -> stdout and record each call."""

    def __init__(self, answers: Mapping[tuple[str, ...], str | Exception]) -> None:
        self.answers = dict(answers)
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, argv: Sequence[str]) -> str:
        key = tuple(argv)
        self.calls.append(key)
        if key not in self.answers:
            raise CommandError(f"{argv[0]}: not found on this host")
        answer = self.answers[key]
        if isinstance(answer, Exception):
            raise answer
        return answer


class FakeStatusRunner:
    """Answer commands with (exit status, stdout) and record each call."""

    def __init__(self, answers: Mapping[tuple[str, ...], tuple[int, str]]) -> None:
        self.answers = dict(answers)
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, argv: Sequence[str]) -> tuple[int, str]:
        key = tuple(argv)
        self.calls.append(key)
        if key not in self.answers:
            raise CommandError(f"{argv[0]}: not found on this host")
        return self.answers[key]


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def write_tree(root: Path, files: Mapping[str, str]) -> Path:
    """Create files (relative path -> content) under root and return root."""
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
    return root
