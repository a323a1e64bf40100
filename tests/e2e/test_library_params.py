"""Library scripts end to end: what each role may set, a scrubbed environment, a full record.

A real server with its own script library, a real agent on loopback, the real `rmm` CLI with
operator tokens of each role, and real bash running the scripts.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import (
    ServerProcess,
    enroll_agent,
    free_port,
    rmm,
    rmm_json,
    start_agent,
    wait_for,
)

pytestmark = pytest.mark.timeout(240)

SHIPPED_LIBRARY = Path(__file__).resolve().parents[2] / "script-library"

# Prints what it was given and whether anything reached its environment that should not have.
GREET = """#!/usr/bin/env bash
# ---
# name: greet
# description: Say hello to a declared name.
# shells: [bash]
# timeout: 30s
# min_role: tier1
# params:
#   - name: who
#     pattern: "[a-z]+"
#     required: true
#   - name: times
#     type: int
#     min: 1
#     max: 3
#     default: 1
# ---
for _ in $(seq "$RMM_PARAM_TIMES"); do echo "hello $RMM_PARAM_WHO"; done
echo "extra=${EXTRA-unset} args=$* cwd=$(pwd)"
echo "bash_env=${BASH_ENV-unset} ld_preload=${LD_PRELOAD-unset} env=${ENV-unset}"
"""


@dataclass
class Setup:
    server: ServerProcess
    agent_id: str
    tokens: dict[str, str]
    marker: Path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    base = tmp_path_factory.mktemp("library-params")
    library = base / "library"
    library.mkdir()
    (library / "greet.sh").write_text(GREET)
    # The shipped disk-usage, whose path parameter is confined to its header's roots.
    shutil.copy(SHIPPED_LIBRARY / "disk-usage.sh", library / "disk-usage.sh")
    server = ServerProcess(
        base / "data",
        free_port(),
        free_port(),
        base / "server.log",
        extra_args=["--script-library", str(library)],
    ).start()
    agent: subprocess.Popen[bytes] | None = None
    marker = base / "pwned"
    evil = base / "evil.sh"
    evil.write_text(f"touch {marker}\n")
    try:
        agent_id = enroll_agent(server, base / "agent")
        tokens = {
            role: str(rmm_json(server, "operators", "add", f"{role}-op", "--role", role)["token"])
            for role in ("tier1", "tier2")
        }
        # The agent's own environment holds start-up variables too (a careless unit file, an
        # attacker's foothold): the scripts it runs must not inherit them.
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("BASH_ENV", str(evil))
            patch.setenv("ENV", str(evil))
            patch.setenv("LD_PRELOAD", str(base / "nowhere.so"))
            agent = start_agent(base / "agent", base / "agent.log", 300.0)
        wait_for(
            lambda: "rmm_server_command_streams 1" in server.metrics(),
            30,
            "the agent's command stream",
        )
        yield Setup(server, agent_id, tokens, marker)
    finally:
        if agent is not None:
            agent.terminate()
            agent.wait(15)
        server.stop()


def run(setup: Setup, role: str, *args: str) -> subprocess.CompletedProcess[str]:
    return rmm(
        setup.server,
        "run",
        "-t",
        setup.agent_id,
        "--library",
        "greet",
        "--output",
        "json",
        *args,
        token=setup.tokens[role],
        check=False,
    )


def audit(setup: Setup, operator: str) -> list[dict[str, object]]:
    entries = rmm_json(setup.server, "audit", "list", "--operator", operator, "--limit", "100")
    assert isinstance(entries, list)
    return entries


def test_tier1_runs_declared_params_and_the_script_inherits_no_startup_variables(
    setup: Setup,
) -> None:
    result = run(setup, "tier1", "--param", "who=alice", "--param", "times=2")
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)
    lines = row["stdout"].splitlines()
    assert lines[:2] == ["hello alice", "hello alice"]
    assert lines[2].startswith("extra=unset args= cwd=")
    assert lines[3] == "bash_env=unset ld_preload=unset env=unset"
    assert row["stderr"] == ""  # the loader would complain of the preload it could not find
    assert not setup.marker.exists()


@pytest.mark.parametrize(
    "variable",
    ["BASH_ENV", "ENV", "SHELLOPTS", "PS4", "BASHOPTS", "PYTHONSTARTUP", "PYTHONPATH",
     "LD_PRELOAD", "LD_LIBRARY_PATH", "IFS", "PSModulePath", "bash_env"],
)  # fmt: skip
@pytest.mark.parametrize("role", ["tier1", "tier2"])
def test_a_startup_variable_is_refused_for_every_role_and_audited(
    setup: Setup, role: str, variable: str
) -> None:
    result = run(setup, role, "--param", "who=bob", "--env", f"{variable}=$(touch {setup.marker})")
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"environment variable {variable!r} is read by an interpreter" in result.stderr
    assert "no command may set it" in result.stderr
    assert not setup.marker.exists()
    refused = [
        e["details"]
        for e in audit(setup, f"{role}-op")
        if str(e["outcome"]).startswith("refused") and variable in e["details"]["env"]  # type: ignore[index]
    ]  # fmt: skip
    assert len(refused) == 1 and refused[0]["library_name"] == "greet"  # type: ignore[index]


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (("--env", "EXTRA=1"), "--env EXTRA"),
        (("--cwd", "/tmp"), "--cwd"),
        (("--", "--all"), "--args (1)"),
        (("--args", "x"), "--args (1)"),
    ],
)
def test_tier1_may_not_set_what_the_header_does_not_declare(
    setup: Setup, extra: tuple[str, ...], named: str
) -> None:
    result = run(setup, "tier1", "--param", "who=carol", *extra)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "library script 'greet' takes only the parameters its header declares" in result.stderr
    assert f"{named} may be set only by tier2 or higher" in result.stderr
    denied = [e for e in audit(setup, "tier1-op") if named in str(e["outcome"])]
    assert denied and denied[0]["details"]["library_name"] == "greet"  # type: ignore[index]
    assert str(denied[0]["outcome"]).startswith("denied: ")


def test_tier2_may_add_env_args_and_cwd_and_all_of_it_is_recorded(
    setup: Setup, tmp_path: Path
) -> None:
    result = run(
        setup, "tier2", "--param", "who=dave", "--env", "EXTRA=yes", "--cwd", str(tmp_path),
        "--timeout", "20s", "--", "one", "two",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)
    assert f"extra=yes args=one two cwd={tmp_path}" in row["stdout"]
    command_id = row["command_id"]
    fields = rmm_json(setup.server, "commands", "show", command_id)["fields"]
    body_sha = fields["body_sha256"]
    expected = {
        "action": "run_script",
        "library_name": "greet",
        "shell": "bash",
        "body_bytes": len(GREET.encode()),
        "args": ["one", "two"],
        "params": {"who": "dave"},
        "env": {"EXTRA": "yes", "RMM_PARAM_TIMES": "1", "RMM_PARAM_WHO": "dave"},
        "working_directory": str(tmp_path),
        "timeout_seconds": 20.0,
    }
    assert {key: fields[key] for key in expected} == expected
    sent = [
        e for e in audit(setup, "tier2-op")
        if e["action"] == "command.sent" and e["details"]["command_id"] == command_id  # type: ignore[index]
    ]  # fmt: skip
    assert len(sent) == 1
    details = sent[0]["details"]
    assert isinstance(details, dict)
    assert {key: details[key] for key in expected} == expected
    assert details["body_sha256"] == body_sha
    # The one-line summary in `rmm commands list` says it too.
    listed = rmm(setup.server, "commands", "show", command_id).stdout
    assert "EXTRA=yes" in listed and str(tmp_path) in listed and "who=dave" in listed


def test_bad_params_are_refused_with_what_is_wrong_and_allowed(setup: Setup) -> None:
    missing = run(setup, "tier1")
    assert missing.returncode == 2
    assert "--param who is required: give --param who=VALUE" in missing.stderr
    bad = run(setup, "tier1", "--param", "who=Eve;id", "--param", "times=9", "--param", "x=1")
    assert bad.returncode == 2
    assert "--param who=Eve;id does not match the pattern" in bad.stderr
    assert "--param times=9 is out of range; times takes a whole number from 1 to 3" in bad.stderr
    assert "--param x: the script declares no such parameter" in bad.stderr
    ad_hoc = rmm(
        setup.server, "run", "-t", setup.agent_id, "--command", "true", "--param", "a=b",
        token=setup.tokens["tier2"], check=False,
    )  # fmt: skip
    assert ad_hoc.returncode == 2 and "--param is for library scripts" in ad_hoc.stderr
    # The parameters' channel is the header's alone: not even tier2 may forge one with --env.
    forged = run(setup, "tier2", "--param", "who=x", "--env", "RMM_PARAM_TIMES=99")
    assert forged.returncode == 2
    assert "'RMM_PARAM_TIMES': RMM_PARAM_* names carry a library script's" in forged.stderr
    shown = rmm_json(setup.server, "scripts", "show", "greet")["params"]
    assert [(p["name"], p["type"], p["env"]) for p in shown] == [
        ("who", "string", "RMM_PARAM_WHO"),
        ("times", "int", "RMM_PARAM_TIMES"),
    ]


def disk_usage(setup: Setup, path: str) -> subprocess.CompletedProcess[str]:
    return rmm(
        setup.server, "run", "-t", setup.agent_id, "--library", "disk-usage", "--param",
        f"path={path}", "--output", "json", token=setup.tokens["tier1"], check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("/root", "--param path=/root is outside the directories the script allows (/root)"),
        ("/root/", "is outside the directories the script allows (/root)"),
        ("/var/../root", "--param path=/var/../root has a .. part"),
        ("/", "is outside the directories the script allows (/)"),
        ("/etc", "is outside the directories the script allows (/etc)"),
    ],
)
def test_tier1_cannot_list_a_directory_outside_the_scripts_roots(
    setup: Setup, path: str, problem: str
) -> None:
    result = disk_usage(setup, path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert problem in result.stderr
    assert "path takes an absolute path (no .. parts) under /var, /home, /tmp, /srv, /opt" in (
        result.stderr
    )


def test_tier1_lists_a_directory_inside_the_roots_in_its_normal_spelling(setup: Setup) -> None:
    result = disk_usage(setup, "/var//log/")
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)
    assert "== Biggest directories under /var/log (this filesystem only) ==" in row["stdout"]
    fields = rmm_json(setup.server, "commands", "show", row["command_id"])["fields"]
    assert fields["env"] == {"RMM_PARAM_PATH": "/var/log"}  # what the agent got
    (param,) = rmm_json(setup.server, "scripts", "show", "disk-usage")["params"]
    assert param["roots"] == ["/var", "/home", "/tmp", "/srv", "/opt"]
    shown = rmm(setup.server, "scripts", "show", "disk-usage").stdout
    assert "path under /var, /home, /tmp, /srv, /opt, default '/var'" in shown, shown


def test_a_link_inside_a_root_that_leads_out_is_refused_by_the_script(
    setup: Setup, tmp_path: Path
) -> None:
    # Any local user can make one in /tmp; the server sees only the words, the script checks.
    link = tmp_path / "to-root"
    link.symlink_to("/root")
    assert str(link).startswith("/tmp/")
    result = disk_usage(setup, str(link))
    (row,) = json.loads(result.stdout)
    assert row["exit_code"] == 2, row
    assert f"{link} is /root, outside /var /home /tmp /srv /opt; refused" in row["stderr"]
    assert "Biggest directories" not in row["stdout"]
