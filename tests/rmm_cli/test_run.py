"""`rmm run` in-process against a fake operator API: requests, output and exit status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rmm_cli.client import CliError
from rmm_cli.run import build_script, infer_shell, parse_env
from rmm_proto import operator_pb2
from tests.rmm_cli.fakes import Fake, S, events, info, install, invoke


@pytest.mark.parametrize(
    ("name", "body", "shell"),
    [
        ("fix.sh", "echo", "sh"),
        ("fix.bash", "echo", "bash"),
        ("fix.py", "print()", "python"),
        ("Fix.PS1", "Write-Output 1", "powershell"),
        ("fix", "#!/bin/bash\necho", "bash"),
        ("fix", "#!/usr/bin/env python3\nprint()", "python"),
        ("fix", "#! /bin/sh -e\necho", "sh"),
        ("fix.txt", "#!/usr/bin/env pwsh\n", "powershell"),
    ],
)
def test_shell_is_inferred_from_extension_then_shebang(name: str, body: str, shell: str) -> None:
    assert infer_shell(Path(name), body) == shell


@pytest.mark.parametrize(("name", "body"), [("fix.txt", "echo"), ("fix", "#!/usr/bin/perl\n")])
def test_unknown_shell_is_a_usage_error(name: str, body: str) -> None:
    with pytest.raises(CliError) as caught:
        infer_shell(Path(name), body)
    assert caught.value.exit_code == 2
    assert f"--script {name}: cannot tell its shell" in caught.value.message
    assert "pass --shell bash|sh|python|powershell" in caught.value.message


def test_exactly_one_source_is_required(tmp_path: Path) -> None:
    with pytest.raises(CliError, match=r"exactly one of .* \(got none\)"):
        build_script(None, None, None, None, [], {}, "")
    with pytest.raises(CliError, match=r"\(got --library and --command\)"):
        build_script(None, "x", "y", None, [], {}, "")
    library = build_script(None, "clear-temp", None, None, ["a"], {}, "")
    assert (library.library_name, library.body, library.shell) == ("clear-temp", "", "")
    command = build_script(None, None, "uptime", None, [], {}, "/tmp")
    assert (command.body, command.shell, command.working_directory) == ("uptime", "", "/tmp")


def test_script_must_be_utf8(tmp_path: Path) -> None:
    script = tmp_path / "bad.sh"
    script.write_bytes(b"echo \xff\n")
    with pytest.raises(CliError, match=r"bad.sh: not UTF-8 text \(byte 5\)"):
        build_script(script, None, None, None, [], {}, "")


def test_env_pairs() -> None:
    assert parse_env(("A=1", "B=x=y", "C=")) == {"A": "1", "B": "x=y", "C": ""}
    for bad in ("A", "=1"):
        with pytest.raises(CliError, match="write NAME=VALUE"):
            parse_env((bad,))


def test_run_sends_one_request_and_shows_failures_first(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    outcomes = [info(f"web-{n:02}", stdout=f"ok from {n}\nmore\n") for n in range(1, 21)]
    outcomes[6] = info("web-07", S.COMMAND_FAILED, exit_code=3, stderr="no space left\n")
    fake = Fake({"RunCommand": events(outcomes)})
    install(monkeypatch, fake)
    script = tmp_path / "check.py"
    script.write_text("import sys\nprint(sys.argv)\n")
    result = invoke(
        "run", "--target", "client=acme,os=linux", "--script", str(script), "--args", "-v",
        "--env", "MODE=fast", "--timeout", "90s", "--parallel", "5", "--", "--dry-run", "x",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert result.stderr.strip() == "rmm: 1 of 20 agents failed: web-07 [web-07-01234] (exit 3)"
    request: operator_pb2.RunCommandRequest = fake.request("RunCommand")
    assert request.target == operator_pb2.TargetSelector(client="acme", os="linux")
    assert request.run_script.shell == "python"
    assert request.run_script.body == script.read_text()
    assert list(request.run_script.args) == ["-v", "--dry-run", "x"]
    assert dict(request.run_script.env) == {"MODE": "fast"}
    assert (request.timeout_seconds, request.parallel, request.detach) == (90, 5, False)
    assert not request.queue_offline
    lines = [line for line in result.stdout.splitlines() if "web-" in line]
    assert "web-07" in lines[0] and "failed" in lines[0] and "no space left" in lines[0]
    assert " 3 " in lines[0]
    assert "web-01" in lines[1] and "succeeded" in lines[1] and "ok from 1" in lines[1]


def test_run_json_has_full_output(monkeypatch: pytest.MonkeyPatch) -> None:
    outcomes = [info("db-01", stdout="a\nb\nc\n"), info("db-02", S.COMMAND_TIMED_OUT)]
    install(monkeypatch, Fake({"RunCommand": events(outcomes)}))
    result = invoke("run", "-t", "tag=db", "--command", "uptime", "--output", "json")
    assert result.exit_code == 1
    rows = json.loads(result.stdout)
    assert [(r["hostname"], r["status"]) for r in rows] == [
        ("db-02", "timed_out"),
        ("db-01", "succeeded"),
    ]
    assert rows[1]["stdout"] == "a\nb\nc\n" and rows[1]["exit_code"] == 0
    assert "db-02 [db-02-012345] (timed out)" in result.stderr


def test_all_succeeded_exits_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, Fake({"RunCommand": events([info("a", stdout="fine")])}))
    result = invoke("run", "-t", "a", "--command", "true")
    assert result.exit_code == 0 and result.stderr == ""
    assert "fine" in result.stdout


def test_queued_is_fine_only_with_queue_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    queued = info("lap-01", S.COMMAND_QUEUED, exit_code=None)
    install(monkeypatch, Fake({"RunCommand": events([queued], online=False)}))
    assert invoke("run", "-t", "all", "--command", "x", "--queue-offline").exit_code == 0
    result = invoke("run", "-t", "all", "--command", "x")
    assert result.exit_code == 1 and "lap-01 [lap-01-01234] (offline, queued" in result.stderr


def test_offline_without_queueing_fails_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    offline = info("lap-02", S.COMMAND_CANCELLED, exit_code=None, error="offline since 10m")
    install(monkeypatch, Fake({"RunCommand": events([offline], online=False)}))
    result = invoke("run", "-t", "all", "--command", "x")
    assert result.exit_code == 1
    assert (
        result.stderr.strip()
        == "rmm: 1 of 1 agent failed: lap-02 [lap-02-01234] (offline since 10m)"
    )


def test_detach_lists_targets_and_exits_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Fake({"RunCommand": events([info("a"), info("b")], detach=True)})
    install(monkeypatch, fake)
    result = invoke("run", "-t", "all", "--command", "x", "--detach", "-o", "json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["run_id"] == "run-1" and len(data["targets"]) == 2
    assert fake.request("RunCommand").detach


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-t", "colour=blue", "--command", "x"], "unknown key 'colour'"),
        (["-t", "all", "--command", "x", "--timeout", "soon"], "--timeout: duration 'soon'"),
        (["-t", "all"], "exactly one of --script FILE, --library NAME or --command TEXT"),
        (["-t", "all", "--command", "x", "--env", "NOVALUE"], "--env 'NOVALUE'"),
    ],
)
def test_usage_errors_exit_2_before_any_call(
    monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    fake = Fake()
    install(monkeypatch, fake)
    result = invoke("run", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert fake.requests == []
