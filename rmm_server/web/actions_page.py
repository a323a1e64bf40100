"""The agent page's remote actions: reboot, services, processes, files and collect-now.

Each action is one form on the agent page, posted with the session's CSRF token to
/agents/{id}/actions/{action}. It becomes the RunRequest the `rmm` command would send (one
message per action, built by a parser in ACTION_FORMS) and goes through the same RunService:
the role each action needs (rmm_server.roles.ACTION_ROLE, checked by the run service, which
audits a refusal), signing, and the audit entries of the commands service (one per command sent
and per result). The run starts detached and the browser goes to its run page, which polls each
agent's result as the commands page's runs do. A pulled file is downloaded from
/commands/{id}/file, checked against the agent's sha256 first.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

from aiohttp import web
from google.protobuf.message import Message

from rmm_common.durations import parse_duration
from rmm_common.errors import InvalidArgument, NotFound, PermissionDenied
from rmm_proto import agent_pb2, commands_pb2, operator_pb2
from rmm_server.commands import decode_result
from rmm_server.desk.ticket_runs import start_for_ticket, ticket_number
from rmm_server.desk.tickets import Tickets
from rmm_server.ratelimit import RateLimited, RateLimits
from rmm_server.roles import ACTION_ROLE, REQUIRED_ROLE, Role
from rmm_server.runs import Run, RunRequest, RunService
from rmm_server.storage import AgentRecord
from rmm_server.storage.commands import CommandQuery, CommandStore
from rmm_server.web.sessions import Session

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Page = Callable[[Role, Handler], Handler]
Render = Callable[..., web.Response]

# The agent's default limit for a file either way (as `rmm files push|pull`): the file travels
# inside one command message.
MAX_FILE_BYTES = 8 * 1024 * 1024
# An upload's whole form: the file, its fields and the multipart framing.
UPLOAD_BODY_BYTES = MAX_FILE_BYTES + 64 * 1024
# The services listed on the page from the agent's last `list_services` answer.
MAX_SERVICE_ROWS = 1000
CONSENT_WORDS: dict[int, str] = {
    commands_pb2.CONSENT_UNATTENDED: "unattended: nobody on the host is told or asked",
    commands_pb2.CONSENT_NOTIFY: "notify: logged-in users are told who reboots and why",
    commands_pb2.CONSENT_ASK: (
        "ask: a logged-in user must say yes first (no answer in time declines it)"
    ),
}
OPERATIONS = {
    "start": commands_pb2.SERVICE_START,
    "stop": commands_pb2.SERVICE_STOP,
    "restart": commands_pb2.SERVICE_RESTART,
}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _text(form: Mapping[str, Any], name: str) -> str:
    value = form.get(name, "")
    return value.strip() if isinstance(value, str) else ""


def _absolute(path: str, what: str) -> str:
    if not (PurePosixPath(path).is_absolute() or PureWindowsPath(path).is_absolute()):
        raise InvalidArgument(
            f"{what} {path!r} must be an absolute path on the host (e.g. /etc/app.conf or "
            "C:\\app\\x.cfg)"
        )
    return path


def _collect_now(form: Mapping[str, Any]) -> Message:
    return commands_pb2.CollectNow()


def _list_services(form: Mapping[str, Any]) -> Message:
    return commands_pb2.ListServices(name=_text(form, "name"))


def _service_control(form: Mapping[str, Any]) -> Message:
    name = _text(form, "name")
    operation = OPERATIONS.get(_text(form, "operation"))
    if not name or operation is None:
        raise InvalidArgument(
            "a service action needs the service's name and one of start, stop or restart"
        )
    return commands_pb2.ServiceControl(name=name, operation=operation)


def _reboot(form: Mapping[str, Any]) -> Message:
    if _text(form, "confirm") != "yes":
        raise InvalidArgument("tick 'Reboot this host' to confirm the reboot; nothing was sent")
    delay = _text(form, "delay") or "0s"
    try:
        delay_seconds = parse_duration(delay)
    except (InvalidArgument, ValueError) as exc:
        raise InvalidArgument(f"reboot delay: {exc}") from None
    return commands_pb2.Reboot(delay_seconds=delay_seconds, reason=_text(form, "reason"))


def _list_processes(form: Mapping[str, Any]) -> Message:
    top = _text(form, "top") or "0"
    if not top.isdigit():
        raise InvalidArgument(f"top {top!r}: give a whole number of processes (0: all)")
    return commands_pb2.ListProcesses(name=_text(form, "name"), limit=int(top))


def _kill_process(form: Mapping[str, Any]) -> Message:
    pid, name = _text(form, "pid"), _text(form, "name")
    if bool(pid) == bool(name) or (pid and not pid.isdigit()) or pid == "0":
        raise InvalidArgument("give exactly one of a process id (a number) or a process name")
    force = _text(form, "force") == "yes"
    return commands_pb2.KillProcess(pid=int(pid or 0), name=name, force=force)


def _pull_file(form: Mapping[str, Any]) -> Message:
    path = _absolute(_text(form, "path"), "path")
    return commands_pb2.PullFile(path=path, max_bytes=MAX_FILE_BYTES)


def _push_file(form: Mapping[str, Any]) -> Message:
    path = _absolute(_text(form, "path"), "path")
    upload = form.get("file")
    if not isinstance(upload, web.FileField):
        raise InvalidArgument("choose a file to upload")
    upload.file.seek(0)
    data = upload.file.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise InvalidArgument(
            f"{upload.filename} is over {MAX_FILE_BYTES // (1024 * 1024)} MiB, the agent's "
            "limit (the file travels inside the command): have the host download it instead"
        )
    mode_text = _text(form, "mode") or "0644"
    try:
        mode = int(mode_text, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o7777:
        raise InvalidArgument(f"mode {mode_text!r}: give octal permissions such as 0644 or 0755")
    return commands_pb2.PushFile(
        path=path,
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        mode=mode,
        overwrite=_text(form, "overwrite") == "yes",
    )


# The actions the agent page offers: the Command's action field and how its form becomes the
# action's message. The role each needs is ACTION_ROLE's.
ACTION_FORMS: dict[str, Callable[[Mapping[str, Any]], Message]] = {
    "collect_now": _collect_now,
    "list_services": _list_services,
    "service_control": _service_control,
    "reboot": _reboot,
    "list_processes": _list_processes,
    "kill_process": _kill_process,
    "pull_file": _pull_file,
    "push_file": _push_file,
}


def action_request(
    agent_id: str, action: str, form: Mapping[str, Any], operator: str, role: str
) -> RunRequest:
    """Return the run request an action's form asks for, as the CLI's would be."""
    parse = ACTION_FORMS.get(action)
    if parse is None:
        raise NotFound(f"the agent page has no action {action!r}")
    return RunRequest(
        operator=operator,
        role=role,
        action=action,
        payload=parse(form),
        target=operator_pb2.TargetSelector(agents=[agent_id]),
        # As --queue-offline: sent when the agent reconnects, within a day.
        queue_offline=_text(form, "queue_offline") == "yes",
        detach=True,
        # As --ticket: checked open, the run written on it, named in consent prompts.
        ticket=ticket_number(_text(form, "ticket")),
    )


def allowed_actions(role: Role) -> dict[str, bool]:
    """Return which of the page's actions `role` may send (RunCommand's and the action's role)."""
    return {
        action: role >= max(ACTION_ROLE[action], REQUIRED_ROLE["RunCommand"])
        for action in ACTION_FORMS
    }


