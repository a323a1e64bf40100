"""Share fixtures and a recording command runner between the patch backend tests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "patching"
COLLECTOR_FIXTURES = FIXTURES.parent / "collectors"

Answer = tuple[int, str, str]


def fixture_text(name: str) -> str:
    """Return a recorded fixture's text (this directory's, else the collectors')."""
    for folder in (FIXTURES, COLLECTOR_FIXTURES):
        if (folder / name).exists():
            return (folder / name).read_text(encoding="utf-8")
    raise AssertionError(f"missing fixture {name} in {FIXTURES} or {COLLECTOR_FIXTURES}")


class FakeRunner:
    """Answer commands from recorded outputs, in order per command line; record each call.

    An answer may be a list: each call takes the next one (a scan before and after an
    install), the last one repeating; an exception is raised instead of returned.
    """

    def __init__(
        self, answers: dict[tuple[str, ...], Answer | Exception | list[Answer | Exception]]
    ) -> None:
        self.answers: dict[tuple[str, ...], list[Answer | Exception]] = {
            key: list(value) if isinstance(value, list) else [value]
            for key, value in answers.items()
        }
        self.calls: list[tuple[tuple[str, ...], float]] = []

    def __call__(self, argv: Sequence[str], timeout: float) -> Answer:
        key = tuple(argv)
        self.calls.append((key, timeout))
        assert key in self.answers, f"unexpected command {key}"
        queue = self.answers[key]
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    @property
    def argvs(self) -> list[tuple[str, ...]]:
        """Return the command lines run, in order."""
        return [argv for argv, _timeout in self.calls]


def ok(stdout: str = "") -> Answer:
    """Return a successful command's answer."""
    return 0, stdout, ""


def found(name: str) -> str | None:
    """Stand in for shutil.which on a host that has every program."""
    return f"/usr/bin/{name}"


def missing(name: str) -> str | None:
    """Stand in for shutil.which on a host that has none."""
    return None
