"""An agent host installs only the `agent` extra, and the agent works with just that."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVER_ONLY = ("sqlalchemy", "prometheus_client", "apscheduler", "rich", "grpc_health")


# Building the project and installing its agent extra takes about a minute on an idle machine
# and several while the other test worker saturates both cores.
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_agent_runs_with_only_the_agent_extra(tmp_path: Path) -> None:
    env_dir = tmp_path / "agent-venv"
    # No pip of its own (ensurepip costs a pip install): this environment's pip installs into it.
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--disable-pip-version-check",
            "--no-compile",  # nothing here runs long enough to gain from .pyc files
            f"{ROOT}[agent]",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    probe = (
        "import importlib.util, json, rmm_agent.cli, rmm_agent.runner, rmm_agent.collectors;"
        "print(json.dumps({m: importlib.util.find_spec(m) is not None "
        f"for m in {SERVER_ONLY!r}}}))"
    )
    found = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, timeout=60)
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout) == {name: False for name in SERVER_ONLY}
    collect = subprocess.run(
        [str(env_dir / "bin" / "rmm-agent"), "collect", "--once", "--output", "json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert collect.returncode == 0, collect.stderr
    assert json.loads(collect.stdout)["host"]["hostname"]
    # The strict YAML reader lives in rmm_common and needs the agent extra's PyYAML only.
    config = tmp_path / "agent.yaml"
    config.write_text("interval: 0.5s\nlog_level: loud\n")
    agent_cli = str(env_dir / "bin" / "rmm-agent")
    run = subprocess.run(
        [agent_cli, "run", "--state-dir", str(tmp_path / "state"), "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode != 0
    assert f"{config}:2:1: log_level: must be one of" in run.stderr, run.stderr
    assert f"{config}:1:1: interval must be at least 1s" in run.stderr, run.stderr


def test_agent_version_matches_the_project_version() -> None:
    import tomllib  # noqa: PLC0415

    import rmm_agent  # noqa: PLC0415

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert rmm_agent.__version__ == project["version"]
