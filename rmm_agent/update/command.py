"""The command-line side of self-update: `rmm-agent launch`, and the hook for `run`."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

import click

from rmm_agent import __version__
from rmm_agent.runner import AgentRunner
from rmm_agent.update.launcher import (
    DEFAULT_CONFIRM_TIMEOUT,
    EXIT_UPDATE_READY,
    Layout,
    under_launcher,
)


def attach_updater(runner: AgentRunner, environ: Mapping[str, str] = os.environ) -> None:
    """Let `runner` take update offers when it runs under the launcher."""
    if not under_launcher(environ):
        return  # not under the launcher: the updater's modules stay unimported (memory)
    from rmm_agent.update.updater import grpc_fetch, updater_from_env  # noqa: PLC0415

    def restart_into_update() -> None:
        runner.exit_code = EXIT_UPDATE_READY
        runner.stop()

    identity = runner.identity
    runner.updater = updater_from_env(
        runner.state.path,
        __version__,
        grpc_fetch(
            runner.channel,
            identity.credential,
            identity.server,
            pinned=bool(identity.ca_cert_pem),
        ),
        restart_into_update,
        environ,
    )


@click.command(context_settings={"ignore_unknown_options": True})
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="The enrolled agent's state directory; the launcher keeps archives in DIR/agent/.",
)
@click.option(
    "--archive",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The agent archive to install when DIR/agent/current.pyz is missing "
    "(default: the archive this command runs from).",
)
@click.option(
    "--update-confirm-timeout",
    type=click.FloatRange(min=1),
    default=DEFAULT_CONFIRM_TIMEOUT,
    show_default=True,
    help="Seconds an updated agent has to report before the previous one comes back.",
)
@click.argument("run_args", nargs=-1, type=click.UNPROCESSED)
def launch(
    state_dir: Path, archive: Path | None, update_confirm_timeout: float, run_args: tuple[str, ...]
) -> int:
    """Run the agent under the launcher, which applies server-offered updates.

    Extra arguments go to `rmm-agent run` (e.g. -- --config FILE).
    """
    # An RmmError (no archive, an unwritable state directory) and the launcher's exit status
    # go up to rmm_agent.cli, which prints the one (exit 2) and exits with the other.
    from rmm_agent.update.install import exec_launcher, install, running_archive  # noqa: PLC0415

    layout = Layout.of(state_dir)
    if archive is None:
        archive = layout.current if layout.current.exists() else running_archive()
    launcher = install(layout, archive)
    argv = [
        sys.executable,
        str(launcher),
        "--state-dir",
        str(state_dir),
        "--confirm-timeout",
        str(update_confirm_timeout),
        "--",
        *run_args,
    ]
    return exec_launcher(argv)
