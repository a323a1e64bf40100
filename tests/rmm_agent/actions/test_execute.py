"""execute(): the registry, the host's vetoes, timestamps; describe() lines; collect_now."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from rmm_agent.actions import ACTIONS, INTERACTIVE, execute, refusal
from rmm_agent.config import ACTION_NAMES, AgentConfig
from rmm_common.command_summary import describe
from rmm_proto import commands_pb2

from .helpers import Agent


def test_every_action_of_the_contract_has_a_module() -> None:
    assert set(ACTIONS) == set(ACTION_NAMES)
    assert (
        frozenset(
            {
                "run_script",
                "kill_process",
                "service_control",
                "reboot",
                "push_file",
                "pull_file",
                "driver_package",
            }
        )
        == INTERACTIVE
    )


def test_collect_now_returns_the_queued_reports_sequence(tmp_path: Path) -> None:
    agent = Agent(sequence=41)
    command = commands_pb2.Command(id="c-1", collect_now=commands_pb2.CollectNow())
    before = time.time()
    result = execute(command, agent.context(command, state_dir=tmp_path))
    assert result.status == commands_pb2.COMMAND_SUCCEEDED
    assert result.collect.sequence == 42
    assert result.command_id == "c-1"
    assert before <= result.started_at <= result.finished_at <= time.time()


def test_an_unexpected_error_becomes_a_failed_result(tmp_path: Path) -> None:
    def broken() -> int:
        raise RuntimeError("the report queue is closed")

    command = commands_pb2.Command(id="c-2", collect_now=commands_pb2.CollectNow())
    context = Agent().context(command, state_dir=tmp_path)
    context.collect_now = broken
    result = execute(command, context)
    assert result.status == commands_pb2.COMMAND_FAILED
    assert result.error == (
        "collect_now failed unexpectedly in the agent: RuntimeError: the report queue is closed"
    )
    assert result.command_id == "c-2" and result.finished_at >= result.started_at > 0


def test_a_command_without_an_action_is_refused(tmp_path: Path) -> None:
    command = commands_pb2.Command(id="c-3")
    result = execute(command, Agent().context(command, state_dir=tmp_path))
    assert result.status == commands_pb2.COMMAND_REFUSED
    assert result.error.startswith("the command carries no action this agent knows")
    assert describe(command) == "no action this agent knows"


def test_forbidden_actions_are_refused_before_anything_runs(tmp_path: Path) -> None:
    config = AgentConfig(forbid_actions=["reboot", "collect_now"])
    agent = Agent()
    for command in (
        commands_pb2.Command(id="r", reboot=commands_pb2.Reboot()),
        commands_pb2.Command(id="c", collect_now=commands_pb2.CollectNow()),
    ):
        result = execute(command, agent.context(command, state_dir=tmp_path, config=config))
        action = command.WhichOneof("action")
        assert result.status == commands_pb2.COMMAND_REFUSED
        assert result.error == (
            f"this host's agent configuration forbids {action} (forbid_actions)"
        )
        assert result.command_id == command.id and result.started_at > 0
    assert list(tmp_path.iterdir()) == [], "no pending reboot was recorded"
    assert agent.sequence == 41, "no report was queued"


SCRIPT = commands_pb2.RunScript(shell="bash", body="echo ran")
LIBRARY_SCRIPT = commands_pb2.RunScript(shell="bash", body="echo ran", library_name="say-ran")


@pytest.mark.parametrize(
    ("scripts", "request_", "error"),
    [
        ("none", SCRIPT, "this host's agent configuration forbids scripts (scripts: none)"),
        ("none", LIBRARY_SCRIPT, "this host's agent configuration forbids scripts (scripts: none)"),
        (
            "library",
            SCRIPT,
            "this host's agent configuration allows only the server's library scripts "
            "(scripts: library); this ad-hoc script was refused",
        ),
        ("library", LIBRARY_SCRIPT, None),
        (
            "library",
            commands_pb2.RunScript(
                shell="bash",
                body="echo ran",
                library_name="say-ran",
                env={"RMM_PARAM_WHO": "x", "PATH": "/tmp/evil:/usr/bin"},
                args=["-x"],
                working_directory="/tmp",
            ),
            "this host's agent configuration allows only the server's library scripts as their "
            "headers declare them (scripts: library); this run also sets env PATH, a "
            "working directory and was refused",
        ),
        (
            "library",
            commands_pb2.RunScript(
                shell="bash",
                body="echo ran",
                library_name="say-ran",
                env={"RMM_PARAM_WHO": "x"},
                args=["checked", "by", "the", "script"],
            ),
            None,
        ),
        ("any", SCRIPT, None),
    ],
)
def test_script_policy(
    tmp_path: Path, scripts: str, request_: commands_pb2.RunScript, error: str | None
) -> None:
    command = commands_pb2.Command(id="s", run_script=request_)
    config = AgentConfig(scripts=scripts)
    assert refusal(command, config) == error
    result = execute(command, Agent().context(command, state_dir=tmp_path, config=config))
    if error is None:
        assert result.status == commands_pb2.COMMAND_SUCCEEDED, result.error
        assert result.script.stdout == "ran\n"
    else:
        assert (result.status, result.error) == (commands_pb2.COMMAND_REFUSED, error)
        assert not result.HasField("script")


@pytest.mark.parametrize(
    ("action", "line"),
    [
        (
            {
                "run_script": commands_pb2.RunScript(
                    shell="bash", library_name="disk-usage", args=["-h"]
                )
            },
            "run script 'disk-usage' (bash) with args ['-h']",
        ),
        (
            {
                "run_script": commands_pb2.RunScript(
                    shell="bash",
                    library_name="disk-usage",
                    params={"path": "/var"},
                    env={"RMM_PARAM_PATH": "/var", "MODE": "x y"},
                    working_directory="/srv",
                )
            },
            "run script 'disk-usage' (bash) with params 'path=/var' with env 'MODE=x y' in '/srv'",
        ),
        (
            {"run_script": commands_pb2.RunScript(shell="powershell", body="Get-Service\nexit 0")},
            "run ad-hoc powershell script 'Get-Service…'",
        ),
        (
            {"run_script": commands_pb2.RunScript(shell="sh", body="\n  df -h  \n")},
            "run ad-hoc sh script 'df -h'",
        ),
        (
            {
                "run_script": commands_pb2.RunScript(
                    shell="python", body="print('" + "x" * 80 + "')"
                )
            },
            "run ad-hoc python script \"print('" + "x" * 53 + '…"',
        ),
        ({"list_processes": commands_pb2.ListProcesses()}, "list processes"),
        (
            {"list_processes": commands_pb2.ListProcesses(name="java", limit=10)},
            "list processes named like 'java' (top 10 by CPU)",
        ),
        ({"kill_process": commands_pb2.KillProcess(pid=4321)}, "kill process 4321"),
        (
            {"kill_process": commands_pb2.KillProcess(pid=4321, name="java", force=True)},
            "kill process 4321 (java) at once (force)",
        ),
        (
            {"kill_process": commands_pb2.KillProcess(name="notepad.exe")},
            "kill every process named 'notepad.exe'",
        ),
        ({"list_services": commands_pb2.ListServices()}, "list services"),
        (
            {"list_services": commands_pb2.ListServices(name="ssh")},
            "list services named like 'ssh'",
        ),
        (
            {
                "service_control": commands_pb2.ServiceControl(
                    name="nginx", operation=commands_pb2.SERVICE_RESTART
                )
            },
            "restart service nginx",
        ),
        (
            {
                "service_control": commands_pb2.ServiceControl(
                    name="nginx", operation=commands_pb2.SERVICE_STOP
                )
            },
            "stop service nginx",
        ),
        (
            {
                "service_control": commands_pb2.ServiceControl(
                    name="evil\nYes", operation=commands_pb2.SERVICE_START
                )
            },
            "start service 'evil\\nYes'",
        ),
        ({"reboot": commands_pb2.Reboot()}, "reboot now"),
        (
            {"reboot": commands_pb2.Reboot(delay_seconds=60, reason="patch night")},
            "reboot in 60s: patch night",
        ),
        (
            {"push_file": commands_pb2.PushFile(path="/etc/motd", data=b"x" * 120)},
            "push file /etc/motd (120 bytes)",
        ),
        (
            {"push_file": commands_pb2.PushFile(path="/etc/motd", data=b"x", overwrite=True)},
            "push file /etc/motd (1 bytes, replacing an existing file)",
        ),
        ({"pull_file": commands_pb2.PullFile(path="/var/log/syslog")}, "pull file /var/log/syslog"),
        ({"collect_now": commands_pb2.CollectNow()}, "collect and send a report now"),
        (
            {
                "install_updates": commands_pb2.InstallUpdates(
                    update_ids=[f"apt:pkg{n}" for n in range(7)], backend="apt"
                )
            },
            "install 7 update(s) with apt: apt:pkg0, apt:pkg1, apt:pkg2, apt:pkg3, apt:pkg4 "
            "and 2 more",
        ),
    ],
)
def test_describe(action: dict[str, object], line: str) -> None:
    assert describe(commands_pb2.Command(id="d", **action)) == line  # type: ignore[arg-type]


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_every_registered_action_has_a_line(action: str) -> None:
    # The command channel describes a command before it runs it: an action without a line
    # would fail there, before the registry is ever reached.
    command = commands_pb2.Command(id="d")
    getattr(command, action).SetInParent()
    line = describe(command)
    assert line and line != "no action this agent knows"


def test_describe_escapes_what_could_forge_a_line() -> None:
    command = commands_pb2.Command(
        run_script=commands_pb2.RunScript(
            shell="bash", library_name="ok'\nApprove? [y]", args=["a" * 300]
        )
    )
    line = describe(command)
    assert "\n" not in line
    assert line.startswith("run script \"ok'\\nApprove? [y]\" (bash) with args ['aaa")
    assert line.endswith("…]")
    assert len(line) < 300
