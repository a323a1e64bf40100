"""Reports end to end with real processes: the server records a real agent's outage (stopped,
started again) and the month's contract report counts it; a second outage inside a maintenance
window counts on neither side (the figures checked against ones worked out in the test from
the window's start, the agent's enrolment and the report's end); every output format parses (json
loads, csv reads as one table per section, html is one escaped page); a viewer may read
reports; bad input exits as the rest of the CLI does. The figures themselves are checked
against hand-worked numbers in tests/rmm_server/desk/test_reports.py."""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.helpers import (
    ServerProcess,
    end_all,
    end_process,
    enroll_agent,
    free_port,
    rmm,
    rmm_json,
    start_agent,
    wait_for,
)


def test_a_real_outage_in_the_contract_report_and_every_format(tmp_path: Path) -> None:
    server = ServerProcess(
        data_dir=tmp_path / "server",
        grpc_port=free_port(),
        http_port=free_port(),
        log_path=tmp_path / "server.log",
        extra_args=["--offline-grace", "0s", "--offline-check-interval", "1s"],
    ).start()
    agent = None
    try:
        enrolling = time.time()
        agent_id = enroll_agent(server, tmp_path / "agent", client="acme", site="hq")
        rmm(server, "contracts", "create", "acme", "--type", "block-hours", "--hours", "10")
        viewer = rmm_json(server, "operators", "add", "reader", "--role", "viewer")["token"]

        def last_seen() -> float:
            (row,) = rmm_json(server, "agents", "list")
            return float(row["last_seen"] or 0)

        agent = start_agent(tmp_path / "agent", tmp_path / "agent.log", 1.0)
        wait_for(lambda: last_seen() > 0, 60, "the agent's first report")
        # Enrolled and not reporting yet is offline too: that first period is at most this.
        before_first = time.time() - enrolling
        end_process(agent)
        agent = None
        stopped = time.time()
        # The outage itself: three missed 1 s intervals and the 1 s check see it within ~5 s.
        time.sleep(6)
        restarted = time.time()
        agent = start_agent(tmp_path / "agent", tmp_path / "agent.log", 1.0)
        wait_for(lambda: last_seen() > restarted, 60, "the agent's report after its restart")
        back = time.time()
        month = datetime.now(UTC).strftime("%Y-%m")

        def report() -> dict[str, object]:
            found: dict[str, object] = json.loads(
                rmm(
                    server, "reports", "contract", "--client", "acme", "--month", month,
                    "--output", "json", token=viewer,
                ).stdout
            )  # fmt: skip
            return found

        def offline() -> float:
            (row,) = report()["availability"]["agents"]  # type: ignore[index]
            assert row["agent_id"] == agent_id
            return float(row["offline_seconds"])

        # Closed by the next check after the agent is back; open until then (counted to now).
        most = back - stopped + 2 + before_first
        # An open period grows between two reads (it counts to now); a closed one does not.
        seconds = wait_for(
            lambda: (first := offline()) == offline() and 0 < first < most and first,
            30,
            "the outage's period to close",
        )
        assert restarted - stopped - 1 <= seconds <= most, (seconds, stopped, restarted, back)
        (row,) = report()["availability"]["agents"]  # type: ignore[index]
        assert 0 < row["availability"] < 1 and row["maintenance_seconds"] == 0

        # A second outage wholly inside a maintenance window counts on neither side: the
        # offline time stays as it was, the window's time leaves the enrolled time.
        window = rmm_json(
            server, "maintenance", "add", "--name", "swap", "--start", "now", "--duration",
            "1h", "--agent", agent_id,
        )  # fmt: skip
        added = time.time()  # the window counts from when the server made it, before this
        wait_for(lambda: last_seen() > added, 30, "a report inside the window")
        outages = server.log().count("1 agents went offline")
        end_process(agent)
        agent = None
        # Recorded, so what follows shows it excluded, not missed.
        wait_for(lambda: server.log().count("1 agents went offline") > outages, 30, "an outage")
        restarted = time.time()
        agent = start_agent(tmp_path / "agent", tmp_path / "agent.log", 1.0)
        wait_for(lambda: last_seen() > restarted, 60, "the agent's report after its restart")
        wait_for(lambda: offline() == seconds, 30, "the offline time as before the window")
        (listed,) = rmm_json(server, "agents", "list")
        full = report()
        (row,) = full["availability"]["agents"]  # type: ignore[index]
        end = float(full["end"])  # type: ignore[arg-type]
        enrolled = end - max(float(full["start"]), float(listed["enrolled_at"]))  # type: ignore[arg-type]
        planned = end - window["start_at"]
        assert row["enrolled_seconds"] == pytest.approx(enrolled, abs=0.01)
        assert row["maintenance_seconds"] == pytest.approx(planned, abs=1.0)
        assert row["offline_seconds"] == seconds
        counted = row["enrolled_seconds"] - row["maintenance_seconds"]
        assert row["availability"] == pytest.approx((counted - seconds) / counted)

        table = rmm(server, "reports", "contract", "--client", "acme", "--month", month)
        assert "availability" in table.stdout and "L1" in table.stdout
        text = rmm(
            server, "reports", "contract", "--client", "acme", "--month", month, "--output", "csv"
        ).stdout
        tables: list[list[list[str]]] = [[]]
        for line in csv.reader(io.StringIO(text)):
            if line:
                tables[-1].append(line)
            else:
                tables.append([])
        assert [t[1][0] for t in tables] == ["agents", "alerts", "tickets", "hours"]
        agents = [dict(zip(tables[0][0], r, strict=True)) for r in tables[0][1:]]
        assert agents[0]["agent_id"] == agent_id and float(agents[0]["availability"]) < 1
        assert [r[1] for r in tables[2][1:]] == ["L1", "L2", "L3"]
        html = rmm(
            server, "reports", "contract", "--client", "acme", "--month", month, "--output", "html"
        ).stdout
        assert html.startswith("<!DOCTYPE html>") and "<script" not in html
        assert "acme" in html and "<h2>Availability</h2>" in html

        opened = rmm_json(
            server, "tickets", "open", "--client", "acme", "--title", "x", "--category", "printing"
        )
        assert opened["category"] == "printing"
        trends = json.loads(
            rmm(server, "reports", "trends", "--since", "1d", "--output", "json").stdout
        )
        assert set(trends) >= {"alert_rules", "hosts", "clients", "ticket_categories"}
        assert trends["ticket_categories"][0]["category"] == "printing"
        assert rmm(server, "reports", "trends", "--client", "acme").returncode == 0

        def exit_of(*args: str) -> tuple[int, str]:
            done = rmm(server, "reports", *args, check=False)
            return done.returncode, done.stderr

        code, err = exit_of("contract", "--client", "nobody", "--month", month)
        assert code == 4 and "nobody" in err
        code, err = exit_of("contract", "--client", "acme", "--month", "2026-13")
        assert code == 2 and "YYYY-MM" in err
        code, err = exit_of("contract", "--client", "acme", "--month", "2999-01")
        assert code == 2 and "has not begun" in err
        code, err = exit_of("trends", "--since", "soon")
        assert code == 2 and "--since" in err
    finally:
        end_all(agent, server)
