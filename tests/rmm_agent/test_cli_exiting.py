"""The agent's entry point turns what commands defined elsewhere raise and return into exits."""

from __future__ import annotations

import click
from click.testing import CliRunner

from rmm_agent.cli import exiting
from rmm_common.errors import ConfigError, NotFound


@click.command()
@click.argument("outcome")
def probe(outcome: str) -> int | None:
    """Raise, return a status, or return nothing, as `outcome` says."""
    if outcome == "config":
        raise ConfigError("the file is wrong")
    if outcome == "missing":
        raise NotFound("not the error this command maps")
    return 3 if outcome == "three" else None


def test_the_mapped_error_is_a_message_and_its_code() -> None:
    command = exiting(probe, ConfigError, 2)
    result = CliRunner().invoke(command, ["config"])
    assert (result.exit_code, result.stderr) == (2, "rmm-agent: the file is wrong\n")
    assert result.stdout == ""


def test_a_returned_status_is_the_exit_code_and_other_errors_pass() -> None:
    command = exiting(probe, ConfigError, 2)
    assert CliRunner().invoke(command, ["three"]).exit_code == 3
    assert CliRunner().invoke(command, ["none"]).exit_code == 0
    result = CliRunner().invoke(command, ["missing"])
    assert isinstance(result.exception, NotFound)
