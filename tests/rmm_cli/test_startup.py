"""`rmm` loads only what a command uses: `--help` imports neither grpc nor rich nor the protocol's
messages, a group is imported when it runs, and JSON output never loads rich (issue #16)."""

from __future__ import annotations

import json
import subprocess

import click
import pytest

from rmm_cli.main import GROUPS, LazyCommand
from tests.helpers import BIN, ServerProcess, cli_env

# What start-up must not pay for unless a command needs it (each ~30 to 120 ms).
HEAVY = ("grpc", "rich", "google.protobuf", "rmm_proto")


def imported(*args: str, env: dict[str, str] | None = None) -> tuple[set[str], str]:
    """Run `rmm` with `args` in a new interpreter, as its entry point does; return the modules it
    had imported when it exited, and its stdout."""
    code = (
        "import atexit, json, sys\n"
        "atexit.register(lambda: sys.stderr.write('MODULES ' + json.dumps(sorted(sys.modules))))\n"
        f"sys.argv = ['rmm', *{list(args)!r}]\n"
        "from rmm_cli.main import main\n"
        "sys.exit(main())\n"
    )
    result = subprocess.run(
        [str(BIN / "python"), "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    listed = result.stderr.rsplit("MODULES ", 1)[1]
    modules = set(json.loads(listed))
    assert "click" in modules, "the module list was read"
    return modules, result.stdout


def heavy(modules: set[str], *roots: str) -> list[str]:
    return sorted(m for m in modules if any(m == r or m.startswith(r + ".") for r in roots))


def test_rmm_help_imports_neither_grpc_nor_rich() -> None:
    modules, out = imported("--help")
    assert "Commands:" in out and "agents" in out
    assert heavy(modules, *HEAVY) == []
    assert heavy(modules, "rmm_cli") == ["rmm_cli", "rmm_cli.client", "rmm_cli.main"]


def test_a_group_is_imported_only_when_it_runs() -> None:
    modules, out = imported("agents", "list", "--help")
    assert "--page-token" in out
    assert "rmm_cli.agents" in modules
    assert "rmm_cli.alerts" not in modules and "rmm_cli.targets" not in modules
    assert heavy(modules, *HEAVY) == []


def test_json_output_does_not_load_rich(server: ServerProcess) -> None:
    modules, out = imported("agents", "list", "--output", "json", env=cli_env(server))
    assert out.strip() == "[]"
    assert "grpc" in modules and "rmm_proto.operator_pb2" in modules, "the call was made"
    assert heavy(modules, "rich") == []


@pytest.mark.parametrize("lazy", GROUPS, ids=lambda command: command.name or "")
def test_each_root_entry_is_the_command_its_module_defines(lazy: click.Command) -> None:
    assert isinstance(lazy, LazyCommand)
    real = lazy.load()
    assert real.name == lazy.name
    assert lazy.load() is real, "loaded once"
    # `rmm --help` lists the help kept in GROUPS: it must be the command's own first line.
    for width in (45, 80, 200):
        assert lazy.get_short_help_str(width) == real.get_short_help_str(width)
    assert not real.hidden


def test_the_root_runs_the_real_command() -> None:
    from rmm_cli.main import main  # noqa: PLC0415

    ctx = click.Context(main)
    for lazy in GROUPS:
        assert isinstance(lazy, LazyCommand)
        assert main.get_command(ctx, lazy.name or "") is lazy.load()
    assert main.get_command(ctx, "no-such-group") is None
