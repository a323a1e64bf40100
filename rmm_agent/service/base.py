"""What every service backend shares: the plan to install, the runner of commands, the errors."""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rmm_common.errors import RmmError

SERVICE_NAME = "rmm-agent"
DESCRIPTION = "RMM agent: reports this host's health to the RMM server and runs its actions"

# Runs one external command to completion; raises ServiceError when it fails. Tests pass a fake.
CommandRunner = Callable[[Sequence[str]], None]


class ServiceError(RmmError):
    """Installing, starting or removing the agent's service failed."""


def run_command(argv: Sequence[str]) -> None:
    """Run `argv`; raise ServiceError naming the command, its exit status and its output."""
    try:
        result = subprocess.run(list(argv), capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise ServiceError(
            f"{argv[0]} not found: is this the right service manager for this host? "
            "(pass --platform to choose another)"
        ) from None
    except subprocess.TimeoutExpired:
        raise ServiceError(f"`{shlex.join(argv)}` did not finish within 120 s") from None
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip()
        raise ServiceError(f"`{shlex.join(argv)}` exited {result.returncode}: {output}")


@dataclass(frozen=True)
class ServiceSpec:
    """What the service runs: the agent's command line and where it keeps its state."""

    agent_command: tuple[str, ...]
    state_dir: Path
    config: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    # Start through the self-update launcher (`rmm-agent launch`), which needs the archive.
    self_update: bool = False

    def run_argv(self) -> list[str]:
        """Return the full command line the service starts (`run`, or `launch` to self-update)."""
        if not self.self_update:
            argv = [*self.agent_command, "run", "--state-dir", str(self.state_dir)]
        else:
            archive = next((part for part in self.agent_command if part.endswith(".pyz")), None)
            if archive is None:
                raise ServiceError(
                    "--self-update needs the agent started from its single-file archive: run "
                    "`python3 rmm-agent.pyz install-service --self-update ...` "
                    "(see docs/self-update.md)"
                )
            argv = [
                *self.agent_command,
                "launch",
                "--state-dir",
                str(self.state_dir),
                "--archive",
                archive,
            ]
        if self.config is not None:
            argv += ["--config", str(self.config)]
        return argv


def agent_command(argv0: str | None = None, executable: str | None = None) -> tuple[str, ...]:
    """Return how to start this very agent again: the archive, the script, or the module.

    `argv0` and `executable` default to this process's; a service must not depend on $PATH or on
    the current directory, so every path is made absolute.
    """
    argv0 = sys.argv[0] if argv0 is None else argv0
    python = str(Path(executable or sys.executable).absolute())
    start = Path(argv0)
    if start.suffix == ".pyz" and start.is_file():
        return (python, str(start.resolve()))
    if start.name.startswith("rmm-agent") and start.is_file():
        return (str(start.absolute()),)
    return (python, "-c", "import sys; from rmm_agent.cli import main; sys.exit(main())")
