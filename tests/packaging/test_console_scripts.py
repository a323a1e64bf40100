"""Each console script runs every command of its own with only its own extra installed.

For `rmm-agent` (the agent extra) and `rmm` (the cli extra), a fresh interpreter whose
`sys.meta_path` refuses every module that extra does not install (tests/packaging/console_probe.py)
walks the click tree from the entry point in pyproject.toml, imports every module each command
can reach (imports inside functions included), and runs `--help` of every command. What the extra
does not install is derived from pyproject.toml: the other extras' requirements that the extra's
own do not pull in, and the project packages the import-graph contract keeps apart. A command
that imports another extra's module when it runs must say which extra to install and exit
non-zero, without a traceback. tests/packaging/test_agent_extra.py builds a real agent venv.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from functools import cache
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
PROBE = Path(__file__).with_name("console_probe.py")
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# Each console script, the extra that installs it, and the project packages it must not import
# (no rmm_server in the agent or the CLI, no rmm_agent in the CLI: tests/test_import_graph.py).
SCRIPTS = {
    "rmm-agent": ("agent", frozenset({"rmm_server", "rmm_cli"})),
    "rmm": ("cli", frozenset({"rmm_server", "rmm_agent"})),
}
# Commands that import another extra's module when they run, and how to run one to that point.
# Each must refuse with a message naming the extra to install; the walk finds every such command,
# and one missing here fails the test.
NEEDS_SERVER_EXTRA: dict[str, dict[str, list[str]]] = {
    "rmm": {
        "rmm policy validate": ["policy", "validate", "{policies}"],
        "rmm policy test": ["policy", "test", "{policies}", "--unit"],
    },
    "rmm-agent": {},
}
EXTRA_HINT = "pip install 'msp-rmm[server]'"


def _name(requirement: Requirement) -> str:
    return requirement.name.lower().replace("_", "-")


def extra_requirements(extra: str) -> list[Requirement]:
    """Return what `extra` lists, with the project's own extras (msp-rmm[...]) expanded."""
    out: list[Requirement] = []
    for line in PROJECT["optional-dependencies"][extra]:
        requirement = Requirement(line)
        if _name(requirement) == PROJECT["name"]:
            for inner in sorted(requirement.extras):
                out += extra_requirements(inner)
        else:
            out.append(requirement)
    return out


def installed_closure(names: list[str]) -> set[str]:
    """Return the distributions `names` pull in (themselves included), as installed here."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for line in requires:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(_name(requirement))
    return seen


@cache
def _modules_by_distribution() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for module, distributions in metadata.packages_distributions().items():
        for distribution in distributions:
            out.setdefault(distribution.lower().replace("_", "-"), set()).add(module)
    return out


def forbidden_modules(script: str) -> frozenset[str]:
    """Return the top-level modules an install of the script's extra does not have."""
    extra, packages = SCRIPTS[script]
    own = installed_closure([_name(r) for r in extra_requirements(extra)])
    others = {
        _name(r)
        for other in PROJECT["optional-dependencies"]
        if other not in (extra, "dev")
        for r in extra_requirements(other)
    }
    by_distribution = _modules_by_distribution()
    allowed = {m for name in own for m in by_distribution.get(name, ())}
    refused = {m for name in others - own for m in by_distribution.get(name, ())}
    return frozenset((refused - allowed) | packages)


def probe(script: str, mode: str, argv: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """Run console_probe.py for `script` in `mode` with its extra's forbidden modules."""
    config = {
        "mode": mode,
        "entry": PROJECT["scripts"][script],
        "prog": script,
        "root": str(ROOT),
        "forbidden": sorted(forbidden_modules(script)),
        "argv": list(argv),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RMM_", "PYTHON"))}
    return subprocess.run(
        [sys.executable, "-I", str(PROBE), json.dumps(config)],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env=env,
    )  # fmt: skip


def test_the_forbidden_modules_come_from_the_extras() -> None:
    cli = forbidden_modules("rmm")
    agent = forbidden_modules("rmm-agent")
    for module in ("yaml", "psutil", "cryptography", "sqlalchemy", "prometheus_client"):
        assert module in cli
    for module in ("apscheduler", "httpx", "cel", "aiohttp", "rmm_server", "rmm_agent"):
        assert module in cli
    for module in ("sqlalchemy", "rich", "grpc_health", "cel", "rmm_server", "rmm_cli"):
        assert module in agent
    for module in ("click", "grpc", "google", "rmm_common", "rmm_proto"):
        assert module not in cli and module not in agent
    assert "rich" not in cli
    assert not {"yaml", "psutil", "cryptography"} & agent


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_every_command_imports_and_helps_with_only_its_extra(script: str) -> None:
    done = probe(script, "walk")
    assert done.returncode == 0, done.stderr[-5000:]
    found = json.loads(done.stdout)
    assert not found["preloaded"], found["preloaded"]
    assert len(found["commands"]) > (20 if script == "rmm" else 5), found["commands"]
    assert found["modules"] > 10
    assert found["import_failures"] == {}, json.dumps(found["import_failures"], indent=1)
    assert found["help_failures"] == {}, json.dumps(found["help_failures"], indent=1)
    # Every module of another extra imported when run is imported by a command found here...
    assert found["unattributed"] == [], found["unattributed"]
    # ...and every command that reaches one is one checked below.
    assert set(found["needs_other_extra"]) == set(NEEDS_SERVER_EXTRA[script]), found[
        "needs_other_extra"
    ]


@pytest.mark.parametrize(
    ("script", "command"),
    [(script, command) for script, table in NEEDS_SERVER_EXTRA.items() for command in table],
)
def test_a_command_needing_the_server_extra_says_so(script: str, command: str) -> None:
    argv = [a.format(policies=ROOT / "policies") for a in NEEDS_SERVER_EXTRA[script][command]]
    done = probe(script, "run", tuple(argv))
    assert done.returncode != 0, done.stdout + done.stderr
    assert EXTRA_HINT in done.stderr, done.stderr
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
