"""Tickets end to end with real processes: a ticket on a real agent escalates from L1 to L2
when its SLA timer runs out (the server's clock with a short target), L2's receiver is told
through the notification routing and reads L1's history; time entries draw down the block
hours and the warning fires; a tier1 cannot archive or close without resolution."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.test_alerting import Receiver, alerts_in
from tests.helpers import (
    ServerProcess,
    end_process,
    enroll_agent,
    free_port,
    rmm,
    rmm_json,
    start_agent,
    wait_for,
)


def test_a_ticket_escalates_on_its_sla_and_time_draws_down_block_hours(tmp_path: Path) -> None:
    receiver = Receiver()
    notify = tmp_path / "notify.yaml"
    notify.write_text(
        "receivers:\n"
        f"  - {{name: desk, webhook: {{url: '{receiver.url}/l1'}}}}\n"
        f"  - {{name: engineers, webhook: {{url: '{receiver.url}/l2'}}}}\n"
        "route: {receiver: desk, group_by: [rule, client], group_wait: 0s, group_interval: 1s}\n"
        "tiers:\n"
        "  L1: {receiver: desk}\n"
        "  L2: {receiver: engineers}\n"
    )
    server = ServerProcess(
        data_dir=tmp_path / "server",
        grpc_port=free_port(),
        http_port=free_port(),
        log_path=tmp_path / "server.log",
        extra_args=["--notify-config", str(notify), "--escalation-check-interval", "1s"],
    ).start()
    agent = None
    try:
        agent_id = enroll_agent(server, tmp_path / "agent", client="acme", site="hq")
        agent = start_agent(tmp_path / "agent", tmp_path / "agent.log", interval=1)
        rmm_json(
            server,
            "contracts",
            "create",
            "acme",
            "--type",
            "block-hours",
            "--hours",
            "2",
            "--warn-below",
            "0.5",
            "--sla",
            "critical=3s/1h",
        )
        tier1 = rmm_json(server, "operators", "add", "l1-alice", "--role", "tier1")["token"]

        opened = rmm(
            server,
            "tickets",
            "open",
            "--agent",
            agent_id,
            "--title",
            "Mail is down",
            "--priority",
            "critical",
            "--output",
            "json",
            token=tier1,
        )
        ticket = json.loads(opened.stdout)
        number = str(ticket["id"])
        assert (ticket["client"], ticket["site"], ticket["agent_id"]) == ("acme", "hq", agent_id)
        assert (ticket["tier"], ticket["status"], ticket["opened_by"]) == ("L1", "new", "l1-alice")
        assert ticket["ack_due_at"] == ticket["opened_at"] + 3
        rmm(server, "tickets", "note", number, "mail queue holds 4,000 messages", token=tier1)

        # Nobody acknowledged it within 3 s: the server moves it to L2 and tells L2.
        escalated = wait_for(
            lambda: (t := rmm_json(server, "tickets", "show", number))["tier"] == "L2" and t,
            60,
            "the ticket's escalation to L2",
        )
        assert escalated["sla_breaches"] == ["acknowledge"]
        kinds = [event["kind"] for event in escalated["events"]]
        assert kinds == ["opened", "note", "escalate"], escalated["events"]
        assert escalated["events"][1]["text"] == "mail queue holds 4,000 messages"
        told = wait_for(lambda: receiver.posted("/l2"), 30, "L2's receiver to be told")
        [notice] = alerts_in(told[0])
        assert notice["labels"]["ticket"] == number, notice
        assert "Mail is down" in str(notice), notice
        # It stays at L2: one escalation per breach.
        assert rmm_json(server, "tickets", "show", number)["tier"] == "L2"

        # Time draws down the 2 h block; under 0.5 h left the warning fires.
        first = rmm_json(server, "tickets", "log-time", number, "--minutes", "60")
        assert (first["used_hours"], first["hours_left"], first["warning"]) == (1, 1, "")
        second = rmm(
            server, "tickets", "log-time", number, "--minutes", "45", "--note", "rebuilt the queue"
        )
        assert "0.25 h of its 2 h block left" in second.stderr, second.stderr
        assert "BLOCK HOURS LOW" in server.log()

        # tier1 may not archive, nor close what was never resolved; nothing changes.
        denied = rmm(server, "tickets", "archive", number, token=tier1, check=False)
        assert denied.returncode == 3 and "ArchiveTicket needs tier3" in denied.stderr, denied
        closing = rmm(server, "tickets", "close", number, token=tier1, check=False)
        assert closing.returncode == 3, closing
        assert "without a resolution needs tier3" in closing.stderr, closing.stderr
        shown = rmm_json(server, "tickets", "show", number)
        assert (shown["status"], shown["archived_at"]) == ("new", None)
        rmm(server, "tickets", "resolve", number, "--resolution", "queue rebuilt", token=tier1)
        rmm(server, "tickets", "close", number, token=tier1)
        archived = rmm_json(server, "tickets", "archive", number)
        assert archived["archived_by"] == "admin"
        assert [t["id"] for t in rmm_json(server, "tickets", "list", "--client", "acme")] == []
        late = rmm(server, "tickets", "log-time", number, "--minutes", "5", check=False)
        assert late.returncode == 2 and "is closed" in late.stderr

        entries = rmm_json(server, "audit", "list", "--limit", "100")
        actions = {(e["action"], e["outcome"].split(":")[0]) for e in entries}
        for wanted in (
            "OpenTicket",
            "NoteTicket",
            "LogTicketTime",
            "ResolveTicket",
            "CloseTicket",
            "ArchiveTicket",
        ):
            assert (wanted, "ok") in actions, (wanted, actions)
        assert ("ArchiveTicket", "denied") in actions, actions
    finally:
        end_process(agent)
        server.stop()
        receiver.server.shutdown()
