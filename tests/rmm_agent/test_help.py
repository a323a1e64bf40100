"""The help request's snapshot from a report collected here by the real collectors, and from
recorded odd ones; the spool and command history read beside them."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import pytest

from rmm_agent.collectors.disks import DisksCollector
from rmm_agent.commands.history import CommandHistory
from rmm_agent.errorlog import MAX_KEPT, RECENT_ERRORS_FILE, RecentErrors, read_recent_errors
from rmm_agent.help import (
    MAX_SAMPLES_PER_COLLECTOR,
    HelpError,
    SpoolFacts,
    check_readable,
    make_snapshot,
    prompt_argv,
    prompt_command,
    read_failed_commands,
    read_logged_errors,
    read_spool,
    verify_code,
)
from rmm_agent.report import ReportBuilder, report_to_dict
from rmm_agent.spool import Spool
from rmm_agent.state import Identity, SequenceRecord, StateDir
from rmm_common.errors import ConfigError
from rmm_common.helpdesk import MAX_SNAPSHOT_BYTES


def sample(name: str, value: float, **labels: str) -> dict[str, object]:
    return {"name": name, "labels": labels, "value": value}


def test_a_snapshot_of_a_real_report_has_this_hosts_disks() -> None:
    builder = ReportBuilder([DisksCollector()], wait_for_slow=True)
    report = report_to_dict(builder.build())
    builder.close()
    snapshot = make_snapshot(report, SpoolFacts(3, 0), [])
    root = os.statvfs("/")
    [disk] = [d for d in snapshot["disks"] if d["mountpoint"] == "/"]
    assert disk["size_bytes"] == root.f_blocks * root.f_frsize
    assert 0 <= disk["usage_ratio"] <= 1
    assert snapshot["spool"] == {"waiting": 3, "dropped": 0} and snapshot["errors"] == []
    assert "failed_services" not in snapshot  # the services collector did not run
    assert len(json.dumps(snapshot)) < MAX_SNAPSHOT_BYTES


def test_failed_services_reboot_patches_and_errors_are_picked_out() -> None:
    report = {
        "collected_at": 1.0,
        "collectors": [
            {
                "name": "services",
                "ok": True,
                "samples": [
                    sample("service_failed", 1, unit="cups.service"),
                    sample("service_failed", 0, unit="ssh.service"),
                ],
            },
            {"name": "system", "ok": True, "samples": [sample("system_reboot_required", 1)]},
            {
                "name": "patches",
                "ok": True,
                "samples": [sample("patches_pending", 2, classification="security")],
            },
            {"name": "sensors", "ok": False, "error": "timed out after 5s", "samples": []},
            {
                "name": "processes",
                "ok": True,
                "samples": [sample("process_cpu", 1, pid=str(i)) for i in range(1000)],
            },
            {
                "name": "network",
                "ok": True,
                "samples": [sample("net_rx", 1, iface=str(i)) for i in range(1000)],
            },
        ],
    }
    snapshot = make_snapshot(report, SpoolFacts(0, 7), ["remote command x failed: y"], ["odd"])
    assert snapshot["failed_services"] == ["cups.service"]
    assert snapshot["reboot_required"] is True
    assert snapshot["patches_pending"] == {"security": 2}
    assert snapshot["errors"] == [
        "collector sensors: timed out after 5s",
        "7 reports were dropped undelivered since enrollment",
        "remote command x failed: y",
        "odd",
    ]
    kept = {c["name"]: c for c in snapshot["report"]}
    assert "processes" not in kept
    assert len(kept["network"]["samples"]) == MAX_SAMPLES_PER_COLLECTOR


def test_the_spool_and_failed_commands_are_read_beside_the_agent(tmp_path: Path) -> None:
    assert read_spool(tmp_path) == (None, [])
    # Held open as the running agent holds it (SQLite's exclusive locking mode).
    spool = Spool.in_state_dir(tmp_path, 100, 10_000_000)
    try:
        StateDir(tmp_path).save_sequence(
            SequenceRecord(spool_pending=3, spool_dropped=1), durable=False
        )
        facts, problems = read_spool(tmp_path)
        assert facts == SpoolFacts(3, 1) and problems == []
        history = CommandHistory.open(tmp_path)
        history.close()
        assert read_failed_commands(tmp_path, time.time()) == []
    finally:
        spool.close()
    (tmp_path / "sequence.json").write_bytes(b"not JSON at all")
    facts, problems = read_spool(tmp_path)
    assert facts is None and "cannot read the spool's counts" in problems[0]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_credential_says_to_use_sudo(tmp_path: Path) -> None:
    identity = tmp_path / "identity.json"
    identity.write_text("{}")
    check_readable(tmp_path)  # readable: nothing to say
    identity.chmod(0)
    with pytest.raises(ConfigError, match="run the command with sudo"):
        check_readable(tmp_path)


def test_the_running_agents_warnings_are_kept_for_a_help_request(tmp_path: Path) -> None:
    logger = logging.getLogger("rmm_agent.test_help")
    handler = RecentErrors(tmp_path)
    logger.addHandler(handler)
    try:
        logger.info("not kept: below warning")
        for i in range(MAX_KEPT + 5):
            logger.warning("cannot reach the server (%d)", i)
        logger.error("collector \u202esensors failed")
    finally:
        logger.removeHandler(handler)
    kept = read_recent_errors(tmp_path)
    assert len(kept) == MAX_KEPT and kept[0]["message"] == "cannot reach the server (6)"
    assert (tmp_path / RECENT_ERRORS_FILE).stat().st_mode & 0o777 == 0o600
    # A restarted agent goes on from what was kept.
    again = RecentErrors(tmp_path)
    again.emit(logging.LogRecord("x", logging.ERROR, "", 0, "after restart", None, None))
    assert read_recent_errors(tmp_path)[-2]["message"] == "collector \u202esensors failed"
    lines = read_logged_errors(tmp_path, time.time())
    assert lines[0].endswith("ERROR x: after restart") and len(lines) == MAX_KEPT
    assert read_logged_errors(tmp_path, time.time() + 2 * 86400) == []  # a day old: left out
    snapshot = make_snapshot({"collectors": []}, None, lines)
    assert "sensors failed" in snapshot["errors"][1]


def test_a_missing_client_key_is_said_before_anything_is_sent(tmp_path: Path) -> None:
    identity = Identity(
        agent_id="a1",
        credential="rmma_a1_x",
        server="127.0.0.1:1",
        client="acme",
        site="hq",
        client_cert_pem="-----BEGIN CERTIFICATE-----\n",
        mtls_port=2,
    )
    with pytest.raises(HelpError, match="cannot read the TLS client key"):
        verify_code(identity, tmp_path, "ABCDEF")


def test_the_prompt_runs_as_the_user_behind_sudo_in_their_session() -> None:
    def which(name: str) -> str | None:
        return "/usr/bin/zenity" if name == "zenity" else None

    desktop = {"DISPLAY": ":0", "SUDO_USER": "anna", "SUDO_UID": "1000"}
    argv = prompt_command(desktop, which, "linux", 0)
    assert argv is not None
    assert argv[:4] == ["runuser", "-u", "anna", "--"], argv
    assert "DISPLAY=:0" in argv and "XDG_RUNTIME_DIR=/run/user/1000" in argv
    assert argv[argv.index("/usr/bin/zenity") + 1] == "--entry"
    # Not root, or no one behind sudo: the dialog as it is.
    assert prompt_command(desktop, which, "linux", 1000) == prompt_argv(desktop, which)
    assert prompt_command({"DISPLAY": ":0"}, which, "linux", 0) == prompt_argv(desktop, which)
    assert prompt_command({"SUDO_USER": "anna"}, which, "linux", 0) is None  # no display
