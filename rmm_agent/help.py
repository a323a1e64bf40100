"""`rmm-agent help` and `rmm-agent verify`: the user's own help request and the check of a
caller's code (docs/desk.md).

Both calls go over the agent's own authenticated channel (its credential and, with mutual TLS,
its client certificate), so they need whoever may read the agent's state directory: root
where the agent runs as a service. A local user without it is told to run the command with
sudo; there is no local relay socket (see docs/desk.md).

Reading is kept apart from making: `make_snapshot` is pure (a report as
`report_to_dict` gives it, the spool's counts, the failed remote commands) and tested on its
own; `read_*` read the state directory.
"""

from __future__ import annotations

import getpass
import os
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from rmm_agent.commands.history import HISTORY_FILE
from rmm_agent.errorlog import read_recent_errors
from rmm_agent.state import IDENTITY_FILE, SEQUENCE_FILE, Identity, StateDir
from rmm_agent.transport import agent_channel, describe_rpc_error
from rmm_common.errors import ConfigError, RmmError
from rmm_common.tokens import bearer_metadata
from rmm_proto import agent_pb2, agent_pb2_grpc

DEFAULT_STATE_DIR = Path("/var/lib/rmm-agent")  # where install-service's unit points
STATE_DIR_ENV = "RMM_AGENT_STATE_DIR"
CALL_TIMEOUT_SECONDS = 30.0
PROMPT_TITLE = "Ask your support desk for help"
PROMPT_TEXT = 'What is wrong? One line, e.g. "the printer is offline":'
# Samples a snapshot keeps per collector: the report's figures without a list of every process.
MAX_SAMPLES_PER_COLLECTOR = 300
LEFT_OUT_COLLECTORS = frozenset({"processes"})
RECENT_COMMANDS_SECONDS = 24 * 3600.0  # and recent logged errors
MAX_ERRORS = 50


class HelpError(RmmError):
    """A help request or a code check that did not reach an answer."""


@dataclass(frozen=True, slots=True)
class SpoolFacts:
    """What the spool says about delivery: reports waiting for the server, reports dropped."""

    waiting: int
    dropped: int


# --- the snapshot ---------------------------------------------------------------------------


def _labels(sample: Mapping[str, Any]) -> Mapping[str, str]:
    labels = sample.get("labels")
    return labels if isinstance(labels, Mapping) else {}


def make_snapshot(
    report: Mapping[str, Any],
    spool: SpoolFacts | None,
    failed_commands: list[str],
    problems: list[str] | None = None,
) -> dict[str, Any]:
    """Return the snapshot a help request carries, from a report collected now (as
    `report_to_dict` gives it), the spool's counts and the remote commands that failed."""
    collectors = [c for c in report.get("collectors", []) if isinstance(c, Mapping)]
    by_name = {c.get("name", ""): c for c in collectors}
    samples = [s for c in collectors for s in c.get("samples", []) if isinstance(s, Mapping)]
    disks: dict[str, dict[str, Any]] = {}
    fields = {
        "disk_size_bytes": "size_bytes",
        "disk_free_bytes": "free_bytes",
        "disk_usage_ratio": "usage_ratio",
    }
    for sample in samples:
        field = fields.get(sample.get("name", ""))
        if field is not None:
            mount = str(_labels(sample).get("mountpoint", "?"))
            disks.setdefault(mount, {"mountpoint": mount})[field] = sample.get("value")
    snapshot: dict[str, Any] = {
        "collected_at": report.get("collected_at"),
        "agent_version": report.get("agent_version"),
        "host": report.get("host", {}),
        "disks": [disks[mount] for mount in sorted(disks)],
    }
    services = by_name.get("services")
    if services is not None and services.get("ok"):
        snapshot["failed_services"] = sorted(
            str(_labels(s).get("unit", "?"))
            for s in samples
            if s.get("name") == "service_failed" and s.get("value") == 1
        )
    reboot = [s.get("value") for s in samples if s.get("name") == "system_reboot_required"]
    snapshot["reboot_required"] = bool(reboot[0]) if reboot else None
    pending = {
        str(_labels(s).get("classification", "other")): s.get("value")
        for s in samples
        if s.get("name") == "patches_pending"
    }
    snapshot["patches_pending"] = pending if pending else None
    errors = [f"collector {c.get('name')}: {c.get('error')}" for c in collectors if not c.get("ok")]
    if spool is not None:
        snapshot["spool"] = {"waiting": spool.waiting, "dropped": spool.dropped}
        if spool.dropped:
            errors.append(f"{spool.dropped} reports were dropped undelivered since enrollment")
    errors.extend(failed_commands)
    errors.extend(problems or [])
    snapshot["errors"] = errors[:MAX_ERRORS]
    snapshot["report"] = [
        {
            "name": c.get("name"),
            "ok": c.get("ok"),
            "error": c.get("error", ""),
            "samples": [
                [s.get("name"), dict(_labels(s)), s.get("value")]
                for s in c.get("samples", [])[:MAX_SAMPLES_PER_COLLECTOR]
                if isinstance(s, Mapping)
            ],
        }
        for c in collectors
        if c.get("name") not in LEFT_OUT_COLLECTORS
    ]
    return snapshot


