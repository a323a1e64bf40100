"""Tickets end to end with real processes: a real agent's alert opens a ticket at L1,
which escalates to L2 when its SLA timer runs out (the server's clock, a short target); L2's
receiver is told through the notification routing and L2 reads L1's history; time entries
draw down the block hours and the warning fires; a tier1 cannot archive or close without
resolution; what the server did itself is in the audit chain too; a PSA's webhook hears every
event."""

from __future__ import annotations

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

POLICY = """\
apiVersion: rmm/v1
kind: AlertPolicy
metadata: {name: desk}
scope: {all: true}
rules:
  - name: DeskCpuCounted
    expr: cpu_logical_cores > 0.0
    severity: critical
    ticket: L1
"""


def test_an_alert_opens_a_ticket_that_escalates_on_its_sla_and_time_draws_down_block_hours(
    tmp_path: Path,
) -> None:
    receiver = Receiver()
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "desk.yaml").write_text(POLICY)
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
        extra_args=[
            "--policies",
            str(policies),
            "--notify-config",
            str(notify),
            "--escalation-check-interval",
            "1s",
            "--psa-webhook",
            f"{receiver.url}/psa",
        ],
    ).start()
    agent = None
    try:
        agent_id = enroll_agent(server, tmp_path / "agent", client="acme", site="hq")
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
            "critical=4s/1h",
        )
        tier1 = rmm_json(server, "operators", "add", "l1-alice", "--role", "tier1")["token"]
        agent = start_agent(tmp_path / "agent", tmp_path / "agent.log", interval=1)

        # The rule fires and opens a ticket at L1 with the alert, the agent and its metrics.
        [listed] = wait_for(
            lambda: rmm_json(server, "tickets", "list", "--client", "acme"), 60, "the ticket"
        )
        number = str(listed["id"])
        ticket = rmm_json(server, "tickets", "show", number)
        assert (ticket["client"], ticket["site"], ticket["agent_id"]) == ("acme", "hq", agent_id)
        assert (ticket["tier"], ticket["status"], ticket["opened_by"]) == ("L1", "new", "alert")
        assert ticket["priority"] == "critical" and ticket["alert_id"]
        assert ticket["ack_due_at"] == ticket["opened_at"] + 4
        facts = ticket["events"][0]["text"]
        assert f"alert {ticket['alert_id']}: rule DeskCpuCounted" in facts, facts
        assert "latest metrics: " in facts and "cpu_usage_ratio=" in facts, facts
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
        assert "DeskCpuCounted on" in str(notice), notice
        # It stays at L2: one escalation per breach.
        assert rmm_json(server, "tickets", "show", number)["tier"] == "L2"

        # L2 works on the agent for the ticket: the run and its outcome stay on the ticket.
        ran = rmm(server, "run", "-t", agent_id, "--command", "echo queue-ok", "--ticket", number)
        assert "queue-ok" in ran.stdout, ran.stdout
        events = rmm_json(server, "tickets", "show", number)["events"]
        commands = [e["text"] for e in events if e["kind"] == "command"]
        assert len(commands) == 2, events
        assert (
            commands[0].startswith("run ")
            and "script 'echo queue-ok' on 1 agent(s)" in (commands[0])
        )
        assert "ended: " in commands[1] and "succeeded, exit 0" in commands[1], commands

        # Time draws down the 2 h block; under 0.5 h left the warning fires.
        first = rmm_json(server, "tickets", "log-time", number, "--minutes", "60")
        assert (first["used_hours"], first["hours_left"], first["warning"]) == (1, 1, "")
        second = rmm(
            server, "tickets", "log-time", number, "--minutes", "45", "--note", "rebuilt the queue"
        )
        assert "0.25 h of its 2 h block left" in second.stderr, second.stderr
        assert "BLOCK HOURS LOW" in server.log()
        # ... and the client's warning reaches the notifiers (the ticket's tier, L2, and the root).
        hours = wait_for(
            lambda: [
                a
                for body in receiver.posted("/l2")
                for a in alerts_in(body)
                if a.get("labels", {}).get("alertname") == "BlockHoursLow"
                or a.get("rule") == "BlockHoursLow"
            ],
            30,
            "the block hours warning at L2's receiver",
        )
        assert "0.25 h of its 2 h block left" in str(hours[0]), hours

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
        # Nothing is sent for a closed ticket.
        refused = rmm(
            server, "run", "-t", agent_id, "--command", "true", "--ticket", number, check=False
        )
        assert refused.returncode == 2 and "cannot run a command for it" in refused.stderr
        assert len(rmm_json(server, "commands", "list", "--agent", agent_id)) == 1

        entries = rmm_json(server, "audit", "list", "--limit", "100")
        actions = {(e["action"], e["outcome"].split(":")[0]) for e in entries}
        for wanted in (
            "NoteTicket",
            "LogTicketTime",
            "ResolveTicket",
            "CloseTicket",
            "ArchiveTicket",
        ):
            assert (wanted, "ok") in actions, (wanted, actions)
        assert ("ArchiveTicket", "denied") in actions, actions
        # What the server did itself is in the chain too: the alert's ticket, the escalation.
        by_server = {(e["operator"], e["action"], e["target"]) for e in entries}
        assert ("alert", "TicketFromAlert", number) in by_server, by_server
        assert ("sla", "TicketSlaEscalation", number) in by_server, by_server
        assert rmm(server, "audit", "verify").returncode == 0

        # The PSA heard every event of the ticket, in order, whoever caused it.
        def psa_kinds() -> list[str]:
            return [
                body["event"]["kind"]
                for body in receiver.posted("/psa")
                if body["ticket"]["id"] == int(number)
            ]

        wait_for(lambda: psa_kinds()[-1:] == ["status"], 30, "the archive event at the PSA")
        kinds = psa_kinds()
        assert kinds[:3] == ["opened", "note", "escalate"], kinds
        for kind in ("command", "time", "status"):
            assert kind in kinds, kinds
        last = receiver.posted("/psa")[-1]
        assert last["ticket"]["archived_at"] and last["event"]["text"] == "archived", last
    finally:
        end_process(agent)
        server.stop()
        receiver.server.shutdown()
