"""The one list of variables no command may set, and the scrub of an inherited environment."""

from __future__ import annotations

import pytest

from rmm_common.script_env import denied, env_problem, host_only, scrubbed

# The list and its siblings: every interpreter and the loader, in any case; and the
# review's second list: programs a script may start that load code or configuration.
DENIED = [
    "BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "PS4", "PS1", "PROMPT_COMMAND", "IFS", "CDPATH",
    "BASH_FUNC_echo%%", "BASH_XTRACEFD", "PYTHONSTARTUP", "PYTHONPATH", "PYTHONHOME",
    "PYTHONINSPECT", "PYTHONWARNINGS", "PYTHONBREAKPOINT", "PYTHONUSERBASE", "LD_PRELOAD",
    "LD_LIBRARY_PATH", "LD_AUDIT", "DYLD_INSERT_LIBRARIES", "GCONV_PATH", "PERL5OPT", "RUBYOPT",
    "NODE_OPTIONS", "PSModulePath", "DOTNET_STARTUP_HOOKS", "COMPlus_EnableDiagnostics",
    "COR_PROFILER_PATH", "CORECLR_PROFILER_PATH", "POWERSHELL_UPDATECHECK", "PAGER",
    "SYSTEMD_PAGER", "LESSOPEN", "GIT_SSH_COMMAND", "bash_env", "ld_preload", "psmodulepath",
    "OPENSSL_CONF", "OPENSSL_ENGINES", "OPENSSL_MODULES", "GIT_CONFIG_COUNT", "GIT_CONFIG_KEY_0",
    "GIT_CONFIG_VALUE_0", "GIT_CONFIG_PARAMETERS", "GIT_CONFIG_GLOBAL", "GIT_SSH", "GIT_ASKPASS",
    "GIT_EXEC_PATH", "GIT_PAGER", "GIT_EDITOR", "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS",
    "JDK_JAVA_OPTIONS", "JAVA_HOME", "CLASSPATH", "NODE_PATH", "PERL5LIB", "PERLLIB", "PERL5DB",
    "RUBYLIB", "LUA_INIT", "LUA_INIT_5_4", "LUA_PATH", "LUA_CPATH", "TCLLIBPATH", "LOCPATH",
    "NLSPATH", "HOSTALIASES", "RESOLV_HOST_CONF", "MALLOC_CHECK_", "MALLOC_TRACE",
    "GLIBC_TUNABLES", "PHPRC", "PHP_INI_SCAN_DIR", "R_PROFILE_USER", "GEM_PATH", "SSLKEYLOGFILE",
    "KRB5_CONFIG", "SUDO_ASKPASS", "openssl_conf", "git_config_count",
]  # fmt: skip
# Configuration the host sets for good reasons: never from a command, kept when inherited.
HOST_ONLY = [
    "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "NO_PROXY",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_CA_BUNDLE", "CURL_HOME", "REQUESTS_CA_BUNDLE",
    "PIP_INDEX_URL", "PIP_CONFIG_FILE", "NPM_CONFIG_REGISTRY", "HOME", "USERPROFILE",
    "XDG_CONFIG_HOME", "WGETRC",
]  # fmt: skip
# TMPDIR names where temporary files go: neither code nor configuration, a script may use it.
ALLOWED = ["PATH", "LANG", "TZ", "TMPDIR", "RMM_GREETING", "MODE", "ENVIRONMENT", "PS", "GITHUB"]


@pytest.mark.parametrize("name", DENIED)
def test_startup_and_loader_variables_are_denied_in_any_case(name: str) -> None:
    assert denied(name)
    problem = env_problem(name, "x")
    assert problem is not None
    if "%" not in name:
        assert "is read by an interpreter or the loader at start-up" in problem


@pytest.mark.parametrize("name", HOST_ONLY)
def test_host_configuration_is_refused_from_a_command_and_kept_when_inherited(name: str) -> None:
    assert host_only(name) and not denied(name)
    problem = env_problem(name, "x")
    assert problem is not None and "changes where a script's programs connect" in problem
    assert scrubbed({name: "x", "BASH_ENV": "y"}) == {name: "x"}


@pytest.mark.parametrize("name", ALLOWED)
def test_ordinary_variables_may_be_set(name: str) -> None:
    assert not denied(name) and not host_only(name) and env_problem(name, "value") is None


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
