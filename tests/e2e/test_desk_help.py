"""The user's own help request and caller verification with real processes (issue #15):
`rmm-agent help` on an enrolled host opens a ticket at L1 with a fresh snapshot (its disk
figures reach the operator), the code the user is shown is the code the operator sees,
`rmm-agent verify` says yes to it and no to a wrong code, to another host's code and to a
closed ticket's; bad input, a dead server and a revoked agent are refused by name, with nothing
written."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from rmm_agent.help import prompt_argv
from tests.helpers import BIN, ServerProcess, enroll_agent, free_port, rmm, rmm_json


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    base = tmp_path_factory.mktemp("desk_help")
    server = ServerProcess(
        data_dir=base / "server",
        grpc_port=free_port(),
        http_port=free_port(),
        log_path=base / "server.log",
    ).start()
    try:
        yield server, base
    finally:
        server.stop()


def agent(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `rmm-agent` as a user would, without a desktop unless `env` gives one."""
    # No desktop, and no one behind sudo (the dialog would be run as them).
    unset = ("DISPLAY", "WAYLAND_DISPLAY", "SUDO_USER", "SUDO_UID")
    base = {k: v for k, v in os.environ.items() if k not in unset}
    return subprocess.run(
        [str(BIN / "rmm-agent"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**base, **(env or {})},
    )


def test_help_opens_a_ticket_with_a_snapshot_and_its_code_verifies(
    desk: tuple[ServerProcess, Path],
) -> None:
    server, base = desk
    home, other = base / "pc-home", base / "pc-other"
    agent_id = enroll_agent(server, home, client="acme", site="hq")
    enroll_agent(server, other, client="acme", site="hq")

    asked = agent("help", "the printer is offline", "--state-dir", str(home), "--output", "json")
    assert asked.returncode == 0, asked.stderr
    answer = json.loads(asked.stdout)
    number, code = str(answer["ticket"]), answer["verify_code"]
    assert answer["tier"] == "L1" and len(code) == 6, answer

    # The operator sees the same code, and the snapshot with this host's disk figures.
    ticket = rmm_json(server, "tickets", "show", number)
    assert ticket["verify_code"] == code
    assert (ticket["agent_id"], ticket["tier"], ticket["opened_by"]) == (agent_id, "L1", "user")
    assert "the printer is offline" in ticket["title"]
    snapshot = ticket["snapshot"]
    disks = {disk["mountpoint"]: disk for disk in snapshot["disks"]}
    root = os.statvfs("/")
    assert disks["/"]["size_bytes"] == root.f_blocks * root.f_frsize, disks["/"]
    assert snapshot["open_alerts"] == [] and "errors" in snapshot and snapshot["report"]
    opening = ticket["events"][0]["text"]
    assert "the printer is offline" in opening and "disks: / " in opening, opening
    assert "reboot pending: " in opening and "open alerts: none" in opening, opening
    shown = rmm(server, "tickets", "show", number).stdout
    assert f"verification code {code}" in shown, shown
    listed = rmm_json(server, "tickets", "list")
    assert [t["verify_code"] for t in listed if str(t["id"]) == number] == [code]
    assert "snapshot" not in listed[0]

    # The user checks a caller: the right code (typed loosely) is this host's ticket ...
    said = agent("verify", f"{code[:3].lower()}-{code[3:]}", "--state-dir", str(home))
    assert said.returncode == 0, said.stderr
    assert said.stdout.startswith("YES") and f"ticket {number}" in said.stdout, said.stdout
    assert "L1" in said.stdout and "not yet assigned" in said.stdout, said.stdout
    # It was opened from this very computer: the user is told, since whoever controls the
    # computer remotely could have asked for help to get a code that matches.
    assert "this ticket was opened from this computer" in said.stdout, said.stdout
    # ... a wrong code is not, nor is this code on another computer of the same client.
    wrong = "".join("A" if c != "A" else "B" for c in code)
    refused = agent("verify", wrong, "--state-dir", str(home))
    assert refused.returncode == 1 and refused.stdout.startswith("NO"), refused
    elsewhere = agent("verify", code, "--state-dir", str(other))
    assert elsewhere.returncode == 1 and elsewhere.stdout.startswith("NO"), elsewhere
    assert agent("verify", "12", "--state-dir", str(home)).returncode == 2  # not a code

    # A ticket the desk opened for this host, or for its whole client, is the desk's.
    called = rmm_json(server, "tickets", "open", "--agent", agent_id, "--title", "Updates due")
    rmm(server, "tickets", "assign", str(called["id"]), "--to", "alice")
    said = agent("verify", called["verify_code"], "--state-dir", str(home))
    assert said.returncode == 0 and "assigned to alice" in said.stdout, said
    assert "opened from this computer" not in said.stdout, said.stdout
    everyone = rmm_json(server, "tickets", "open", "--client", "acme", "--title", "VPN drops")
    said = agent("verify", everyone["verify_code"], "--state-dir", str(other))
    assert said.returncode == 0 and f"ticket {everyone['id']}" in said.stdout, said

    # Once the ticket is closed its code proves nothing.
    rmm(server, "tickets", "resolve", number, "--resolution", "printer cable replaced")
    rmm(server, "tickets", "close", number)
    closed = agent("verify", code, "--state-dir", str(home), "--output", "json")
    assert closed.returncode == 1 and json.loads(closed.stdout)["match"] is False

    audit = rmm_json(server, "audit", "list", "--agent", agent_id)
    outcomes = [e["outcome"] for e in audit if e["action"] == "VerifyTicketCode"]
    assert outcomes == ["match", "no match", "match", "no match"], audit
    assert [e["outcome"] for e in audit if e["action"] == "RequestHelp"] == ["ok"]


def test_bad_input_a_dead_server_and_a_revoked_agent_are_refused_with_nothing_written(
    desk: tuple[ServerProcess, Path],
) -> None:
    server, base = desk
    home = base / "pc-refused"
    agent_id = enroll_agent(server, home, client="initech", site="lab")
    before = len(rmm_json(server, "tickets", "list", "--client", "initech"))
    state = ("--state-dir", str(home))
    # The refusals come after a snapshot is collected: without the package managers' lists
    # (seconds each) the test stays short.
    quick = base / "quick.yaml"
    quick.write_text("disabled_collectors: [patches, software, hardware]\n")

    no_display = agent("help", *state)
    assert no_display.returncode == 2, no_display
    assert "give the problem as an argument" in no_display.stderr
    for text, says in (
        ("   ", "describe the problem"),
        ("x" * 1001, "at most 1000"),
        ("printer \u202eenilno", "U+202E"),
    ):
        result = agent("help", text, *state)
        assert result.returncode == 2 and says in result.stderr, result

    # A dead server: said by name, nothing written anywhere.
    dead = base / "pc-dead"
    dead.mkdir()
    identity = json.loads((home / "identity.json").read_text())
    identity["server"] = f"127.0.0.1:{free_port()}"
    (dead / "identity.json").write_text(json.dumps(identity))
    unreachable = agent("help", "mail is slow", "--state-dir", str(dead), "--config", str(quick))
    assert unreachable.returncode == 1, unreachable
    assert "cannot reach the server" in unreachable.stderr, unreachable.stderr
    assert "Nothing was sent" in unreachable.stderr

    # A revoked agent is told what happened and what to do.
    rmm(server, "agents", "revoke", agent_id, "--yes")
    revoked = agent("help", "mail is slow", *state, "--config", str(quick))
    assert revoked.returncode == 1, revoked
    assert agent_id in revoked.stderr and "enroll this computer again" in revoked.stderr
    assert len(rmm_json(server, "tickets", "list", "--client", "initech")) == before


def test_the_desktop_prompt_is_the_entry_dialog(tmp_path: Path) -> None:
    """With a display and zenity on PATH, `rmm-agent help` asks in zenity's entry dialog (a
    stand-in zenity answers as the real one does: the text on stdout and exit 0, or exit 1 when
    closed)."""
    fake = tmp_path / "zenity"
    fake.write_text('#!/bin/sh\n[ -n "$ANSWER" ] && { echo "$ANSWER"; exit 0; }\nexit 1\n')
    fake.chmod(0o755)
    argv = prompt_argv({"DISPLAY": ":0"}, lambda name: str(fake) if name == "zenity" else None)
    assert argv is not None and argv[:2] == [str(fake), "--entry"]
    assert prompt_argv({}, lambda name: "/usr/bin/zenity") is None
    assert prompt_argv({"WAYLAND_DISPLAY": "w"}, lambda name: None) is None
    desktop = {"DISPLAY": ":0", "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    closed = agent("help", "--state-dir", str(tmp_path), env=desktop)
    assert closed.returncode == 1 and "closed without a description" in closed.stderr, closed
    # An answer is taken as the description: the next step is this (unenrolled) agent's identity.
    answered = agent("help", "--state-dir", str(tmp_path), env={**desktop, "ANSWER": "no wifi"})
    assert answered.returncode == 2 and "enroll first" in answered.stderr, answered
    bidi = agent("help", "--state-dir", str(tmp_path), env={**desktop, "ANSWER": "a\u202eb"})
    assert bidi.returncode == 2 and "U+202E" in bidi.stderr, bidi