@dataclass(frozen=True, slots=True)
class ServiceRow:
    """One service as the agent last listed it (or as its report names a failed one)."""

    name: str
    state: str
    start_mode: str
    description: str


@dataclass(frozen=True, slots=True)
class ActionsView:
    """What the agent page's actions section shows: the forms this operator may use."""

    agent_id: str
    may: dict[str, bool]
    consent: str
    services: list[ServiceRow]
    services_listed_at: float | None
    failed_services: list[str]
    # The ticket the page was opened for (?ticket=N): every form sends it, as rmm's --ticket.
    ticket: str = ""

    @property
    def any(self) -> bool:
        """Say whether the operator may send any action at all."""
        return any(self.may.values())


def _shown_ticket(text: str) -> str:
    try:
        return str(ticket_number(text) or "")
    except InvalidArgument:
        return ""  # a link's bad ?ticket= is not carried into the forms: they send none


def failed_services(report: agent_pb2.Report | None) -> list[str]:
    """Return the units the latest report says have failed (its services collector's)."""
    if report is None:
        return []
    return sorted(
        {
            sample.labels.get("unit", "")
            for collector in report.collectors
            for sample in collector.samples
            if sample.name == "service_failed" and sample.value >= 1
        }
        - {""}
    )


def listed_services(store: CommandStore, agent_id: str) -> tuple[list[ServiceRow], float | None]:
    """Return the services of the agent's latest succeeded `list_services`, and when it ran."""
    # That one command only: an agent's other results may be large (pulled files).
    records = store.query(
        CommandQuery(
            agent_id=agent_id,
            statuses=(commands_pb2.COMMAND_SUCCEEDED,),
            action="list_services",
            limit=1,
        )
    )
    for record in records:
        result = decode_result(record)
        if result is None or result.WhichOneof("result") != "services":
            continue
        rows = [
            ServiceRow(s.name, s.state, s.start_mode, s.description)
            for s in sorted(result.services.services, key=lambda s: s.name)
        ]
        return rows[:MAX_SERVICE_ROWS], record.finished_at
    return [], None


