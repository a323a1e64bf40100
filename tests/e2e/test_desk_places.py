"""The desk's clients, sites and contracts through `rmm` against a real server and agent: a
renamed client is what the agent reports under from then on, roles are checked, wrong input
is refused with its exit code and the fix, and every change is in the audit chain."""

from __future__ import annotations

import re
from pathlib import Path

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


def cpu_labels(metrics: str, agent_id: str) -> list[tuple[str, str]]:
    pattern = rf'rmm_cpu_usage_ratio\{{client="([^"]*)",site="([^"]*)",agent="{agent_id}"\}}'
    return re.findall(pattern, metrics)


def test_clients_sites_and_contracts_end_to_end(tmp_path: Path) -> None:
    server = ServerProcess(
        data_dir=tmp_path / "server",
        grpc_port=free_port(),
        http_port=free_port(),
        log_path=tmp_path / "server.log",
    )
    server.start()
    agent = None
    try:
        state_dir = tmp_path / "agent"
        # The token for acme/hq creates both records: enrollment works as it always did.
        agent_id = enroll_agent(server, state_dir, client="acme", site="hq")
        agent = start_agent(state_dir, tmp_path / "agent.log", interval=1)
        wait_for(lambda: cpu_labels(server.metrics(), agent_id), 60, "the agent's series")
        [acme] = rmm_json(server, "clients", "list")
        assert (acme["name"], acme["sites"], acme["agents"]) == ("acme", 1, 1)

        tier2 = rmm_json(server, "operators", "add", "desk-l2", "--role", "tier2")["token"]
        denied = rmm(server, "clients", "create", "initech", token=tier2, check=False)
        assert denied.returncode == 3 and "CreateClient needs tier3" in denied.stderr, denied
        # Reading is anyone's.
        seen = rmm(server, "clients", "show", "acme", "--output", "json", token=tier2)
        assert '"agents": 1' in seen.stdout

        # A rename reaches the agent's record, the fleet and /metrics at once, and stays.
        renamed = rmm_json(server, "clients", "update", "acme", "--name", "Acme Inc")
        assert (renamed["name"], renamed["agents"]) == ("Acme Inc", 1)
        assert cpu_labels(server.metrics(), agent_id) == [("Acme Inc", "hq")]
        [listed] = rmm_json(server, "agents", "list")
        assert listed["client"] == "Acme Inc"
        sequence = rmm_json(server, "agents", "show", agent_id)["last_sequence"]
        wait_for(
            lambda: rmm_json(server, "agents", "show", agent_id)["last_sequence"] > sequence + 1,
            60,
            "reports after the rename",
        )
        assert cpu_labels(server.metrics(), agent_id) == [("Acme Inc", "hq")]

        site = rmm_json(
            server,
            "sites",
            "update",
            "Acme Inc",
            "hq",
            "--name",
            "head office",
            "--time-zone",
            "Europe/Berlin",
        )
        assert (site["name"], site["time_zone"], site["agents"]) == (
            "head office",
            "Europe/Berlin",
            1,
        )
        assert cpu_labels(server.metrics(), agent_id) == [("Acme Inc", "head office")]
        rmm_json(server, "sites", "create", "Acme Inc", "lab")
        assert [s["name"] for s in rmm_json(server, "sites", "list", "--client", "Acme Inc")] == [
            "head office",
            "lab",
        ]

        # Wrong input: named, with the CLI's exit codes, nothing written.
        unknown = rmm(server, "sites", "create", "initech", "hq", check=False)
        assert unknown.returncode == 4 and "unknown client 'initech'" in unknown.stderr, unknown
        zone = rmm(
            server, "sites", "create", "Acme Inc", "x", "--time-zone", "Mars/Base", check=False
        )
        assert zone.returncode == 2 and "time zone 'Mars/Base' is unknown" in zone.stderr

        # Contracts: admin only; wrong terms refused whole.
        tier3 = rmm_json(server, "operators", "add", "desk-l3", "--role", "tier3")["token"]
        refused = rmm(
            server, "contracts", "create", "Acme Inc", "--type", "managed", token=tier3, check=False
        )
        assert refused.returncode == 3 and "CreateContract needs admin" in refused.stderr
        bad = rmm(
            server,
            "contracts",
            "create",
            "Acme Inc",
            "--type",
            "block-hours",
            "--hours",
            "-5",
            "--sla",
            "critical=4h/1h",
            check=False,
        )
        assert bad.returncode == 2, bad
        assert "hours per period is negative" in bad.stderr, bad.stderr
        assert "cannot be met by its own definition" in bad.stderr, bad.stderr
        missing = rmm(server, "contracts", "show", "Acme Inc", check=False)
        assert missing.returncode == 4 and "has no contract" in missing.stderr
        made = rmm_json(
            server,
            "contracts",
            "create",
            "Acme Inc",
            "--type",
            "block-hours",
            "--hours",
            "20",
            "--warn-below",
            "4",
            "--sla",
            "critical=15m/4h",
            "--sla",
            "warning=1h/2d/business",
        )
        assert (made["type"], made["hours_per_period"], made["rate"]) == ("block-hours", 20, None)
        assert made["sla"]["critical"] == {
            "acknowledge_seconds": 900,
            "resolve_seconds": 14400,
            "clock": "24x7",
        }
        assert made["sla"]["warning"]["clock"] == "business"
        changed = rmm_json(server, "contracts", "update", "Acme Inc", "--hours", "30")
        assert (changed["hours_per_period"], changed["warn_below_hours"]) == (30, 4)
        assert rmm_json(server, "clients", "show", "Acme Inc")["has_contract"] is True
        table = rmm(server, "contracts", "list").stdout
        assert "Acme Inc" in table and "30 h a month" in table, table
        # Business hours per weekday and holidays; a wrong date is named, nothing changes.
        calendar = rmm_json(
            server, "contracts", "update", "Acme Inc",
            "--business-hours", "mon-fri 08:00-18:00; sat 09:00-12:00",
            "--holiday", "2026-12-26", "--holiday", "2026-12-25",
        )  # fmt: skip
        assert calendar["business_hours"] == "mon-fri 08:00-18:00; sat 09:00-12:00"
        assert calendar["holidays"] == ["2026-12-25", "2026-12-26"]
        wrong = rmm(
            server, "contracts", "update", "Acme Inc", "--holiday", "2026-12-32", check=False
        )
        assert wrong.returncode == 2 and "--holiday '2026-12-32' is not a date" in wrong.stderr
        shown = rmm(server, "contracts", "show", "Acme Inc").stdout
        assert "holidays 2026-12-25, 2026-12-26" in shown, shown
        cleared = rmm_json(server, "contracts", "update", "Acme Inc", "--clear-holidays")
        assert cleared["holidays"] == []

        # Every change, the refused ones too, in the audit chain.
        actions = [
            (entry["action"], entry["outcome"].split(":")[0])
            for entry in rmm_json(server, "audit", "list", "--limit", "100")
        ]
        for wanted in (
            ("CreateClient", "denied"),
            ("UpdateClient", "ok"),
            ("UpdateSite", "ok"),
            ("CreateSite", "ok"),
            ("CreateContract", "ok"),
            ("UpdateContract", "ok"),
        ):
            assert any(a == wanted[0] and o.startswith(wanted[1]) for a, o in actions), (
                wanted,
                actions,
            )
        verified = rmm(server, "audit", "verify")
        assert verified.returncode == 0, verified.stderr
    finally:
        end_process(agent)
        server.stop()
