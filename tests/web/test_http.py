"""The dashboard over HTTP against a real server: login, cookies, CSRF, roles, 404, escaping."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

from rmm_server.roles import Role
from rmm_server.web.history import SERIES
from tests.helpers import rmm_json, wait_for
from tests.web.client import Browser
from tests.web.conftest import Fleet


def logged_in(fleet: Fleet, role: Role) -> Browser:
    browser = Browser(fleet.server.http_url)
    reply = browser.login(fleet.tokens[role])
    assert reply.status == 303, reply.body
    return browser


def audit(fleet: Fleet, *args: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = rmm_json(
        fleet.server, "audit", "list", "--limit", "5000", *args
    )
    return entries


def acknowledged_by(fleet: Fleet, alert_id: str) -> str | None:
    found = rmm_json(fleet.server, "alerts", "list", "--state", "firing")
    by: str | None = next(a for a in found if a["id"] == alert_id)["acknowledged_by"]
    return by


def firing_alert(fleet: Fleet) -> dict[str, Any]:
    found = rmm_json(fleet.server, "alerts", "list", "--state", "firing")
    open_ones = [a for a in found if not a.get("acknowledged_by")]
    assert open_ones, found
    alert: dict[str, Any] = open_ones[0]
    return alert


def test_a_page_without_a_session_goes_to_login_and_back_to_it(fleet: Fleet) -> None:
    browser = Browser(fleet.server.http_url)
    asked = "/fleet?client=acme&status=online"
    reply = browser.get(asked)
    assert reply.status == 303
    where = urlsplit(reply.location)
    assert where.path == "/login" and parse_qs(where.query) == {"next": [asked]}
    login = browser.login(fleet.tokens[Role.VIEWER], next_path=asked)
    assert login.status == 303 and login.location == asked
    page = browser.get(login.location)
    assert page.status == 200 and "1 of 1 agents match" in page.body


def test_the_session_cookie_is_httponly_samesite_strict_and_not_secure_over_plain_http(
    fleet: Fleet,
) -> None:
    browser = Browser(fleet.server.http_url)
    reply = browser.login(fleet.tokens[Role.VIEWER])
    session = [c for c in reply.set_cookies() if c.startswith("rmm_session=")]
    assert len(session) == 1, reply.set_cookies()
    flags = [part.strip().lower() for part in session[0].split(";")]
    assert "httponly" in flags and "samesite=strict" in flags and "path=/" in flags
    assert "secure" not in flags  # plain HTTP (the server runs --insecure): a browser would drop it


def test_a_wrong_token_gets_a_clear_message_and_no_session(fleet: Fleet) -> None:
    browser = Browser(fleet.server.http_url)
    reply = browser.login("rmm_opr_not-a-real-token")
    assert reply.status == 401
    assert "That operator token was not accepted" in reply.body
    assert "rmm_session" not in browser.cookies
    assert browser.get("/fleet").status == 303


def test_a_login_without_the_forms_csrf_token_is_refused(fleet: Fleet) -> None:
    browser = Browser(fleet.server.http_url)
    reply = browser.post("/login", {"token": fleet.tokens[Role.ADMIN], "next": "/fleet"})
    assert reply.status == 403 and "rmm_session" not in browser.cookies


def test_the_fleet_overview_shows_the_agent_and_its_firing_alert(fleet: Fleet) -> None:
    browser = logged_in(fleet, Role.VIEWER)
    page = browser.get("/fleet")
    assert page.status == 200
    assert f'href="/agents/{fleet.agent_id}"' in page.body
    assert "acme" in page.body and "hq" in page.body
    assert 'data-severity="warning">warning 1<' in page.body
    live = browser.get("/fleet/live?q=no-such-host", headers={"HX-Request": "true"})
    assert live.status == 200 and "No agent matches these filters." in live.body
    assert "<html" not in live.body  # a fragment for htmx to swap in


def test_the_agent_page_shows_identity_collectors_and_alerts(fleet: Fleet) -> None:
    browser = logged_in(fleet, Role.VIEWER)
    page = browser.get(f"/agents/{fleet.agent_id}")
    assert page.status == 200
    assert fleet.agent_id in page.body and "web-test" in page.body
    assert "MemoryInUse" in page.body
    assert "memory_usage_ratio" in page.body  # the latest report's samples, per collector
    assert "<h2>Inventory</h2>" in page.body and "No inventory stored yet." not in page.body


def test_an_unknown_agent_is_a_404_page_with_a_link_back(fleet: Fleet) -> None:
    browser = logged_in(fleet, Role.VIEWER)
    page = browser.get("/agents/no-such-agent")
    assert page.status == 404
    assert "There is no agent no-such-agent" in page.body and 'href="/fleet"' in page.body
    assert "Traceback" not in page.body


def test_agent_supplied_text_in_a_url_is_escaped(fleet: Fleet) -> None:
    browser = logged_in(fleet, Role.VIEWER)
    page = browser.get("/agents/%3Cscript%3Ealert(1)%3C%2Fscript%3E")
    assert page.status == 404
    assert "<script>alert(1)" not in page.body and "&lt;script&gt;alert(1)" in page.body


def test_an_ack_without_csrf_is_refused_and_changes_nothing(fleet: Fleet) -> None:
    browser = logged_in(fleet, Role.TIER1)
    alert = firing_alert(fleet)
    before = len(audit(fleet))
    reply = browser.post(f"/alerts/{alert['id']}/ack", {"comment": "on it"})
    assert reply.status == 403 and "CSRF" in reply.body
    reply = browser.post(f"/alerts/{alert['id']}/ack", {"comment": "on it", "csrf": "forged"})
    assert reply.status == 403
    assert acknowledged_by(fleet, alert["id"]) is None
    assert len(audit(fleet)) == before


def test_a_viewer_sees_alerts_but_may_not_acknowledge(fleet: Fleet) -> None:
    browser = logged_in(fleet, Role.VIEWER)
    page = browser.get("/alerts")
    assert page.status == 200 and "MemoryInUse" in page.body
    assert '/ack"' not in page.body  # no acknowledge form
    alert = firing_alert(fleet)
    reply = browser.post(f"/alerts/{alert['id']}/ack", {"comment": "mine now", "csrf": page.csrf()})
    assert reply.status == 403 and "needs tier1 or higher" in reply.body
    assert acknowledged_by(fleet, alert["id"]) is None


def test_tier1_acknowledges_an_alert_and_it_is_audited(fleet: Fleet) -> None:
    browser = logged_in(fleet, Role.TIER1)
    page = browser.get("/alerts")
    alert = firing_alert(fleet)
    reply = browser.post(
        f"/alerts/{alert['id']}/ack",
        {"comment": "looking at <b>it</b>", "csrf": page.csrf(), "next": "/alerts"},
    )
    assert reply.status == 303 and reply.location == "/alerts", reply.body
    assert acknowledged_by(fleet, alert["id"]) == "web-tier1"
    entries = [e for e in audit(fleet) if e["action"] == "AckAlert"]
    assert entries and entries[-1]["operator"] == "web-tier1"
    assert entries[-1]["target"] == alert["id"] and entries[-1]["outcome"] == "ok"
    after = browser.get("/alerts")
    assert "looking at &lt;b&gt;it&lt;/b&gt;" in after.body


def test_logout_ends_the_session(fleet: Fleet) -> None:
    browser = logged_in(fleet, Role.VIEWER)
    page = browser.get("/fleet")
    session = browser.cookies["rmm_session"]
    reply = browser.post("/logout", {"csrf": page.csrf()})
    assert reply.status == 303 and reply.location == "/login"
    browser.cookies["rmm_session"] = session  # a copy kept elsewhere is dead too
    assert browser.get("/fleet").status == 303


def test_static_files_are_served_from_the_package(fleet: Fleet) -> None:
    browser = Browser(fleet.server.http_url)
    reply = browser.get("/static/htmx-2.0.4.min.js")
    assert reply.status == 200 and reply.headers["Content-Type"].startswith("text/javascript")
    assert browser.get("/static/..%2Fviews.py").status == 404


def test_metrics_still_served(fleet: Fleet) -> None:
    wait_for(lambda: "rmm_agents" in fleet.server.metrics(), 10, "/metrics")


def test_the_chart_history_of_the_agent_has_its_current_point(fleet: Fleet) -> None:
    browser = logged_in(fleet, Role.VIEWER)
    reply = browser.get(f"/agents/{fleet.agent_id}/history")
    assert reply.status == 200 and reply.headers["Content-Type"].startswith("application/json")
    columns = json.loads(reply.body)
    assert {"time", *SERIES} <= set(columns) and columns["source"] == "server"
    assert len(columns["time"]) >= 1 and 0.0 < columns["memory_ratio"][-1] <= 1.0
    assert Browser(fleet.server.http_url).get(f"/agents/{fleet.agent_id}/history").status == 303


def test_tier1_silences_an_alert_for_a_duration_with_a_comment(fleet: Fleet) -> None:
    browser = logged_in(fleet, Role.TIER1)
    page = browser.get("/alerts")
    alert = rmm_json(fleet.server, "alerts", "list", "--state", "firing")[0]
    refused = browser.post(
        f"/alerts/{alert['id']}/silence",
        {"duration": "soon", "comment": "x", "csrf": page.csrf()},
    )
    assert refused.status == 400 and "is not understood" in refused.body
    reply = browser.post(
        f"/alerts/{alert['id']}/silence",
        {"duration": "2h", "comment": "maintenance call", "csrf": page.csrf(), "next": "/alerts"},
    )
    assert reply.status == 303, reply.body
    silences = rmm_json(fleet.server, "silences", "list")
    mine = [s for s in silences if s["comment"] == "maintenance call"]
    assert len(mine) == 1 and mine[0]["created_by"] == "web-tier1"
    assert fleet.agent_id in mine[0]["matchers"]
    entry = [e for e in audit(fleet) if e["action"] == "CreateSilence"][-1]
    assert entry["operator"] == "web-tier1" and entry["outcome"] == "ok"
    detail = browser.get(f"/alerts/{alert['id']}")
    assert detail.status == 200 and "maintenance call" in detail.body
    assert 'id="alert-history"' in detail.body and "firing" in detail.body
    viewer = logged_in(fleet, Role.VIEWER)
    denied = viewer.post(
        f"/alerts/{alert['id']}/silence",
        {"duration": "1h", "comment": "no", "csrf": viewer.get("/alerts").csrf()},
    )
    assert denied.status == 403


def test_the_audit_page_is_for_tier3_and_shows_the_chain_verified(fleet: Fleet) -> None:
    assert logged_in(fleet, Role.TIER1).get("/audit").status == 403
    admin = logged_in(fleet, Role.ADMIN)
    page = admin.get("/audit")
    assert page.status == 200 and "DashboardLogin" in page.body
    verified = admin.get("/audit/verify", headers={"HX-Request": "true"})
    assert verified.status == 200 and 'data-verified="ok"' in verified.body


def test_the_agent_page_shows_a_commands_output_escaped(fleet: Fleet) -> None:
    rmm_json(fleet.server, "run", "-t", fleet.agent_id, "--command", "echo '<i>web-out</i>'")
    browser = logged_in(fleet, Role.VIEWER)
    page = browser.get(f"/agents/{fleet.agent_id}")
    assert "&lt;i&gt;web-out&lt;/i&gt;" in page.body and "<i>web-out" not in page.body
    assert ">succeeded<" in page.body


def test_invisible_characters_in_agent_text_are_shown_as_escapes(fleet: Fleet) -> None:
    # A right-to-left override and a zero-width space in a command's output: escaped text on
    # the page, so "exe.txt" cannot read as "txt.exe"; its line breaks stay line breaks.
    rmm_json(fleet.server, "run", "-t", fleet.agent_id, "--command",
             r"printf 'bidi-\342\200\256exe.txt\nzero\342\200\213width\n'")  # fmt: skip
    page = logged_in(fleet, Role.VIEWER).get(f"/agents/{fleet.agent_id}")
    assert "bidi-\\u202eexe.txt\nzero\\u200bwidth" in page.body
    assert "\u202e" not in page.body and "\u200b" not in page.body


def test_tier1_runs_a_library_script_and_sees_each_agents_result(fleet: Fleet) -> None:
    viewer = logged_in(fleet, Role.VIEWER)
    form_page = viewer.get("/commands")
    assert form_page.status == 200 and "disk-usage" in form_page.body
    assert 'action="/commands"' not in form_page.body  # a viewer gets no form
    refused = viewer.post(
        "/commands", {"script": "disk-usage", "agents": fleet.agent_id, "csrf": form_page.csrf()}
    )
    assert refused.status == 403
    browser = logged_in(fleet, Role.TIER1)
    page = browser.get("/commands")
    bad = browser.post(
        "/commands",
        {"script": "disk-usage", "params": "path", "agents": fleet.agent_id, "csrf": page.csrf()},
    )
    assert bad.status == 400 and "is not NAME=VALUE" in bad.body
    nothing = browser.post("/commands", {"script": "disk-usage", "csrf": page.csrf()})
    assert nothing.status == 400  # no selection and not "every agent"
    for ticket in ("abc", "999999"):  # not a number; no such ticket: nothing sent
        no_ticket = browser.post(
            "/commands",
            {"script": "disk-usage", "agents": fleet.agent_id, "ticket": ticket,
             "csrf": page.csrf()},
        )  # fmt: skip
        assert no_ticket.status == 400 and "ticket" in no_ticket.body, no_ticket.body
    ticket = rmm_json(fleet.server, "tickets", "open", "--agent", fleet.agent_id, "--title", "disk")
    reply = browser.post(
        "/commands",
        {"script": "disk-usage", "params": "path=/tmp", "agents": fleet.agent_id,
         "ticket": str(ticket["id"]), "csrf": page.csrf()},
    )  # fmt: skip
    assert reply.status == 303 and reply.location.startswith("/commands/runs/"), reply.body
    noted = rmm_json(fleet.server, "tickets", "show", str(ticket["id"]))["events"]
    assert [e for e in noted if "library script disk-usage" in e["text"]], noted
    run = browser.get(reply.location)
    assert run.status == 200 and f'href="/agents/{fleet.agent_id}"' in run.body
    done = wait_for(
        lambda: (
            (live := browser.get(reply.location + "/live")).body.count('data-done="yes"') and live
        ),
        90,
        "the run's result",
    )
    assert 'data-status="succeeded"' in done.body and "Filesystem" in done.body
    sent = [
        e for e in audit(fleet) if e["operator"] == "web-tier1" and e["action"] == "command.sent"
    ]
    assert sent and sent[-1]["target"] == fleet.agent_id
    assert browser.get("/commands/runs/no-such-run").status == 404


def test_the_live_overview_is_not_sent_again_while_nothing_it_shows_at_once_changed(
    fleet: Fleet,
) -> None:
    browser = logged_in(fleet, Role.VIEWER)
    statuses = []
    for _ in range(3):  # a 30-second slot may end between two requests: then the next pair
        first = browser.get("/fleet/live")
        etag = first.headers["ETag"]
        assert first.status == 200 and etag and "no-cache" in first.headers["Cache-Control"]
        again = browser.get("/fleet/live", headers={"If-None-Match": etag})
        statuses.append(again.status)
        if again.status == 304:
            assert again.body == ""
            break
    assert statuses[-1] == 304, statuses
    other_filter = browser.get("/fleet/live?status=offline", headers={"If-None-Match": etag})
    assert other_filter.status == 200
