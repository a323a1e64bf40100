"""What a script's environment may hold: the one list of variables no command may set.

The class is "a variable some program a script may start reads to load code or configuration".
Interpreters and the dynamic loader read some at start-up and run code they name (`BASH_ENV`,
`ENV`, `PS4` with `SHELLOPTS=xtrace`, `PYTHONSTARTUP`, `LD_PRELOAD`, `JAVA_TOOL_OPTIONS`,
`NODE_OPTIONS`, `PERL5OPT`, `OPENSSL_CONF`, `GIT_CONFIG_*`, `GCONV_PATH`...), so whoever sets
one runs code as the agent (root or SYSTEM), whatever the script says. The server refuses a
command that sets one, the agent refuses it again, and the agent removes them from its own
environment before a script inherits it: a script's environment is the same however the agent
was started.

A second, smaller list (HOST_ONLY_*) names configuration a host's administrator legitimately
sets in the agent's own service environment (a proxy, a private CA bundle, HOME): a command may
not set them (a proxy or CA of the sender's choosing redirects what a script downloads and
trusts; another HOME brings another ~/.gitconfig), but a script keeps the host's own values.

Whole families are matched by prefix (every `GIT_*`, `JAVA_*`, `NODE_*`, `PERL*`, `RUBY*`,
`LUA_*`, `MALLOC_*`...), so a variable a future release of the program adds is covered too.
Names are compared in upper case: Windows reads environment names without regard to case, and
refusing `ld_preload` too costs nothing. docs/scripts.md gives the reasons for each family.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = [
    "DENIED_NAMES",
    "DENIED_PREFIXES",
    "ENV_NAME",
    "HOST_ONLY_NAMES",
    "HOST_ONLY_PREFIXES",
    "PARAM_PREFIX",
    "denied",
    "env_problem",
    "host_only",
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
        "GLIBC_TUNABLES",  # the loader's tunables (CVE-2023-4911 was a parser of them)
        # Other interpreters a script may call: start-up files, options and module paths that
        # load code (their whole families are prefixes below).
        "CLASSPATH",  # java
        "PHPRC",  # php: the php.ini to read (auto_prepend_file runs code)
        "PHP_INI_SCAN_DIR",
        "R_PROFILE",
        "R_PROFILE_USER",
        "R_ENVIRON",
        "R_ENVIRON_USER",
        "R_LIBS",
        "R_LIBS_USER",
        "TCLLIBPATH",
        "TCL_LIBRARY",
        "TK_LIBRARY",
        "GEM_HOME",  # ruby gems load from here
        "GEM_PATH",
        "BUNDLE_GEMFILE",
        "SSLKEYLOGFILE",  # writes every TLS session key of any program to the file it names
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
        "MANOPT",
        "BROWSER",
        "KRB5_CONFIG",  # Kerberos: krb5.conf can name plugins (code) to load
        "KRB5_KDC_PROFILE",
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
    "OPENSSL_",  # OPENSSL_CONF (loads engines and providers: code), OPENSSL_ENGINES, _MODULES
    "GIT_",  # GIT_CONFIG_COUNT/KEY_n/VALUE_n and GIT_CONFIG_PARAMETERS set core.fsmonitor,
    #          core.sshCommand, alias.*: code; GIT_SSH*, GIT_EXEC_PATH, GIT_ASKPASS, GIT_PAGER...
    "JAVA_",  # JAVA_TOOL_OPTIONS (-javaagent: code), JAVA_HOME (which java runs)
    "_JAVA_",  # _JAVA_OPTIONS
    "JDK_",  # JDK_JAVA_OPTIONS
    "NODE_",  # NODE_OPTIONS (--require: code), NODE_PATH, NODE_EXTRA_CA_CERTS...
    "PERL",  # PERL5OPT (-M: code), PERL5LIB, PERLLIB, PERL5DB, PERL_*
    "RUBY",  # RUBYOPT (-r: code), RUBYLIB, RUBY_*
    "LUA_",  # LUA_INIT (code), LUA_PATH, LUA_CPATH, LUA_INIT_5_4
    "MALLOC_",  # glibc's MALLOC_CHECK_, MALLOC_TRACE (writes a file), MALLOC_PERTURB_...
)
# Configuration a host's administrator sets in the agent's own environment for good reasons:
# refused when a command sets it, kept when the agent inherited it (`scrubbed` leaves them).
HOST_ONLY_NAMES: frozenset[str] = frozenset(
    {
        # Where a script's traffic goes: a proxy of the sender's choosing sees (and, with its
        # own CA, changes) what a script downloads and runs.
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "NO_PROXY",
        "FTP_PROXY",
        # Whom a script trusts.
        "REQUESTS_CA_BUNDLE",
        "WGETRC",  # wget's configuration file
        # Where per-user configuration is read from: another HOME brings another .gitconfig,
        # .curlrc, .wgetrc, pip.conf, .npmrc, .bashrc.
        "HOME",
        "USERPROFILE",
        "XDG_CONFIG_HOME",
        "XDG_CONFIG_DIRS",
        "PIP_CONFIG_FILE",
    }
)
HOST_ONLY_PREFIXES: tuple[str, ...] = (
    "SSL_CERT_",  # SSL_CERT_FILE, SSL_CERT_DIR: OpenSSL's trust store
    "CURL_",  # CURL_CA_BUNDLE, CURL_HOME (where .curlrc is read), CURL_SSL_BACKEND
    "PIP_",  # PIP_INDEX_URL, PIP_TRUSTED_HOST...: where packages (code) come from
    "NPM_CONFIG_",  # npm's registry, scripts and CA
)
# What a name a command sets may look like: portable, and no room for `BASH_FUNC_f%%`-style
# names or `=C:` Windows oddities.
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# Library script parameters reach the script under this prefix; only the server's check of a
# header's parameters may set such a name, so a script can trust what it reads there.
PARAM_PREFIX = "RMM_PARAM_"


def denied(name: str) -> bool:
    """Say whether `name` is an interpreter-startup or loader variable: no command may set it,
    and no script inherits it."""
    upper = name.upper()
    return upper in DENIED_NAMES or upper.startswith(DENIED_PREFIXES)


def host_only(name: str) -> bool:
    """Say whether `name` is configuration only the host may set (a proxy, a CA bundle, HOME):
    no command may set it, but a script keeps the agent's own value."""
    upper = name.upper()
    return upper in HOST_ONLY_NAMES or upper.startswith(HOST_ONLY_PREFIXES)


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
            f"environment variable {shown} is read by an interpreter or the loader at start-up, "
            "or by a program a script may start, to load code or configuration, so no command "
            "may set it (docs/scripts.md lists these); pass the value as a script parameter or "
            "argument"
        )
    if host_only(name):
        return (
            f"environment variable {shown} changes where a script's programs connect, whom they "
            "trust or which configuration they read, so no command may set it; the host's own "
            "value (the agent's service environment) is what scripts get (docs/scripts.md)"
        )
    if "\0" in value:
        return f"environment variable {shown}: the value holds a NUL byte; remove it"
    return None


def scrubbed(env: Mapping[str, str]) -> dict[str, str]:
    """Return `env` without the variables `denied()` names."""
    return {name: value for name, value in env.items() if not denied(name)}
