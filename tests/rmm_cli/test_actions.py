"""services, processes, reboot, files and commands in-process against a fake operator API."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from rmm_cli.actions import (
    MAX_FILE_BYTES,
    parse_mode,
    remote_basename,
    safe_name,
    save_pulled,
)
from rmm_cli.client import CliError
from rmm_cli.targets import Outcome, Run
from rmm_proto import commands_pb2, operator_pb2
from tests.rmm_cli.fakes import Fake, S, events, info, install, invoke


def result(**kwargs: object) -> commands_pb2.CommandResult:
    return commands_pb2.CommandResult(**kwargs)  # type: ignore[arg-type]


def processes(*names: str) -> commands_pb2.CommandResult:
    listed = [
        commands_pb2.ProcessInfo(pid=100 + n, name=name, user="root", cpu_ratio=n / 10)
        for n, name in enumerate(names)
    ]
    return result(processes=commands_pb2.ProcessList(processes=listed))


# ---- files push: refused locally before any call ----


def test_a_huge_file_is_refused_before_anything_is_sent(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = Fake()
    install(monkeypatch, fake)
    big = tmp_path / "disk.img"
    with big.open("wb") as handle:
        handle.truncate(1 << 30)  # sparse: 1 GiB on paper, nothing on disk
    opened: list[str] = []
    real_open = Path.open

    def spy_open(self: Path, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", spy_open)
    outcome = invoke("files", "push", "all", str(big), "/srv/disk.img")
    assert outcome.exit_code == 2
    assert f"{big} is 1.0 GiB; rmm files push carries at most 8.0 MiB" in outcome.stderr
    assert fake.requests == [] and opened == []  # neither sent nor even read


def test_a_file_just_over_the_limit_is_refused_and_one_at_it_is_sent(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fits = tmp_path / "fits.bin"
    fits.write_bytes(b"x" * MAX_FILE_BYTES)
    over = tmp_path / "over.bin"
    over.write_bytes(b"x" * (MAX_FILE_BYTES + 1))
    pushed = info("h", exit_code=None, result=result(file=commands_pb2.FileResult(path="/x")))
    fake = Fake({"RunCommand": events([pushed])})
    install(monkeypatch, fake)
    assert invoke("files", "push", "h", str(over), "/x").exit_code == 2
    assert fake.requests == []
    sent = invoke("files", "push", "h", str(fits), "/x", "--mode", "600", "--overwrite")
    assert sent.exit_code == 0, sent.output
    request = fake.request("RunCommand").push_file
    assert len(request.data) == MAX_FILE_BYTES and request.overwrite and request.mode == 0o600
    assert request.sha256 == hashlib.sha256(request.data).hexdigest()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["relative/path"], "REMOTE_PATH 'relative/path' must be absolute"),
        (["/x", "--mode", "999"], "--mode '999': give octal permissions"),
    ],
)
def test_push_usage_errors(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, args: list[str], message: str
) -> None:
    fake = Fake()
    install(monkeypatch, fake)
    local = tmp_path / "a.conf"
    local.write_text("x")
    outcome = invoke("files", "push", "all", str(local), *args)
    assert outcome.exit_code == 2 and message in outcome.stderr and fake.requests == []


def test_modes() -> None:
    assert parse_mode("0644") == 0o644 and parse_mode("755") == 0o755
    for bad in ("rw", "-1", "77777"):
        with pytest.raises(CliError):
            parse_mode(bad)


# ---- files pull ----


def pulled(hostname: str, data: bytes, sha256: str | None = None) -> Outcome:
    file = commands_pb2.FileResult(
        path="/etc/hosts",
        size=len(data),
        data=data,
        sha256=hashlib.sha256(data).hexdigest() if sha256 is None else sha256,
    )
    return Outcome(info(hostname, exit_code=None, result=result(file=file)))


def run_of(*outcomes: Outcome) -> Run:
    targets = [
        operator_pb2.RunTarget(agent_id=o.info.agent_id, hostname=o.info.hostname) for o in outcomes
    ]
    return Run("run-1", targets, list(outcomes))


def test_pull_from_one_agent_writes_the_file(tmp_path: Path) -> None:
    run = run_of(pulled("web-01", b"127.0.0.1 localhost\n"))
    save_pulled(run, "/etc/hosts", tmp_path / "hosts.copy")
    assert (tmp_path / "hosts.copy").read_bytes() == b"127.0.0.1 localhost\n"
    assert run.outcomes[0].ok and str(tmp_path / "hosts.copy") in run.outcomes[0].head()
    assert [p.name for p in tmp_path.iterdir()] == ["hosts.copy"]  # no temporary left


def test_pull_from_one_agent_into_a_directory(tmp_path: Path) -> None:
    save_pulled(run_of(pulled("web-01", b"x")), "C:\\Windows\\win.ini", tmp_path)
    assert (tmp_path / "win.ini").read_bytes() == b"x"


def test_pull_from_several_agents_writes_one_directory_each(tmp_path: Path) -> None:
    def from_agent(hostname: str, agent_id: str, data: bytes) -> Outcome:
        outcome = pulled(hostname, data)
        outcome.info.agent_id = agent_id
        return outcome

    one = from_agent("web-01", "1111aaaa2222bbbb", b"one")
    # Its twin names itself like the first and sorts before it: the hostname is only what an
    # agent says, so no agent gets the plain name; each directory starts with its id.
    twin = from_agent("web-01", "0000ffff0000ffff", b"twin")
    # And one names itself after the first one's directory.
    mimic = from_agent("1111aaaa2222-web-01", "2222cccc3333dddd", b"mimic")
    hostile = from_agent("../../evil", "3333eeee4444ffff", b"evil")
    nameless = from_agent("", "4444aaaa5555bbbb", b"nameless")
    run = run_of(one, from_agent("web-02", "5555aaaa6666bbbb", b"two"), twin, mimic)
    run.outcomes += [hostile, nameless]
    out = tmp_path / "out"
    save_pulled(run, "/etc/hosts", out)
    assert (out / "1111aaaa2222-web-01" / "hosts").read_bytes() == b"one"
    assert (out / "5555aaaa6666-web-02" / "hosts").read_bytes() == b"two"
    assert (out / "0000ffff0000-web-01" / "hosts").read_bytes() == b"twin"
    assert (out / "2222cccc3333-1111aaaa2222-web-01" / "hosts").read_bytes() == b"mimic"
    assert (out / "3333eeee4444-evil" / "hosts").read_bytes() == b"evil"  # stays inside out/
    assert (out / "4444aaaa5555" / "hosts").read_bytes() == b"nameless"
    assert all(o.ok for o in run.outcomes)


def test_pull_with_a_wrong_checksum_writes_nothing_and_fails(tmp_path: Path) -> None:
    run = run_of(pulled("web-01", b"tampered", sha256="00" * 32))
    save_pulled(run, "/etc/hosts", tmp_path / "hosts")
    assert not (tmp_path / "hosts").exists()
    outcome = run.outcomes[0]
    assert not outcome.ok and outcome.status == "failed"
    assert "does not match the agent's 000000000000" in outcome.reason()


def test_pull_from_several_agents_onto_a_file_fails(tmp_path: Path) -> None:
    existing = tmp_path / "f"
    existing.write_text("keep")
    run = run_of(pulled("a", b"1"), pulled("b", b"2"))
    save_pulled(run, "/etc/hosts", existing)
    assert existing.read_text() == "keep"
    assert all("for several agents give a directory" in o.reason() for o in run.outcomes)


def test_pull_command_end_to_end_in_process(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    good = pulled("web-01", b"data").info
    bad = info("web-02", S.COMMAND_FAILED, exit_code=None, error="no such file")
    install(monkeypatch, Fake({"RunCommand": events([good, bad])}))
    outcome = invoke("files", "pull", "all", "/etc/hosts", "--out", str(tmp_path))
    assert outcome.exit_code == 1
    assert (tmp_path / "web-01-01234-web-01" / "hosts").read_bytes() == b"data"
    assert "web-02 [web-02-01234] (failed: no such file)" in outcome.stderr


def test_names() -> None:
    assert safe_name("web-01.example.com", "x") == "web-01.example.com"
    assert safe_name("..", "fallback") == "fallback"
    assert safe_name("a/b c", "x") == "a_b_c"
    assert remote_basename("/var/log/syslog") == "syslog"
    assert remote_basename("C:\\Logs\\app.log") == "app.log"
    assert remote_basename("/") == "file"


# ---- lists: one table, or one section per agent ----


def test_processes_of_one_agent_are_one_table(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Fake({"RunCommand": events([info("web-01", result=processes("sshd", "nginx"))])})
    install(monkeypatch, fake)
    outcome = invoke("processes", "list", "web-01", "--name", "ng", "--top", "5")
    assert outcome.exit_code == 0, outcome.output
    request = fake.request("RunCommand")
    assert request.list_processes == commands_pb2.ListProcesses(name="ng", limit=5)
    assert request.target.agents == ["host=web-01"]
    lines = outcome.stdout.splitlines()
    assert "PID" in lines[1]
    assert lines.index(next(x for x in lines if "nginx" in x)) < lines.index(
        next(x for x in lines if "sshd" in x)
    )  # busiest first
    assert "==" not in outcome.stdout


def test_processes_of_several_agents_are_sections(monkeypatch: pytest.MonkeyPatch) -> None:
    outcomes = [
        info("web-01", result=processes("sshd")),
        info("web-02", S.COMMAND_REFUSED, exit_code=None, error="actions forbidden here"),
    ]
    install(monkeypatch, Fake({"RunCommand": events(outcomes)}))
    outcome = invoke("processes", "list", "all")
    assert outcome.exit_code == 1
    assert "== web-01 [web-01-01234]" in outcome.stdout and "sshd" in outcome.stdout
    assert "== web-02 [web-02-01234]: refused: actions forbidden here" in outcome.stdout
    assert (
        "1 of 2 agents failed: web-02 [web-02-01234] (refused: actions forbidden here)"
        in outcome.stderr
    )


def test_services_list_and_control(monkeypatch: pytest.MonkeyPatch) -> None:
    listed = result(
        services=commands_pb2.ServiceList(
            services=[commands_pb2.ServiceInfo(name="nginx", state="running", start_mode="enabled")]
        )
    )
    fake = Fake({"RunCommand": events([info("web-01", result=listed)])})
    install(monkeypatch, fake)
    outcome = invoke("services", "list", "web-01", "--name", "ngi")
    assert outcome.exit_code == 0 and "nginx" in outcome.stdout and "running" in outcome.stdout
    assert fake.request("RunCommand").list_services.name == "ngi"

    controlled = result(
        service=commands_pb2.ServiceResult(
            service=commands_pb2.ServiceInfo(name="nginx", state="running", start_mode="enabled")
        )
    )
    fake = Fake({"RunCommand": events([info("web-01", result=controlled)])})
    install(monkeypatch, fake)
    outcome = invoke("services", "restart", "tag=web", "nginx")
    assert outcome.exit_code == 0 and "nginx: running (enabled)" in outcome.stdout
    request = fake.request("RunCommand")
    assert request.service_control == commands_pb2.ServiceControl(
        name="nginx", operation=commands_pb2.SERVICE_RESTART
    )
    assert request.target.tag == "web"


def test_kill_needs_one_of_pid_and_name(monkeypatch: pytest.MonkeyPatch) -> None:
    killed = result(
        kill=commands_pb2.KillResult(killed=[commands_pb2.ProcessInfo(pid=9, name="x")])
    )
    fake = Fake({"RunCommand": events([info("h", result=killed)])})
    install(monkeypatch, fake)
    for args in ([], ["--pid", "9", "--name", "x"]):
        outcome = invoke("processes", "kill", "h", *args)
        assert outcome.exit_code == 2 and "exactly one of --pid N or --name NAME" in outcome.stderr
    assert fake.requests == []
    outcome = invoke("processes", "kill", "h", "--name", "x", "--force")
    assert outcome.exit_code == 0 and "ended x (9)" in outcome.stdout
    assert fake.request("RunCommand").kill_process == commands_pb2.KillProcess(name="x", force=True)


# ---- reboot ----


def test_reboot_without_a_terminal_needs_yes(monkeypatch: pytest.MonkeyPatch) -> None:
    sessions = result(
        reboot=commands_pb2.RebootResult(
            sessions=[commands_pb2.LoggedInUser(name="alice", terminal="pts/0", host="10.0.0.5")],
            requested_at=100,
        )
    )
    fake = Fake({"RunCommand": events([info("web-01", result=sessions)])})
    install(monkeypatch, fake)
    outcome = invoke("reboot", "web-01")
    assert outcome.exit_code == 2 and "pass --yes" in outcome.stderr and fake.requests == []
    outcome = invoke("reboot", "web-01", "--yes", "--delay", "5m", "--reason", "patches")
    assert outcome.exit_code == 0, outcome.output
    assert "alice on pts/0 from 10.0.0.5" in outcome.stdout
    assert fake.request("RunCommand").reboot == commands_pb2.Reboot(
        delay_seconds=300, reason="patches"
    )


# ---- past commands ----


def test_commands_list_and_show(monkeypatch: pytest.MonkeyPatch) -> None:
    failed = info("web-07", S.COMMAND_FAILED, exit_code=3, stdout="out\x1b[2J", stderr="err")
    fake = Fake(
        {
            "ListCommands": operator_pb2.ListCommandsResponse(commands=[failed]),
            "GetCommand": failed,
        }
    )
    install(monkeypatch, fake)
    listed = invoke("commands", "list", "--run", "run-1", "--status", "failed", "--limit", "5")
    assert listed.exit_code == 0 and "cmd-web-07" in listed.stdout
    assert fake.request("ListCommands") == operator_pb2.ListCommandsRequest(
        run_id="run-1", statuses=[S.COMMAND_FAILED], limit=5
    )
    shown = invoke("commands", "show", "cmd-web-07")
    assert shown.exit_code == 0
    assert "--- stdout ---\nout\n--- stderr ---\nerr" in shown.stdout  # the escape is gone
    assert "exit code" in shown.stdout
    data = json.loads(invoke("commands", "show", "cmd-web-07", "-o", "json").stdout)
    assert data["stdout"] == "out\x1b[2J" and data["exit_code"] == 3  # JSON keeps it all


def test_a_failed_write_leaves_nothing_behind(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def refuse(source: str, dest: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    run = run_of(pulled("a", b"1"))
    save_pulled(run, "/etc/hosts", tmp_path / "hosts")
    assert not run.outcomes[0].ok
    assert "cannot write " + str(tmp_path / "hosts") in run.outcomes[0].reason()
    assert list(tmp_path.iterdir()) == []  # the temporary file is gone too