def read_spool(state_dir: Path) -> tuple[SpoolFacts | None, list[str]]:
    """Return the spool's counts as the agent last noted them (sequence.json), or None and why.

    Not from the spool itself: a running agent holds it in SQLite's exclusive locking mode, so
    a reader waits and fails ("database is locked") exactly when the agent is up.
    """
    if not (state_dir / SEQUENCE_FILE).exists():
        return None, []
    record = StateDir(state_dir).load_sequence()
    if record is None:
        return None, [f"cannot read the spool's counts in {state_dir / SEQUENCE_FILE}"]
    return SpoolFacts(record.spool_pending, record.spool_dropped), []


def read_failed_commands(state_dir: Path, now: float) -> list[str]:
    """Return the remote commands that failed or were refused here in the last day."""
    path = state_dir / HISTORY_FILE
    if not path.exists():
        return []
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2)
        try:
            rows = db.execute(
                "SELECT received_at, operator, summary, error FROM commands "
                "WHERE received_at >= ? AND error != '' ORDER BY received_at DESC LIMIT 20",
                (now - RECENT_COMMANDS_SECONDS,),
            ).fetchall()
        finally:
            db.close()
    except sqlite3.Error as exc:
        return [f"cannot read the command history {path}: {exc}"]
    return [
        f"remote command {summary or '?'} by {operator} at "
        f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(at))} failed: {error}"
        for at, operator, summary, error in rows
    ]


def read_logged_errors(state_dir: Path, now: float) -> list[str]:
    """Return the warnings and errors the running agent logged in the last day, newest first."""
    return [
        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(entry.get('at', 0)))} "
        f"{entry.get('level', '?')} {entry.get('logger', '?')}: {entry.get('message', '')}"
        for entry in reversed(read_recent_errors(state_dir))
        if isinstance(entry.get("at"), int | float) and entry["at"] >= now - RECENT_COMMANDS_SECONDS
    ]


# --- who is asking, and how ------------------------------------------------------------------


def default_state_dir(env: Mapping[str, str]) -> Path:
    """Return the state directory a user's command means when none is given."""
    return Path(env.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR)


def local_user(env: Mapping[str, str]) -> str:
    """Return who asks: the user behind sudo, else this process's user."""
    return env.get("SUDO_USER") or env.get("USER") or getpass.getuser()


def check_readable(state_dir: Path) -> None:
    """Raise, saying to use sudo, when this user may not read the agent's credential."""
    identity = state_dir / IDENTITY_FILE
    if identity.exists() and not os.access(identity, os.R_OK):
        raise ConfigError(
            f"this computer's agent keeps its credential in {identity}, which only its service "
            "user (root) may read: run the command with sudo, e.g. sudo rmm-agent help "
            '"the printer is offline"'
        )


