"""run_script: real bash, sh and Python scripts in real processes."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from rmm_agent.actions import execute, run_script
from rmm_agent.actions.base import ActionFailed
from rmm_agent.config import AgentConfig
from rmm_common.script_env import denied
from rmm_proto import commands_pb2

from .helpers import Agent, gone, wait_until

pytestmark = pytest.mark.skipif(sys.platform.startswith("win"), reason="POSIX shells")


def script(
    shell: str, body: str, tmp_path: Path, timeout: float = 30.0, **fields: Any
) -> commands_pb2.CommandResult:
    command = commands_pb2.Command(
        id="script-1", run_script=commands_pb2.RunScript(shell=shell, body=body, **fields)
    )
    return execute(command, Agent().context(command, state_dir=tmp_path, timeout=timeout))


def test_bash_script_gets_args_env_and_working_directory(tmp_path: Path) -> None:
    body = 'echo "args:$1,$2"\necho "env:$RMM_GREETING"\npwd\necho oops >&2\n'
    result = script(
        "bash",
        body,
        tmp_path,
        args=["one", "two words"],
        env={"RMM_GREETING": "hello"},
        working_directory=str(tmp_path),
    )
    assert result.status == commands_pb2.COMMAND_SUCCEEDED, result.error
    assert result.script.exit_code == 0
    assert result.script.stdout == f"args:one,two words\nenv:hello\n{tmp_path}\n"
    assert result.script.stderr == "oops\n"
    assert not result.script.timed_out
    assert (result.command_id, result.error) == ("script-1", "")


def test_python_script_runs_in_a_private_directory_removed_afterwards(tmp_path: Path) -> None:
    body = (
        "import os, stat, sys\n"
        "print(os.getcwd())\n"
        "print(oct(stat.S_IMODE(os.stat('.').st_mode)))\n"
        "print(sys.argv[1:], os.environ['RMM_X'], os.environ['PATH'] == sys.argv[-1])\n"
    )
    result = script("python", body, tmp_path, args=["a", os.environ["PATH"]], env={"RMM_X": "1"})
    assert result.status == commands_pb2.COMMAND_SUCCEEDED, result.script.stderr
    cwd, mode, rest = result.script.stdout.splitlines()
    assert Path(cwd).name.startswith("rmm-script-")
    assert mode == "0o700"
    assert rest == f"['a', {os.environ['PATH']!r}] 1 True"
    assert not Path(cwd).exists()


def test_sh_script_and_non_zero_exit(tmp_path: Path) -> None:
    result = script("sh", "echo partial; exit 3", tmp_path)
    assert result.status == commands_pb2.COMMAND_FAILED
    assert result.error == "exit code 3"
    assert result.script.exit_code == 3
    assert result.script.stdout == "partial\n"


def test_a_signal_is_a_negative_exit_code(tmp_path: Path) -> None:
    result = script("bash", "kill -TERM $$", tmp_path)
    assert result.status == commands_pb2.COMMAND_FAILED
    assert result.script.exit_code == -15
    assert result.error == "ended by signal 15 (SIGTERM)"


def test_invalid_utf8_output_becomes_valid_text(tmp_path: Path) -> None:
    body = (
        "import sys\n"
        "sys.stdout.buffer.write(b'ok \\xff\\xfe \\xc3')\n"
        "sys.stderr.buffer.write(b'\\x80')\n"
    )
    result = script("python", body, tmp_path)
    assert result.script.stdout == "ok \ufffd\ufffd \ufffd"
    assert result.script.stderr == "\ufffd"
    # A string field holding invalid UTF-8 would fail here.
    parsed = commands_pb2.CommandResult.FromString(result.SerializeToString())
    assert parsed.script.stdout == result.script.stdout


def test_output_over_the_limit_is_truncated_and_the_child_still_ends(tmp_path: Path) -> None:
    body = (
        "import sys\n"
        "for _ in range(160):\n"
        "    sys.stdout.write('x' * 65536)\n"  # 10 MiB: far more than a pipe holds
        "sys.stdout.flush()\n"
        "sys.stderr.write('e' * 5000)\n"
    )
    started = time.monotonic()
    result = script("python", body, tmp_path, timeout=60, output_limit_bytes=1000)
    assert result.status == commands_pb2.COMMAND_SUCCEEDED, result.error
    assert time.monotonic() - started < 30
    assert result.script.stdout == "x" * 1000
    assert result.script.stderr == "e" * 1000
    assert result.script.stdout_truncated and result.script.stderr_truncated


def test_the_configured_output_limit_applies_when_the_request_gives_none(tmp_path: Path) -> None:
    command = commands_pb2.Command(
        id="s", run_script=commands_pb2.RunScript(shell="bash", body="printf '%0200d' 0")
    )
    config = AgentConfig(script_output_limit=50)
    result = execute(command, Agent().context(command, state_dir=tmp_path, config=config))
    assert result.script.stdout == "0" * 50
    assert result.script.stdout_truncated
    assert not result.script.stderr_truncated


def test_timeout_kills_the_script_and_its_children(tmp_path: Path) -> None:
    # One grandchild stays in the script's process group; the other leaves it (setsid).
    body = "sleep 300 &\necho $!\nsetsid sleep 300 &\necho $!\nwait\n"
    started = time.monotonic()
    result = script("bash", body, tmp_path, timeout=1.5)
    elapsed = time.monotonic() - started
    assert result.status == commands_pb2.COMMAND_TIMED_OUT
    assert result.error.startswith("timed out after 1.5s; the script and its child processes")
    assert result.script.timed_out
    assert result.script.exit_code == -9
    assert elapsed < 1.5 + run_script.PIPE_GRACE_SECONDS + 2
    pids = [int(line) for line in result.script.stdout.split()]
    assert len(pids) == 2
    for pid in pids:
        wait_until(lambda pid=pid: gone(pid), 5, f"grandchild {pid} to be killed")


def test_a_process_left_running_does_not_hold_the_result(tmp_path: Path) -> None:
    started = time.monotonic()
    result = script("bash", "sleep 30 &\necho $!\necho done", tmp_path)
    pid = int(result.script.stdout.split()[0])
    try:
        assert result.status == commands_pb2.COMMAND_SUCCEEDED
        assert result.script.stdout.endswith("done\n")
        assert time.monotonic() - started < run_script.PIPE_GRACE_SECONDS + 3
        assert not gone(pid), "a normal exit leaves what the script started running"
    finally:
        os.kill(pid, 9)


def test_unknown_and_missing_shells_fail_naming_them(tmp_path: Path) -> None:
    result = script("fish", "echo hi", tmp_path)
    assert result.status == commands_pb2.COMMAND_FAILED
    assert result.error == "unknown shell fish; this agent runs bash, sh, powershell, python"
    with pytest.raises(ActionFailed, match="shell bash is not installed on this host"):
        run_script.shell_command("bash", Path("/t/s.sh"), platform="linux", which=lambda _: None)
    with pytest.raises(ActionFailed, match=r"shell powershell needs pwsh \(PowerShell 7\)"):
        run_script.shell_command("powershell", Path("/t/s.ps1"), which=lambda _: None)
    with pytest.raises(ActionFailed, match="shell sh does not run on Windows"):
        run_script.shell_command("sh", Path("C:/t/s.sh"), platform="win32")


def test_bad_environment_and_working_directory_are_refused(tmp_path: Path) -> None:
    result = script("bash", "true", tmp_path, env={"A=B": "x"})
    assert result.status == commands_pb2.COMMAND_REFUSED
    assert result.error.startswith("environment variable 'A=B': a name is letters, digits and _")
    missing = tmp_path / "nowhere"
    result = script("bash", "true", tmp_path, working_directory=str(missing))
    assert result.error == f"working directory {missing} does not exist or is not a directory"


def test_command_lines_per_shell_and_os() -> None:
    found = {"bash": "/usr/bin/bash", "sh": "/bin/sh", "pwsh": "/opt/microsoft/powershell/pwsh"}
    which = found.get
    path = Path("/tmp/rmm-script-x/script")
    assert run_script.shell_command("bash", path, platform="linux", which=which) == [
        "/usr/bin/bash",
        str(path),
    ]
    assert run_script.shell_command("sh", path, platform="darwin", which=which) == [
        "/bin/sh",
        str(path),
    ]
    assert run_script.shell_command("python", path, python="/opt/rmm/bin/python3") == [
        "/opt/rmm/bin/python3",
        "-E",
        "-s",
        str(path),
    ]
    assert run_script.shell_command("powershell", path, platform="linux", which=which) == [
        "/opt/microsoft/powershell/pwsh",
        "-NoProfile",
        "-NonInteractive",
        "-File",
        str(path),
    ]
    windows = Path("C:/Windows/Temp/rmm-script-x/script.ps1")
    assert run_script.shell_command("powershell", windows, platform="win32", which=which) == [
        "powershell.exe",
        "-NoProfile",
        "-NonInteractive",
        "-ExecutionPolicy",
        "Bypass",
        "-File",
        str(windows),
    ]


def test_process_group_options_per_os() -> None:
    assert run_script.popen_options("linux") == {"start_new_session": True}
    assert run_script.popen_options("darwin") == {"start_new_session": True}
    # CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW, as subprocess defines them on Windows.
    assert run_script.popen_options("win32") == {"creationflags": 0x00000200 | 0x08000000}


def test_powershell_scripts_carry_a_byte_order_mark() -> None:
    assert run_script.script_bytes("powershell", "Write-Output 'é'") == (
        b"\xef\xbb\xbfWrite-Output '\xc3\xa9'"
    )
    assert run_script.script_bytes("bash", "echo é") == b"echo \xc3\xa9"


def test_windows_exit_codes_fit_the_signed_field() -> None:
    assert run_script.exit_code(0xC0000005) == -1073741819  # STATUS_ACCESS_VIOLATION
    assert run_script.exit_code(3) == 3
    assert run_script.exit_code(-9) == -9
    assert run_script.describe_exit(-1073741819, platform="win32") == "exit code -1073741819"
    assert run_script.describe_exit(-9, platform="linux") == "ended by signal 9 (SIGKILL)"


def test_the_script_file_is_written_as_sent(tmp_path: Path) -> None:
    body = '#!/bin/sh\n# é ünïcode\ncat "$0" | base64\n'
    result = script("sh", body, tmp_path)
    assert base64.b64decode(result.script.stdout).decode("utf-8") == body


def test_a_request_cannot_raise_the_output_limit_past_the_cap(tmp_path: Path) -> None:
    body = f"import sys; sys.stdout.write('z' * {run_script.MAX_OUTPUT_LIMIT + 10})"
    result = script("python", body, tmp_path, output_limit_bytes=2**32 - 1)
    assert len(result.script.stdout) == run_script.MAX_OUTPUT_LIMIT
    assert result.script.stdout_truncated


# Each runs code that leaves `marker` behind if the interpreter or the loader obeys it; `{dir}`
# is a folder holding evil.sh, sitecustomize.py and usercustomize.py, which do the same.
ATTACKS: list[tuple[str, str, dict[str, str]]] = [
    ("bash", "echo ran", {"BASH_ENV": "$(touch {marker})"}),
    ("bash", "echo ran", {"BASH_ENV": "{dir}/evil.sh"}),
    ("bash", "echo ran", {"SHELLOPTS": "xtrace", "PS4": "$(touch {marker})"}),
    (
        "bash",
        "echo ran",
        {"BASHOPTS": "xpg_echo", "SHELLOPTS": "xtrace:posix", "ENV": "{dir}/evil.sh"},
    ),
    ("bash", "echo ran", {"BASH_FUNC_echo%%": "() {{ touch {marker}; }}"}),
    ("sh", "set -x; echo ran", {"PS4": "$(touch {marker})"}),
    ("sh", "echo ran", {"ENV": "{dir}/evil.sh"}),
    ("python", "print('ran')", {"PYTHONPATH": "{dir}"}),
    ("python", "print('ran')", {"PYTHONSTARTUP": "{dir}/sitecustomize.py", "PYTHONINSPECT": "1"}),
    ("python", "print('ran')", {"PYTHONHOME": "{dir}"}),
    ("python", "print('ran')", {"PYTHONWARNINGS": "error::sitecustomize.Evil"}),
    ("python", "print('ran')", {"PYTHONUSERBASE": "{dir}"}),
    ("bash", "echo ran", {"LD_PRELOAD": "{dir}/evil.so"}),
    ("bash", "echo ran", {"LD_LIBRARY_PATH": "{dir}", "LD_AUDIT": "{dir}/evil.so"}),
    ("bash", "echo ran", {"IFS": "e"}),
    ("bash", "echo ran", {"ld_preload": "{dir}/evil.so"}),
]


def _evil_dir(tmp_path: Path) -> tuple[Path, Path]:
    """Return (folder of start-up files that touch the marker, the marker's path)."""
    evil = tmp_path / "evil"
    evil.mkdir(exist_ok=True)
    marker = tmp_path / "pwned"
    (evil / "evil.sh").write_text(f"touch {marker}\n")
    for module in ("sitecustomize.py", "usercustomize.py"):
        (evil / module).write_text(
            f"open({str(marker)!r}, 'w').close()\nclass Evil(Warning): pass\n"
        )
    return evil, marker


def _filled(env: dict[str, str], evil: Path, marker: Path) -> dict[str, str]:
    return {k: v.format(dir=evil, marker=marker) for k, v in env.items()}


@pytest.mark.parametrize(("shell", "body", "env"), ATTACKS)
def test_a_command_setting_a_startup_variable_is_refused_and_runs_nothing(
    tmp_path: Path, shell: str, body: str, env: dict[str, str]
) -> None:
    evil, marker = _evil_dir(tmp_path)
    result = script(shell, f"{body}\n", tmp_path, env={"RMM_OK": "1", **_filled(env, evil, marker)})
    assert result.status == commands_pb2.COMMAND_REFUSED, result
    assert not result.HasField("script")  # refused before anything started
    name = next(iter(env))
    assert f"environment variable {name!r}" in result.error
    assert not marker.exists()


@pytest.mark.parametrize(("shell", "body", "env"), ATTACKS)
def test_startup_variables_in_the_agents_own_environment_never_reach_a_script(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shell: str, body: str, env: dict[str, str]
) -> None:
    evil, marker = _evil_dir(tmp_path)
    filled = _filled(env, evil, marker)
    for name, value in filled.items():
        monkeypatch.setenv(name, value)  # as if the agent's unit or shell had set them
    result = script(shell, f"{body}\n", tmp_path, env={"RMM_OK": "1"})
    assert result.status == commands_pb2.COMMAND_SUCCEEDED, result
    assert result.script.stdout == "ran\n"
    # The loader's complaint about a preload it could not find would be here; `set -x` traces.
    assert result.script.stderr in ("", "+ echo ran\n"), result.script.stderr
    assert not marker.exists()


def test_a_scripts_environment_lacks_every_denied_name_and_keeps_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("BASH_ENV", "PYTHONPATH", "LD_PRELOAD", "PSModulePath", "DOTNET_STARTUP_HOOKS"):
        monkeypatch.setenv(name, "/nowhere")
    monkeypatch.setenv("RMM_KEEP", "kept")
    body = "import os, json\nprint(json.dumps(sorted(os.environ)))\n"
    result = script("python", body, tmp_path, env={"RMM_ALSO": "1"})
    assert result.status == commands_pb2.COMMAND_SUCCEEDED, result.error
    names = set(json.loads(result.script.stdout))
    assert {"RMM_KEEP", "RMM_ALSO", "PATH"} <= names
    assert not {n for n in names if denied(n)}, names


# Programs a script may start that load code named by their own variables: each body is an
# innocent script, each environment the attack ({dir} is a private folder, {marker} the file
# the code would leave behind). Skipped where the program is not installed.
PROGRAM_ATTACKS: list[tuple[str, str, dict[str, str]]] = [
    (
        "git",
        "git init -q repo && git -C repo status >/dev/null 2>&1; echo ran",
        {
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "core.fsmonitor",
            "GIT_CONFIG_VALUE_0": "touch {marker}; false",
        },
    ),
    (
        "git",
        "git init -q repo && git -C repo status >/dev/null 2>&1; echo ran",
        {"GIT_CONFIG_PARAMETERS": "'core.fsmonitor'='touch {marker}; false'"},
    ),
    ("perl", "perl -e 1; echo ran", {"PERL5OPT": "-Mevil", "PERL5LIB": "{dir}"}),
    ("node", "node -e 0; echo ran", {"NODE_OPTIONS": "--require {dir}/evil.js"}),
]


def _program_evil_dir(tmp_path: Path) -> tuple[Path, Path]:
    evil, marker = _evil_dir(tmp_path)
    (evil / "evil.pm").write_text(f'system("touch {marker}"); 1;\n')
    (evil / "evil.js").write_text(f'require("fs").writeFileSync({json.dumps(str(marker))}, "")\n')
    return evil, marker


@pytest.mark.parametrize(("program", "body", "env"), PROGRAM_ATTACKS)
def test_a_program_config_variable_is_refused_and_never_inherited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, program: str, body: str, env: dict[str, str]
) -> None:
    if shutil.which(program) is None:
        pytest.skip(f"{program} is not installed")
    evil, marker = _program_evil_dir(tmp_path)
    filled = _filled(env, evil, marker)
    # The attack works on this host, so the checks below show something.
    attacked = subprocess.run(
        ["bash", "-c", body], env={**os.environ, **filled}, cwd=tmp_path, capture_output=True
    )
    assert attacked.returncode == 0 and marker.exists(), attacked.stderr
    marker.unlink()
    # Sent with a command: refused before anything runs.
    result = script("bash", f"{body}\n", tmp_path, env=filled)
    assert result.status == commands_pb2.COMMAND_REFUSED, result
    assert "environment variable" in result.error and not marker.exists()
    # In the agent's own environment: dropped, the script runs clean.
    for name, value in filled.items():
        monkeypatch.setenv(name, value)
    result = script("bash", f"{body}\n", tmp_path)
    assert result.status == commands_pb2.COMMAND_SUCCEEDED, result
    assert result.script.stdout == "ran\n" and not marker.exists()


def test_host_configuration_is_refused_from_a_command_but_inherited_from_the_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "SSL_CERT_FILE", "CURL_CA_BUNDLE", "HOME"):
        result = script("bash", "echo ran\n", tmp_path, env={name: "/x"})
        assert result.status == commands_pb2.COMMAND_REFUSED, name
        assert f"environment variable {name!r} changes where" in result.error
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.msp.example:3128")
    monkeypatch.setenv("SSL_CERT_FILE", "/etc/ssl/private-ca.pem")
    body = 'echo "$HTTPS_PROXY $SSL_CERT_FILE"\n'
    result = script("bash", body, tmp_path, env={"TMPDIR": str(tmp_path)})
    assert result.status == commands_pb2.COMMAND_SUCCEEDED, result
    assert result.script.stdout == "http://proxy.msp.example:3128 /etc/ssl/private-ca.pem\n"
