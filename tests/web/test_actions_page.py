"""The agent page's actions without a server: forms to requests, roles to forms, the services
the page lists (SQLite and PostgreSQL) and its template's buttons per role."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from rmm_common.errors import InvalidArgument, NotFound
from rmm_proto import agent_pb2, commands_pb2
from rmm_server.roles import Role
from rmm_server.storage import Store, open_store
from rmm_server.storage.commands import CommandQuery, CommandRecord, CommandStore
from rmm_server.web.actions_page import (
    MAX_FILE_BYTES,
    ActionsView,
    ServiceRow,
    action_request,
    allowed_actions,
    attachment_name,
    failed_services,
    listed_services,
)
from rmm_server.web.routes import _environment
from rmm_server.web.sessions import Session

Status = commands_pb2.CommandStatus


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    store = open_store(db_url)
    yield store
    store.close()


def stored(
    command_id: str, action: str, status: int, result: commands_pb2.CommandResult | None
) -> CommandRecord:
    return CommandRecord(
        id=command_id,
        run_id="run",
        agent_id="a1",
        hostname="host",
        operator="alice",
        action=action,
        summary=action,
        status=status,
        issued_at=float(len(command_id)),
        expires_at=1e10,
        signed=b"x",
        finished_at=2.0,
        result=result.SerializeToString() if result is not None else None,
    )


def services(*names: str) -> commands_pb2.CommandResult:
    listed = [
        commands_pb2.ServiceInfo(name=n, state="running", start_mode="enabled") for n in names
    ]
    return commands_pb2.CommandResult(services=commands_pb2.ServiceList(services=listed))


def test_the_page_lists_the_latest_succeeded_service_list(store: Store) -> None:
    commands = CommandStore(store)
    assert listed_services(commands, "a1") == ([], None)
    commands.insert(
        [
            stored("c1", "list_services", Status.COMMAND_SUCCEEDED, services("old.service")),
            stored(
                "c22", "list_services", Status.COMMAND_SUCCEEDED, services("z.service", "a.service")
            ),
            stored("c333", "list_services", Status.COMMAND_FAILED, services("failed-list.service")),
            stored("c4444", "collect_now", Status.COMMAND_SUCCEEDED, None),
        ]
    )
    rows, listed_at = listed_services(commands, "a1")
    assert [row.name for row in rows] == ["a.service", "z.service"] and listed_at == 2.0


def test_listing_pages_read_no_pulled_files_data(store: Store) -> None:
    commands = CommandStore(store)
    pulled = commands_pb2.CommandResult(file=commands_pb2.FileResult(path="/x", data=b"\0" * 4096))
    commands.insert(
        [
            stored("p1", "pull_file", Status.COMMAND_SUCCEEDED, pulled),
            stored("s22", "list_services", Status.COMMAND_SUCCEEDED, services("a.service")),
        ]
    )
    light = {r.id: r for r in commands.query(CommandQuery(agent_id="a1", without_file_data=True))}
    assert light["p1"].result is None and light["p1"].summary == "pull_file"
    assert light["s22"].result == services("a.service").SerializeToString()
    full = commands.get("p1")
    assert full is not None and full.result == pulled.SerializeToString()


def test_failed_units_come_from_the_latest_report() -> None:
    report = agent_pb2.Report()
    collector = report.collectors.add(name="services")
    for unit, value in (("b.service", 1.0), ("a.service", 1.0), ("ok.service", 0.0)):
        collector.samples.add(name="service_failed", value=value, labels={"unit": unit})
    collector.samples.add(name="services_by_state", value=3.0, labels={"state": "failed"})
    assert failed_services(report) == ["a.service", "b.service"]
    assert failed_services(None) == []


def test_each_role_gets_the_actions_the_cli_allows_it() -> None:
    assert not any(allowed_actions(Role.VIEWER).values())
    tier1 = {name for name, may in allowed_actions(Role.TIER1).items() if may}
    assert tier1 == {"collect_now", "list_services", "list_processes"}
    assert all(allowed_actions(Role.TIER2).values())


@pytest.mark.parametrize(
    ("action", "form", "problem"),
    [
        ("reboot", {"delay": "5m"}, "to confirm the reboot"),
        ("reboot", {"confirm": "yes", "delay": "soon"}, "delay"),
        ("service_control", {"name": "nginx", "operation": "reload"}, "start, stop or restart"),
        ("kill_process", {"pid": "12", "name": "x"}, "exactly one"),
        ("kill_process", {"pid": "-1"}, "exactly one"),
        ("list_processes", {"top": "ten"}, "whole number"),
        ("pull_file", {"path": "relative/x"}, "must be an absolute path"),
        ("push_file", {"path": "/tmp/x"}, "choose a file"),
    ],
)
def test_a_bad_form_is_refused_naming_the_field(
    action: str, form: dict[str, str], problem: str
) -> None:
    with pytest.raises(InvalidArgument, match=problem):
        action_request("a1", action, form, "alice", "tier2")


def test_forms_become_the_messages_the_cli_sends() -> None:
    reboot = action_request(
        "a1", "reboot", {"confirm": "yes", "delay": "2m", "reason": "kernel"}, "alice", "tier2"
    )
    assert reboot.payload == commands_pb2.Reboot(delay_seconds=120, reason="kernel")
    assert list(reboot.target.agents) == ["a1"] and reboot.detach and reboot.role == "tier2"
    assert not reboot.queue_offline
    queued = action_request(
        "a1", "reboot", {"confirm": "yes", "queue_offline": "yes"}, "al", "tier2"
    )
    assert queued.queue_offline
    windows = action_request("a1", "pull_file", {"path": "C:\\logs\\app.log"}, "alice", "tier2")
    assert windows.payload == commands_pb2.PullFile(
        path="C:\\logs\\app.log", max_bytes=MAX_FILE_BYTES
    )
    data = b"config\n"
    upload = web.FileField(
        "file", "x.conf", io.BytesIO(data), "text/plain", CIMultiDictProxy(CIMultiDict[str]())
    )
    push = action_request(
        "a1", "push_file", {"path": "/etc/x.conf", "mode": "600", "file": upload}, "alice", "tier2"
    )
    assert push.payload.mode == 0o600 and push.payload.data == data and not push.payload.overwrite
    with pytest.raises(NotFound, match="no action 'driver_package'"):
        action_request("a1", "driver_package", {}, "alice", "tier3")


def test_an_upload_over_the_agents_limit_is_refused() -> None:
    big = web.FileField(
        "file",
        "big.bin",
        io.BytesIO(b"\0" * (MAX_FILE_BYTES + 1)),
        "",
        CIMultiDictProxy(CIMultiDict[str]()),
    )
    with pytest.raises(InvalidArgument, match="over 8 MiB"):
        action_request("a1", "push_file", {"path": "/tmp/big", "file": big}, "alice", "tier2")


def test_a_downloaded_files_name_is_the_hosts_basename_made_safe() -> None:
    assert attachment_name("/var/log/syslog") == "syslog"
    assert attachment_name('C:\\Logs\\a b"c.txt') == "a_b_c.txt"
    assert attachment_name("/") == "file"


@pytest.mark.parametrize(
    ("role", "buttons"),
    [(Role.VIEWER, 0), (Role.TIER1, 0), (Role.TIER2, 3 * 2)],
)
def test_service_buttons_show_for_the_roles_that_may_use_them(role: Role, buttons: int) -> None:
    view = ActionsView(
        agent_id="a1",
        may=allowed_actions(role),
        consent="notify: …",
        services=[ServiceRow("cron.service", "running", "enabled", "cron <b>daemon</b>")],
        services_listed_at=2.0,
        failed_services=["bad.service"],
    )
    session = Session("s", "o", "alice", role, "tok", 0.0, 0.0)
    html = _environment().get_template("agent_actions.html").render(actions=view, session=session)
    assert html.count('name="operation" value=') == buttons + (3 if buttons else 0)
    assert ('id="actions"' in html) == (role >= Role.TIER1)
    assert ('data-service="cron.service"' in html) == (role >= Role.TIER1)
    assert "<b>daemon" not in html
