"""`rmm run`: one script on many agents at once, and who failed."""

from __future__ import annotations

from pathlib import Path

import click

from rmm_cli.client import EXIT_USAGE, CliError, Connection
from rmm_cli.output import OUTPUT_OPTION
from rmm_cli.targets import SELECTOR_HELP, TARGET, RunOptions, Target, act, run_options
from rmm_proto import commands_pb2

SHELLS = ("bash", "sh", "python", "powershell")
SHELL_FOR_SUFFIX = {".sh": "sh", ".bash": "bash", ".py": "python", ".ps1": "powershell"}
# What a "#!" line names, for files whose extension says nothing.
SHELL_FOR_INTERPRETER = {
    "sh": "sh",
    "dash": "sh",
    "bash": "bash",
    "python": "python",
    "python3": "python",
    "pwsh": "powershell",
    "powershell": "powershell",
}


def infer_shell(path: Path, body: str) -> str:
    """Return the shell for a script file: by its extension, else by its "#!" line."""
    by_suffix = SHELL_FOR_SUFFIX.get(path.suffix.lower())
    if by_suffix:
        return by_suffix
    first = body.split("\n", 1)[0].strip()
    if first.startswith("#!"):
        words = first[2:].split()
        if words and Path(words[0]).name == "env" and len(words) > 1:
            words = words[1:]
        if words:
            shell = SHELL_FOR_INTERPRETER.get(Path(words[0]).name)
            if shell:
                return shell
    raise CliError(
        f"--script {path}: cannot tell its shell from the extension ({', '.join(SHELL_FOR_SUFFIX)}"
        f") or a #! line; pass --shell {'|'.join(SHELLS)}",
        EXIT_USAGE,
    )


def parse_env(pairs: tuple[str, ...]) -> dict[str, str]:
    """Return the --env K=V pairs as a mapping; a pair without a name is a usage error."""
    env: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name or "\0" in pair:
            raise CliError(
                f"--env {pair!r}: write NAME=VALUE (e.g. --env LOG_LEVEL=debug)", EXIT_USAGE
            )
        env[name] = value
    return env


def parse_params(pairs: tuple[str, ...]) -> dict[str, str]:
    """Return the --param NAME=VALUE pairs as a mapping; the server checks them by type."""
    params: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise CliError(
                f"--param {pair!r}: write NAME=VALUE (e.g. --param path=/var/log); "
                "`rmm scripts show NAME` lists a script's parameters",
                EXIT_USAGE,
            )
        if name in params:
            raise CliError(f"--param {name} is given twice; give it once", EXIT_USAGE)
        params[name] = value
    return params


def read_script(path: Path) -> str:
    """Return a script file's text; it must be UTF-8 since it travels as a string."""
    try:
        return path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise CliError(f"--script {path}: cannot read it: {exc.strerror}", EXIT_USAGE) from None
    except UnicodeDecodeError as exc:
        raise CliError(
            f"--script {path}: not UTF-8 text (byte {exc.start}); save it as UTF-8", EXIT_USAGE
        ) from None


def build_script(
    script: Path | None,
    library: str | None,
    command: str | None,
    shell: str | None,
    args: list[str],
    env: dict[str, str],
    cwd: str,
    params: dict[str, str] | None = None,
) -> commands_pb2.RunScript:
    """Return the RunScript for exactly one of --script, --library and --command."""
    given = [
        name
        for name, value in (("--script", script), ("--library", library), ("--command", command))
        if value is not None
    ]
    if len(given) != 1:
        what = " and ".join(given) if given else "none"
        raise CliError(
            f"give exactly one of --script FILE, --library NAME or --command TEXT (got {what})",
            EXIT_USAGE,
        )
    if params and library is None:
        raise CliError(
            "--param is for library scripts (their header declares them); an ad-hoc script "
            "takes arguments after -- or --env",
            EXIT_USAGE,
        )
    message = commands_pb2.RunScript(args=args, env=env, working_directory=cwd, params=params or {})
    if script is not None:
        message.body = read_script(script)
        message.shell = shell or infer_shell(script, message.body)
    elif library is not None:
        # The server's library supplies the body, its shell and its default timeout.
        message.library_name = library
        message.shell = shell or ""
    else:
        message.body = command or ""
        message.shell = shell or ""  # the server picks per OS: powershell on Windows, else sh
    return message


@click.command("run", context_settings={"allow_interspersed_args": False})
@click.option("--target", "-t", "target", type=TARGET, required=True, help=SELECTOR_HELP)
@click.option(
    "--script",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A local script file; its extension gives the shell (.sh .bash .py .ps1).",
)
@click.option("--library", metavar="NAME", help="A script from the server's library, by name.")
@click.option("--command", "command_text", help="One line of shell, e.g. 'uptime'.")
@click.option("--shell", type=click.Choice(SHELLS), help="Override the shell.")
@click.option(
    "--args",
    "arg_options",
    multiple=True,
    metavar="ARG",
    help="One argument for the script (repeatable); or put the arguments after --.",
)
@click.option(
    "--param",
    "param_pairs",
    multiple=True,
    metavar="NAME=VALUE",
    help="A library script's parameter, as its header declares (repeatable); see "
    "`rmm scripts show NAME`.",
)
@click.option(
    "--env",
    "env_pairs",
    multiple=True,
    metavar="NAME=VALUE",
    help="Repeatable. On a library script only for the role that may run any script.",
)
@click.option(
    "--cwd",
    default="",
    metavar="DIR",
    help="Working directory on the agent (default: a fresh temp).",
)
@run_options()
@OUTPUT_OPTION
@click.argument("trailing_args", nargs=-1, metavar="[-- ARGS...]")
@click.pass_obj
def run_command(
    conn: Connection,
    target: Target,
    script: Path | None,
    library: str | None,
    command_text: str | None,
    shell: str | None,
    arg_options: tuple[str, ...],
    param_pairs: tuple[str, ...],
    env_pairs: tuple[str, ...],
    cwd: str,
    options: RunOptions,
    output: str,
    trailing_args: tuple[str, ...],
) -> None:
    """Run a script on every agent TARGET selects; show each one's output and exit code.

    \b
    Examples:
      rmm run -t client=acme,os=linux --command 'df -h /'
      rmm run -t tag=web --script restart-app.sh -- --graceful
      rmm run -t web-01 --library clear-temp --timeout 5m
      rmm run -t web-01 --library restart-service --param name=nginx

    Exits 0 when every agent succeeded, 1 when any failed (they are named on stderr).
    """
    message = build_script(
        script,
        library,
        command_text,
        shell,
        [*arg_options, *trailing_args],
        parse_env(env_pairs),
        cwd,
        parse_params(param_pairs),
    )
    act(conn, target, "run_script", message, options, output)
