"""The one list of variables no command may set, and the scrub of an inherited environment."""

from __future__ import annotations

import pytest

from rmm_common.script_env import denied, env_problem, scrubbed

# The list and its siblings: every interpreter and the loader, in any case.
DENIED = [
    "BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "PS4", "PS1", "PROMPT_COMMAND", "IFS", "CDPATH",
    "BASH_FUNC_echo%%", "BASH_XTRACEFD", "PYTHONSTARTUP", "PYTHONPATH", "PYTHONHOME",
    "PYTHONINSPECT", "PYTHONWARNINGS", "PYTHONBREAKPOINT", "PYTHONUSERBASE", "LD_PRELOAD",
    "LD_LIBRARY_PATH", "LD_AUDIT", "DYLD_INSERT_LIBRARIES", "GCONV_PATH", "PERL5OPT", "RUBYOPT",
    "NODE_OPTIONS", "PSModulePath", "DOTNET_STARTUP_HOOKS", "COMPlus_EnableDiagnostics",
    "COR_PROFILER_PATH", "CORECLR_PROFILER_PATH", "POWERSHELL_UPDATECHECK", "PAGER",
    "SYSTEMD_PAGER", "LESSOPEN", "GIT_SSH_COMMAND", "bash_env", "ld_preload", "psmodulepath",
]  # fmt: skip
ALLOWED = ["PATH", "HOME", "LANG", "TZ", "TMPDIR", "RMM_GREETING", "MODE", "ENVIRONMENT", "PS"]


@pytest.mark.parametrize("name", DENIED)
def test_startup_and_loader_variables_are_denied_in_any_case(name: str) -> None:
    assert denied(name)
    problem = env_problem(name, "x")
    assert problem is not None
    if "%" not in name:
        assert "is read by an interpreter or the loader at start-up" in problem


@pytest.mark.parametrize("name", ALLOWED)
def test_ordinary_variables_may_be_set(name: str) -> None:
    assert not denied(name) and env_problem(name, "value") is None


@pytest.mark.parametrize("name", ["", "A=B", "1X", "A B", "A-B", "A\0", "=C:", "X" * 129])
def test_odd_names_are_refused(name: str) -> None:
    problem = env_problem(name, "x")
    assert problem is not None and "a name is letters, digits and _" in problem


def test_a_nul_in_a_value_is_refused() -> None:
    assert env_problem("A", "a\0b") == (
        "environment variable 'A': the value holds a NUL byte; remove it"
    )


def test_scrubbed_keeps_all_but_the_denied() -> None:
    env = {"PATH": "/bin", "BASH_ENV": "/x", "LD_PRELOAD": "/y", "ProgramFiles(x86)": "C:\\P"}
    assert scrubbed(env) == {"PATH": "/bin", "ProgramFiles(x86)": "C:\\P"}