def attachment_name(path: str) -> str:
    """Return the last part of a host's path, safe as a downloaded file's name."""
    parts = [part for part in re.split(r"[\\/]", path) if part]
    name = _UNSAFE.sub("_", parts[-1] if parts else "").strip("._")
    return name[:100] or "file"


class AgentActions:
    """The agent page's action forms, their POST route and pulled files' downloads."""

    def __init__(
        self,
        runs: RunService | None,
        commands: CommandStore,
        limits: RateLimits | None,
        render: Render,
        message: Callable[[web.Request, int, str, str], web.Response],
        remember: Callable[[Run], None],
        headers: Mapping[str, str],
        tickets: Callable[[], Tickets] | None = None,
    ) -> None:
        self.runs = runs
        self.tickets = tickets  # a run's ticket is checked and written on through these
        self.commands = commands
        self.limits = limits
        self.render = render
        self.message = message
        self.remember = remember
        self.headers = dict(headers)

    def add_routes(self, app: web.Application, page: Page) -> None:
        """Add the action and download routes, each behind `page` (session, role, CSRF)."""
        # Any role may reach the handler: the run service checks the action's own role as it
        # does for `rmm`, and audits a refusal.
        post = page(Role.VIEWER, self._act)

        async def upload(request: web.Request) -> web.StreamResponse:
            # The only form that carries a file: its body may be up to the agent's file limit.
            return await post(request.clone(client_max_size=UPLOAD_BODY_BYTES))

        app.router.add_post("/agents/{agent_id}/actions/push_file", upload)
        app.router.add_post("/agents/{agent_id}/actions/{action}", post)
        app.router.add_get(
            "/commands/{command_id}/file", page(REQUIRED_ROLE["GetCommand"], self._download)
        )

    def view(
        self,
        session: Session,
        agent: AgentRecord,
        report: agent_pb2.Report | None,
        ticket: str = "",
    ) -> ActionsView:
        """Return the actions section of an agent's page (blocking: reads the database)."""
        may = (
            allowed_actions(session.role)
            if self.runs is not None
            else dict.fromkeys(ACTION_FORMS, False)
        )
        services: list[ServiceRow] = []
        listed_at: float | None = None
        if may["list_services"] or may["service_control"]:
            services, listed_at = listed_services(self.commands, agent.id)
        consent = self.runs.consent_for(agent) if self.runs is not None else 0
        return ActionsView(
            agent_id=agent.id,
            may=may,
            consent=CONSENT_WORDS.get(consent, str(consent)),
            services=services,
            services_listed_at=listed_at,
            failed_services=failed_services(report),
            ticket=_shown_ticket(ticket),
        )

    async def _act(self, request: web.Request) -> web.StreamResponse:
        session: Session = request["session"]
        agent_id = request.match_info["agent_id"]
        action = request.match_info.get("action", "push_file")
        if self.runs is None:
            return self.message(request, 404, "No commands", "This server sends no commands.")
        try:
            if self.limits is not None:
                self.limits.check_operator(session.operator)
            run_request = await asyncio.to_thread(
                action_request,
                agent_id,
                action,
                request["form"],
                session.operator,
                session.role.name.lower(),
            )
            tickets = self.tickets() if self.tickets is not None else None
            run = await start_for_ticket(self.runs, run_request, tickets)
        except RateLimited as exc:
            return self.message(request, 429, "Too many requests", str(exc))
        except (InvalidArgument, NotFound, PermissionDenied) as exc:
            # A refusal by role is audited by the run service, as for `rmm`.
            status = {PermissionDenied: 403, NotFound: 404}.get(type(exc), 400)
            back = f" Back to the agent: /agents/{agent_id}."
            return self.message(request, status, "Not sent", f"{exc}.{back}")
        self.remember(run)
        raise web.HTTPSeeOther(f"/commands/runs/{run.id}")

    async def _download(self, request: web.Request) -> web.StreamResponse:
        command_id = request.match_info["command_id"]
        record = await asyncio.to_thread(self.commands.get, command_id)
        result = decode_result(record) if record is not None else None
        if record is None or result is None or result.WhichOneof("result") != "file":
            return self.message(
                request,
                404,
                "No file",
                f"Command {command_id} has no pulled file: only a pull_file command that "
                "succeeded has one.",
            )
        pulled = result.file
        digest = hashlib.sha256(pulled.data).hexdigest()
        if not pulled.sha256 or digest != pulled.sha256.lower():
            return self.message(
                request,
                502,
                "File damaged",
                f"The stored data's sha256 {digest[:12]} does not match the agent's "
                f"{pulled.sha256[:12] or '(none)'}: pull the file again.",
            )
        name = attachment_name(pulled.path)
        return web.Response(
            body=pulled.data,
            content_type="application/octet-stream",
            headers={
                **self.headers,
                "Content-Disposition": f'attachment; filename="{name}"',
                "X-Checksum-Sha256": digest,
            },
        )