def prompt_argv(env: Mapping[str, str], which: Callable[[str], str | None]) -> list[str] | None:
    """Return the dialog that asks for a description in a desktop session (zenity, else
    kdialog), or None when there is no display or no dialog program."""
    if not (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY")):
        return None
    zenity = which("zenity")
    if zenity is not None:
        return [zenity, "--entry", "--title", PROMPT_TITLE, "--text", PROMPT_TEXT, "--width", "480"]
    kdialog = which("kdialog")
    if kdialog is not None:
        return [kdialog, "--title", PROMPT_TITLE, "--inputbox", PROMPT_TEXT]
    return None


def prompt_command(
    env: Mapping[str, str], which: Callable[[str], str | None], platform: str, euid: int
) -> list[str] | None:
    """Return the command that asks for a description: the dialog of prompt_argv(), run as
    the user behind sudo in their own session (consent's way: runuser and their session bus on
    Linux), so it opens on their desktop, Wayland too; None when there is no dialog."""
    argv = prompt_argv(env, which)
    user = env.get("SUDO_USER", "")
    if argv is None or euid != 0 or not user or user == "root":
        return argv
    # Imported here: consent is what remote actions need; a help request needs only this.
    from rmm_agent.consent import as_user  # noqa: PLC0415
    from rmm_agent.consent.base import Session  # noqa: PLC0415

    uid = env.get("SUDO_UID", "")
    display = env.get("DISPLAY") or env.get("WAYLAND_DISPLAY", "")
    session = Session(user, "", "", display, int(uid) if uid.isdigit() else None)
    return as_user(session, argv, platform, euid)


# --- the calls ------------------------------------------------------------------------------


def _call(identity: Identity, state_dir: Path, method: str, request: Any) -> Any:
    try:
        channel = agent_channel(identity, state_dir)
    except ConfigError as error:  # the client key is missing or unreadable: nothing was sent
        raise HelpError(str(error)) from None
    try:
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        return getattr(stub, method)(
            request, metadata=bearer_metadata(identity.credential), timeout=CALL_TIMEOUT_SECONDS
        )
    except grpc.RpcError as error:
        raise HelpError(_refusal(error, identity)) from None
    finally:
        channel.close()


def _refusal(error: grpc.RpcError, identity: Identity) -> str:
    code = error.code() if hasattr(error, "code") else None
    details = (error.details() if hasattr(error, "details") else "") or ""
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return (
            f"the server refuses this computer's agent {identity.agent_id} ({details}): it was "
            "revoked or its credential is no longer valid. Call your support desk by telephone; "
            "they must enroll this computer again"
        )
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED):
        return details
    if code == grpc.StatusCode.UNAVAILABLE:
        return (
            f"{describe_rpc_error(error, identity.server, pinned=bool(identity.ca_cert_pem))}. "
            "Nothing was sent: try again later, or call your support desk by telephone"
        )
    return describe_rpc_error(error, identity.server, pinned=bool(identity.ca_cert_pem))


def request_help(
    identity: Identity, state_dir: Path, text: str, snapshot: bytes, user: str
) -> agent_pb2.HelpTicket:
    """Open a ticket for this host with the user's description and the snapshot."""
    request = agent_pb2.HelpRequest(text=text, snapshot_json=snapshot, local_user=user)
    ticket: agent_pb2.HelpTicket = _call(identity, state_dir, "RequestHelp", request)
    return ticket


def verify_code(identity: Identity, state_dir: Path, code: str) -> agent_pb2.VerifyCodeResponse:
    """Ask the server whether `code` belongs to an open ticket of this host."""
    request = agent_pb2.VerifyCodeRequest(code=code)
    answer: agent_pb2.VerifyCodeResponse = _call(identity, state_dir, "VerifyCode", request)
    return answer
