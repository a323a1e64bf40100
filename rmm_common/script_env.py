"""What a script's environment may hold: the one list of variables no command may set.

Interpreters and the dynamic loader read some variables at start-up and run code they name
(`BASH_ENV`, `ENV`, `PS4` with `SHELLOPTS=xtrace`, `PYTHONSTARTUP`, `PYTHONPATH`, `LD_PRELOAD`,
`PSModulePath`, `DOTNET_STARTUP_HOOKS`...), so whoever sets one runs code as the agent (root or
SYSTEM), whatever the script says. The server refuses a command that sets one, the agent refuses it
again, and the agent removes them from its own environment before a script inherits it: a
script's environment is the same however the agent was started.

Names are compared in upper case: Windows reads environment names without regard to case, and
refusing `ld_preload` too costs nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = [
    "DENIED_NAMES",
    "DENIED_PREFIXES",
    "ENV_NAME",
    "PARAM_PREFIX",
    "denied",
    "env_problem",
    "scrubbed",
]

# Exact names (upper case), grouped by who reads them.
DENIED_NAMES: frozenset[str] = frozenset(
    {
        # POSIX sh, dash, bash, ksh, zsh: start-up files, traced prompts (PS4 is expanded, with
        # command substitution, before each traced line), options, word splitting, lookups.
        "ENV",
        "SHELLOPTS",
        "PS0",
        "PS1",
        "PS2",
        "PS3",
        "PS4",
        "PROMPT_COMMAND",
        "IFS",
        "CDPATH",
        "GLOBIGNORE",
        "EXECIGNORE",
        "POSIXLY_CORRECT",
        "INPUTRC",
        "HISTFILE",
        "FPATH",
        "ZDOTDIR",
        # glibc: modules and files it loads or writes on behalf of any program (its own list of
        # variables dropped for set-user-id programs, less TMPDIR and TZDIR).
        "GCONV_PATH",
        "GETCONF_DIR",
        "HOSTALIASES",
        "LOCALDOMAIN",
        "LOCPATH",
        "MALLOC_TRACE",
        "NIS_PATH",
        "NLSPATH",
        "RESOLV_HOST_CONF",
        "RES_OPTIONS",
        # Other interpreters a script may call: options and module paths that load code.
        "PERL5OPT",
        "PERL5LIB",
        "PERLLIB",
        "PERL5DB",
        "RUBYOPT",
        "RUBYLIB",
        "NODE_OPTIONS",
        "NODE_PATH",
        # PowerShell: modules load from PSModulePath when a command is first used.
        "PSMODULEPATH",
        "PSEXECUTIONPOLICYPREFERENCE",
        "__PSLOCKDOWNPOLICY",
        # Commands that common tools (systemctl, git, less, sudo) run on their own.
        "PAGER",
        "SYSTEMD_PAGER",
        "SYSTEMD_PAGERSECURE",
        "MANPAGER",
        "LESSOPEN",
        "LESSCLOSE",
        "EDITOR",
        "VISUAL",
        "SUDO_ASKPASS",
        "SSH_ASKPASS",
        "GIT_SSH",
        "GIT_SSH_COMMAND",
        "GIT_EXEC_PATH",
    }
)
# Prefixes (upper case): whole families where every member, present or future, starts code.
DENIED_PREFIXES: tuple[str, ...] = (
    "BASH",  # BASH_ENV, BASHOPTS, BASH_FUNC_name%% (exported functions), BASH_XTRACEFD...
    "PYTHON",  # PYTHONSTARTUP, PYTHONPATH, PYTHONHOME, PYTHONINSPECT, PYTHONWARNINGS...
    "LD_",  # LD_PRELOAD, LD_LIBRARY_PATH, LD_AUDIT... (the dynamic loader)
    "DYLD_",  # macOS's loader
    "DOTNET_",  # DOTNET_STARTUP_HOOKS loads an assembly into every .NET process (pwsh)
    "COMPLUS_",  # .NET runtime settings, profilers among them
    "COR_",  # COR_ENABLE_PROFILING + COR_PROFILER_PATH: a DLL in every .NET Framework process
    "CORECLR_",  # the same for .NET (Core)
    "POWERSHELL_",  # pwsh's own start-up settings
    "PSMODULE",  # PSModulePath and its relatives
)
# What a name a command sets may look like: portable, and no room for `BASH_FUNC_f%%`-style
# names or `=C:` Windows oddities.
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# Library script parameters reach the script under this prefix; only the server's check of a
# header's parameters may set such a name, so a script can trust what it reads there.
PARAM_PREFIX = "RMM_PARAM_"


def denied(name: str) -> bool:
    """Say whether `name` is an interpreter-startup or loader variable no command may set."""
    upper = name.upper()
    return upper in DENIED_NAMES or upper.startswith(DENIED_PREFIXES)


def env_problem(name: str, value: str) -> str | None:
    """Return why a command may not set `name` to `value`, or None when it may."""
    shown = repr(name) if len(name) <= 60 else repr(name[:59]) + "…"
    if not ENV_NAME.match(name):
        return (
            f"environment variable {shown}: a name is letters, digits and _ (not starting "
            "with a digit), at most 128 characters"
        )
    if denied(name):
        return (
            f"environment variable {shown} is read by an interpreter or the loader at start-up "
            "and can run code, so no command may set it (docs/scripts.md lists these); pass the "
            "value as a script parameter or argument"
        )
    if "\0" in value:
        return f"environment variable {shown}: the value holds a NUL byte; remove it"
    return None


def scrubbed(env: Mapping[str, str]) -> dict[str, str]:
    """Return `env` without the variables `denied()` names."""
    return {name: value for name, value in env.items() if not denied(name)}
