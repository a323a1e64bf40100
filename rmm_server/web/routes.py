"""The dashboard's HTTP routes on the server's aiohttp application (rmm_server/http_api.py).

Edges only: each handler reads the request, checks the session, its role and CSRF token, calls
the services the gRPC servicers call (alerts, audit), and renders a template. Pages:

- /login, /logout: an operator token in exchange for a session cookie;
- /fleet: per client and site online/offline and firing alerts, filters, hostname search, pages
  of agents; /fleet/live is the part htmx polls every 2 s;
- /agents/{id}: identity, tags, OS, latest metrics per collector with errors, open alerts,
  recent commands; an unknown id is a 404 page;
- /alerts: open (or all) alerts; POST /alerts/{id}/ack acknowledges one (tier1 and up).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
import markupsafe
from aiohttp import web
from yarl import URL

from rmm_common.durations import parse_duration
from rmm_common.errors import (
    InvalidArgument,
    NotFound,
    PermissionDenied,
    StorageError,
    Unauthenticated,
)
from rmm_common.text import visible_lines
from rmm_proto import agent_pb2
from rmm_server.alerts.service import AlertService
from rmm_server.audit import AuditLog
from rmm_server.desk.ticket_runs import start_for_ticket
from rmm_server.desk.tickets import Tickets
from rmm_server.fleet import Fleet
from rmm_server.operators import Operators
from rmm_server.ratelimit import RateLimited, RateLimits, TokenBuckets
from rmm_server.reports import decompress
from rmm_server.roles import ACTION_ROLE, LIBRARY_SCRIPT, REQUIRED_ROLE, Role
from rmm_server.runs import RunService
from rmm_server.storage import Store
from rmm_server.storage.alerts import AlertQuery
from rmm_server.storage.commands import CommandQuery, CommandStore
from rmm_server.storage.dashboard_sessions import SessionStore
from rmm_server.storage.patches import PatchStore
from rmm_server.storage.tickets import TicketEvent, TicketRecord
from rmm_server.web import views
from rmm_server.web.actions_page import AgentActions
from rmm_server.web.commands_page import RememberedRuns, RunForm
from rmm_server.web.history import ChartHistory
from rmm_server.web.prometheus_charts import PrometheusCharts, chart_columns
from rmm_server.web.sessions import COOKIE, Session, Sessions, csrf_matches

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
LOGIN_CSRF_COOKIE = "rmm_login_csrf"
# No script or style from anywhere but this server, no framing: agent-supplied text that ever
# escaped its escaping still could not run.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "Server": "rmm-server",
}
STATIC_CACHE = "public, max-age=3600"
RECENT_COMMANDS = 20
AUDIT_PAGE = 200
COMPLIANCE_SECONDS = 60.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class DashboardDeps:
    """What the dashboard reads and acts through: the same objects the gRPC servicers use."""

    fleet: Fleet
    alerts: AlertService
    operators: Operators
    audit: AuditLog
    store: Store
    limits: RateLimits | None
    insecure: bool
    history: ChartHistory | None = None
    runs: RunService | None = None
    prometheus: PrometheusCharts | None = None  # --prometheus-url: the charts ask it
    # Told every ticket event a run from the dashboard writes (the PSA webhook).
    ticket_events: tuple[Callable[[TicketRecord, TicketEvent], None], ...] = ()


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("rmm_server.web", "templates"),
        # Every value is escaped unless a template says otherwise, and none says so of
        # anything an agent sent.
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        # Autoescape keeps agent text from being markup; this keeps it from hiding itself: bidi
        # overrides, zero-width and other invisible characters in any shown value are escapes.
        finalize=_visible,
    )
    env.filters["iso"] = _iso
    env.filters["ratio"] = lambda v: "" if v is None else f"{100 * float(v):.1f} %"
    return env


def _visible(value: object) -> object:
    if isinstance(value, str) and not isinstance(value, markupsafe.Markup):
        return visible_lines(value)
    return value


def _iso(when: float | None) -> str:
    if not when:
        return ""
    return dt.datetime.fromtimestamp(when, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Dashboard:
    """The dashboard's routes and sessions; `add_routes` puts them on an aiohttp application."""

    def __init__(
        self,
        deps: DashboardDeps,
        sessions: Sessions | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.deps = deps
        self.sessions = sessions or Sessions(SessionStore(deps.store))
        self.clock = clock
        self.env = _environment()
        # `is not None`: an empty TokenBuckets is falsy (it has a length).
        buckets = deps.limits.operator if deps.limits is not None else None
        rate = buckets.rate if buckets is not None else None
        # Wrong tokens, per source address, at the operator calls' rate: guessing is as slow
        # here as through gRPC, and a wrong guess cannot use up a real operator's allowance.
        self.failed_logins = TokenBuckets(rate) if rate is not None else None
        self._commands = CommandStore(deps.store)
        self._runs = RememberedRuns()
        self.actions = AgentActions(
            deps.runs,
            self._commands,
            deps.limits,
            self.render,
            self._message,
            self._runs.add,
            SECURITY_HEADERS,
            self._tickets,
        )
        self._compliance: dict[str, bool] = {}
        self._compliance_at = -COMPLIANCE_SECONDS
        # Bumped when a read finds other figures: a read that changes nothing does not make every
        # open overview render again.
        self._compliance_version = 0
        self._compliance_task: asyncio.Future[dict[str, bool]] | None = None
        self._online = views.OnlineCount(deps.fleet)

    def add_routes(self, app: web.Application) -> None:
        """Add every dashboard route and the static files to `app`."""
        r = app.router
        r.add_get("/", self._root)
        r.add_get("/login", self._login_form)
        r.add_post("/login", self._login)
        r.add_post("/logout", self._page(Role.VIEWER, self._logout))
        r.add_get("/fleet", self._page(Role.VIEWER, self._fleet))
        r.add_get("/fleet/live", self._page(Role.VIEWER, self._fleet_live))
        r.add_get("/agents/{agent_id}", self._page(Role.VIEWER, self._agent))
        r.add_get("/agents/{agent_id}/history", self._page(Role.VIEWER, self._history))
        r.add_get("/alerts", self._page(Role.VIEWER, self._alerts))
        r.add_post("/alerts/{alert_id}/ack", self._page(REQUIRED_ROLE["AckAlert"], self._ack))
        r.add_get("/alerts/{alert_id}", self._page(Role.VIEWER, self._alert))
        r.add_post(
            "/alerts/{alert_id}/silence",
            self._page(REQUIRED_ROLE["CreateSilence"], self._silence),
        )
        r.add_get("/audit", self._page(REQUIRED_ROLE["ListAudit"], self._audit_page))
        r.add_get("/audit/verify", self._page(REQUIRED_ROLE["VerifyAudit"], self._audit_verify))
        r.add_get("/commands", self._page(Role.VIEWER, self._commands_form))
        r.add_post("/commands", self._page(ACTION_ROLE[LIBRARY_SCRIPT], self._run))
        r.add_get("/commands/runs/{run_id}", self._page(Role.VIEWER, self._run_page))
        r.add_get("/commands/runs/{run_id}/live", self._page(Role.VIEWER, self._run_live))
        r.add_get("/static/{name}", self._static)
        self.actions.add_routes(app, self._page)

    # Rendering.

    def render(
        self, request: web.Request, template: str, status: int = 200, **context: Any
    ) -> web.Response:
        """Render a template with the session (if any) and the request's path in its context."""
        session: Session | None = request.get("session")
        body = self.env.get_template(template).render(
            session=session,
            path=request.path_qs,
            now=self.clock(),
            **context,
        )
        return web.Response(
            status=status,
            text=body,
            content_type="text/html",
            charset="utf-8",
            headers=SECURITY_HEADERS,
        )

    def _message(self, request: web.Request, status: int, title: str, text: str) -> web.Response:
        return self.render(request, "message.html", status=status, title=title, text=text)

    # Sessions, roles, CSRF, TLS.

    def _plaintext_refused(self, request: web.Request) -> web.Response | None:
        if request.secure or self.deps.insecure:
            return None
        host = request.host
        return self._message(
            request,
            403,
            "HTTPS only",
            f"The dashboard is served over HTTPS only: open https://{host}{request.path_qs} "
            "(plain HTTP only when the server runs with --insecure).",
        )

    def _set_cookie(
        self, request: web.Request, response: web.StreamResponse, name: str, value: str
    ) -> None:
        response.set_cookie(
            name,
            value,
            httponly=True,
            secure=request.secure,
            samesite="Strict",
            path="/",
        )

    def _page(self, needed: Role, handler: Handler) -> Handler:
        """Wrap a handler: HTTPS, a live session (else login, then back), role, CSRF on POST."""

        async def wrapped(request: web.Request) -> web.StreamResponse:
            refused = self._plaintext_refused(request)
            if refused is not None:
                return refused
            try:
                session = await self.sessions.get_async(request.cookies.get(COOKIE))
            except StorageError as exc:
                log.warning("dashboard %s %s: %s", request.method, request.path, exc)
                return self._message(
                    request, 503, "Database unavailable", f"{exc}. Retry in a moment."
                )
            if session is None:
                if request.method != "GET":
                    return self._message(
                        request, 401, "Session expired", "Log in again; nothing was changed."
                    )
                if request.headers.get("HX-Request"):
                    # An htmx poll: have the browser go to the login page, not swap it in.
                    current = URL(request.headers.get("HX-Current-URL", "/fleet"))
                    login = "/login?" + urlencode({"next": current.path_qs or "/fleet"})
                    return web.Response(status=401, headers={"HX-Redirect": login})
                raise web.HTTPSeeOther("/login?" + urlencode({"next": request.path_qs}))
            request["session"] = session
            if request.method != "GET":
                form = await request.post()
                offered = request.headers.get("X-CSRF-Token") or str(form.get("csrf", ""))
                if not csrf_matches(session, offered):
                    return self._message(
                        request,
                        403,
                        "Refused",
                        "This request carried no valid CSRF token (a stale page or another "
                        "site): reload the page and try again; nothing was changed.",
                    )
                request["form"] = form
            if not session.may(needed):
                return self._message(
                    request,
                    403,
                    "Not allowed",
                    f"Operator {session.operator} has role {session.role.name.lower()}; this "
                    f"needs {needed.name.lower()} or higher. Nothing was changed.",
                )
            try:
                return await handler(request)
            except web.HTTPException:
                raise
            except StorageError as exc:
                log.warning("dashboard %s %s: %s", request.method, request.path, exc)
                return self._message(
                    request, 503, "Database unavailable", f"{exc}. Retry in a moment."
                )
            except Exception:
                log.exception("dashboard %s %s failed", request.method, request.path)
                return self._message(
                    request, 500, "Server error", "This page failed; the server log says why."
                )

        return wrapped

    async def _root(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPSeeOther("/fleet")

    async def _login_form(self, request: web.Request) -> web.StreamResponse:
        refused = self._plaintext_refused(request)
        if refused is not None:
            return refused
        return self._login_page(request, "", 200)

    def _login_page(self, request: web.Request, error: str, status: int) -> web.Response:
        nonce = secrets.token_urlsafe(24)
        response = self.render(
            request,
            "login.html",
            status=status,
            error=error,
            next=_safe_next(request.query.get("next", "/fleet")),
            csrf=nonce,
        )
        self._set_cookie(request, response, LOGIN_CSRF_COOKIE, nonce)
        return response

    async def _login(self, request: web.Request) -> web.StreamResponse:
        refused = self._plaintext_refused(request)
        if refused is not None:
            return refused
        form = await request.post()
        nonce = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        offered = str(form.get("csrf", ""))
        if not nonce or not secrets.compare_digest(nonce.encode(), offered.encode()):
            return self._login_page(
                request, "The login form expired or came from elsewhere: try again.", 403
            )
        address = request.remote or "unknown"
        token = str(form.get("token", "")).strip()
        next_url = _safe_next(str(form.get("next", "/fleet")))
        try:
            record = self.deps.operators.authenticate(token)
        except (Unauthenticated, InvalidArgument) as exc:
            wait = self.failed_logins.take(address) if self.failed_logins is not None else 0.0
            if wait:
                return self._login_page(
                    request,
                    f"Too many failed logins from {address}: retry in {wait:.0f} s.",
                    429,
                )
            log.info("dashboard login refused from %s: %s", address, exc)
            return self._login_page(
                request,
                "That operator token was not accepted (wrong, revoked or mistyped). Paste the "
                "whole token `rmm operators add` printed; an admin can issue a new one.",
                401,
            )
        try:
            if self.deps.limits is not None:
                self.deps.limits.check_operator(record.name)
            session = await asyncio.to_thread(
                self.sessions.create, record.id, record.name, Role.parse(record.role)
            )
        except RateLimited as exc:
            return self._login_page(request, str(exc), 429)
        except StorageError as exc:
            log.warning("dashboard login of %s: %s", record.name, exc)
            return self._login_page(request, f"Not logged in: {exc}. Retry in a moment.", 503)
        await self.deps.audit.append_async(
            record.name, "DashboardLogin", record.name, {"address": address}, "ok"
        )
        response = web.HTTPSeeOther(next_url)
        self._set_cookie(request, response, COOKIE, session.id)
        response.del_cookie(LOGIN_CSRF_COOKIE, path="/")
        raise response

    async def _logout(self, request: web.Request) -> web.StreamResponse:
        session: Session = request["session"]
        await asyncio.to_thread(self.sessions.end, session.id)
        response = web.HTTPSeeOther("/login")
        response.del_cookie(COOKIE, path="/")
        raise response

    # Pages.

    async def _overview(self, request: web.Request) -> tuple[views.FleetFilter, views.Overview]:
        filt = views.FleetFilter.from_query(request.query)
        agents = [state.record for state in self.deps.fleet.snapshot()]
        compliance = await self._patch_compliance()
        return filt, views.overview(
            agents, self.deps.alerts.manager.open_alerts(), self.clock(), filt, compliance
        )

    async def _patch_compliance(self) -> dict[str, bool]:
        """Each listing agent's compliance, read at most once a minute (a query over every
        agent's updates: not for every 2 s poll of every open overview)."""
        now = time.monotonic()
        if self._compliance_task is None and now - self._compliance_at >= COMPLIANCE_SECONDS:
            self._compliance_task = asyncio.ensure_future(asyncio.to_thread(self._read_compliance))
        if self._compliance_task is not None and (
            self._compliance_task.done() or not self._compliance
        ):
            task, self._compliance_task = self._compliance_task, None
            try:
                fresh = await task
                if fresh != self._compliance:
                    self._compliance = fresh
                    self._compliance_version += 1
            except StorageError as exc:
                log.warning("dashboard: patch compliance not read: %s", exc)
            self._compliance_at = time.monotonic()
        return self._compliance

    def _read_compliance(self) -> dict[str, bool]:
        rows = PatchStore(self.deps.store).compliance(None, self.clock())
        return {row.agent_id: row.compliant for row in rows if row.listed}

    def _query_with(self, filt: views.FleetFilter, **changes: Any) -> str:
        values = {
            "client": filt.client,
            "site": filt.site,
            "tag": filt.tag,
            "os": filt.os,
            "status": filt.status,
            "q": filt.q,
            "sort": filt.sort,
            "desc": "1" if filt.desc else "",
            "page": str(filt.page),
        }
        values.update({k: str(v) for k, v in changes.items()})
        # Defaults left out, so a bookmarked URL stays short and readable.
        defaults = {"sort": "hostname", "page": "1"}
        kept = {k: v for k, v in values.items() if v and defaults.get(k) != v}
        return "?" + urlencode(kept) if kept else ""

    async def _fleet(self, request: web.Request) -> web.StreamResponse:
        filt, view = await self._overview(request)
        return self.render(request, "fleet.html", filt=filt, view=view, link=self._query_with)

    async def _fleet_live(self, request: web.Request) -> web.StreamResponse:
        """The overview's live part, polled every 2 s by each open overview.

        Building it costs a walk, a sort and a render over the whole fleet (about 0.1 s of CPU
        at 10,000 agents); what a poll must show at once is only a change of firing alerts or
        of who is online. So it carries an ETag of those (cheap: no sort, no render) and of the
        minute it was made in: the browser revalidates (If-None-Match) and gets 304
        while nothing of that changed; the last-seen times refresh every minute.
        """
        now = self.clock()
        etag = (
            '"'
            + views.live_version(
                self.deps.fleet.version,
                self.deps.alerts.manager.version,
                self._online.count(now),
                now,
                request.query_string,
                self._compliance_version,
            )
            + '"'
        )
        headers = {**SECURITY_HEADERS, "ETag": etag, "Cache-Control": "private, no-cache"}
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        filt, view = await self._overview(request)
        response = self.render(
            request, "fleet_live.html", filt=filt, view=view, link=self._query_with
        )
        response.headers.update(headers)
        return response

    async def _agent(self, request: web.Request) -> web.StreamResponse:
        agent_id = request.match_info["agent_id"]
        agent = self.deps.fleet.get(agent_id)
        if agent is None or agent.revoked_at is not None:
            return self.render(request, "not_found.html", status=404, what=f"agent {agent_id}")
        body, commands, inventory = await asyncio.to_thread(self._agent_reads, agent_id)
        report = agent_pb2.Report.FromString(decompress(body)) if body else None
        actions = await asyncio.to_thread(
            self.actions.view, request["session"], agent, report, request.query.get("ticket", "")
        )
        return self.render(
            request,
            "agent.html",
            agent=agent,
            online=agent.online(self.clock()),
            report=report,
            collectors=views.collectors_of(report),
            alerts=sorted(
                self.deps.alerts.manager.open_alerts_of(agent_id), key=lambda a: -a.started_at
            ),
            commands=[views.command_view(record) for record in commands],
            inventory=views.inventory_sections(decompress(inventory) if inventory else None),
            actions=actions,
        )

    async def _history(self, request: web.Request) -> web.StreamResponse:
        """The agent's chart points as columns: uPlot's data layout, one array per series."""
        agent_id = request.match_info["agent_id"]
        agent = self.deps.fleet.get(agent_id)
        if agent is None or self.deps.history is None:
            return web.json_response({"error": f"no agent {agent_id}"}, status=404)
        columns = await chart_columns(self.deps.history, self.deps.prometheus, agent_id)
        return web.json_response(columns, headers=SECURITY_HEADERS)

    def _agent_reads(self, agent_id: str) -> tuple[bytes | None, list[Any], bytes | None]:
        body = self.deps.store.latest_report_body(agent_id)
        commands = self._commands.query(
            CommandQuery(agent_id=agent_id, limit=RECENT_COMMANDS, without_file_data=True)
        )
        inventory = self.deps.store.get_inventory(agent_id)
        return body, commands, inventory

    async def _alerts(self, request: web.Request) -> web.StreamResponse:
        state = request.query.get("state", "open")
        states = {"open": ("pending", "firing"), "firing": ("firing",), "all": ()}.get(
            state, ("pending", "firing")
        )
        found = await asyncio.to_thread(
            self.deps.alerts.query, AlertQuery(states=states, limit=500)
        )
        return self.render(
            request,
            "alerts.html",
            alerts=found,
            state=state,
            may_ack=request["session"].may(REQUIRED_ROLE["AckAlert"]),
            may_silence=request["session"].may(REQUIRED_ROLE["CreateSilence"]),
        )

    async def _alert(self, request: web.Request) -> web.StreamResponse:
        alert_id = request.match_info["alert_id"]
        try:
            alert = await self.deps.alerts.find(alert_id)
        except (NotFound, InvalidArgument):
            return self.render(request, "not_found.html", status=404, what=f"alert {alert_id}")
        return self.render(
            request,
            "alert.html",
            alert=alert,
            suppressed=self.deps.alerts.suppressed_by(alert, self.clock()),
            silences=self.deps.alerts.matching_silences(alert),
        )

    async def _silence(self, request: web.Request) -> web.StreamResponse:
        """Silence one alert's rule on its agent for a duration, with a comment (tier1+)."""
        session: Session = request["session"]
        form = request["form"]
        alert_id = request.match_info["alert_id"]
        comment = str(form.get("comment", "")).strip()
        duration_text = str(form.get("duration", "")).strip()
        matchers = ""
        try:
            if self.deps.limits is not None:
                self.deps.limits.check_operator(session.operator)
            alert = await self.deps.alerts.find(alert_id)
            matchers = f"agent={alert.agent_id},rule={alert.rule_name}"
            duration = parse_duration(duration_text)
            silence = await self.deps.alerts.create_silence(
                matchers, duration, comment, session.operator
            )
        except RateLimited as exc:
            return self._message(request, 429, "Too many requests", str(exc))
        except (InvalidArgument, NotFound, ValueError) as exc:
            failed = {"matchers": matchers, "duration": duration_text, "comment": comment}
            await self._audit(
                session, "CreateSilence", matchers or alert_id, failed, f"error: {exc}"
            )
            status = 404 if isinstance(exc, NotFound) else 400
            return self._message(request, status, "Not silenced", str(exc))
        details: dict[str, Any] = {
            "matchers": matchers,
            "durationSeconds": duration,
            "comment": comment,
            "result_id": silence.id,
        }
        await self._audit(session, "CreateSilence", matchers, details, "ok")
        raise web.HTTPSeeOther(_safe_next(str(form.get("next", "/alerts"))))

    async def _audit_page(self, request: web.Request) -> web.StreamResponse:
        operator = request.query.get("operator", "").strip()
        agent = request.query.get("agent", "").strip()
        entries = await asyncio.to_thread(self.deps.audit.list, 0.0, operator, agent, AUDIT_PAGE)
        return self.render(
            request,
            "audit.html",
            entries=list(reversed(entries)),
            operator=operator,
            agent=agent,
        )

    async def _audit_verify(self, request: web.Request) -> web.StreamResponse:
        """The chain's verification (a walk of the whole log), loaded into the audit page."""
        result = await asyncio.to_thread(self.deps.audit.verify)
        return self.render(request, "audit_verify.html", result=result)

    async def _ack(self, request: web.Request) -> web.StreamResponse:
        session: Session = request["session"]
        alert_id = request.match_info["alert_id"]
        comment = str(request["form"].get("comment", "")).strip()
        try:
            if self.deps.limits is not None:
                self.deps.limits.check_operator(session.operator)
            await self.deps.alerts.acknowledge(alert_id, session.operator, comment)
        except RateLimited as exc:
            return self._message(request, 429, "Too many requests", str(exc))
        except (InvalidArgument, NotFound) as exc:
            details = {"id": alert_id, "comment": comment}
            await self._audit(session, "AckAlert", alert_id, details, f"error: {exc}")
            status = 404 if isinstance(exc, NotFound) else 400
            return self._message(request, status, "Not acknowledged", str(exc))
        await self._audit(session, "AckAlert", alert_id, {"id": alert_id, "comment": comment}, "ok")
        raise web.HTTPSeeOther(_safe_next(str(request["form"].get("next", "/alerts"))))

    async def _audit(
        self, session: Session, call: str, target: str, details: dict[str, Any], outcome: str
    ) -> None:
        # The same action name, target and details as the CLI's call, plus where it came from.
        await self.deps.audit.append_async(
            session.operator, call, target, {**details, "via": "dashboard"}, outcome
        )

    # Commands.

    def _scripts(self) -> list[Any]:
        if self.deps.runs is None:
            return []
        library = self.deps.runs.scripts
        return [library.get(name) for name in library.names()]

    async def _commands_form(self, request: web.Request) -> web.StreamResponse:
        session: Session = request["session"]
        return self.render(
            request,
            "commands.html",
            scripts=self._scripts(),
            may_run=session.may(ACTION_ROLE[LIBRARY_SCRIPT]) and self.deps.runs is not None,
            form=request.query,
            error="",
        )

    async def _run(self, request: web.Request) -> web.StreamResponse:
        session: Session = request["session"]
        raw = {k: str(v) for k, v in request["form"].items()}
        if self.deps.runs is None:
            return self._message(request, 404, "No commands", "This server sends no commands.")
        try:
            if self.deps.limits is not None:
                self.deps.limits.check_operator(session.operator)
            run_request = RunForm.parse(raw).request(session.operator, session.role.name.lower())
            run = await start_for_ticket(self.deps.runs, run_request, self._tickets())
        except RateLimited as exc:
            return self._message(request, 429, "Too many requests", str(exc))
        except (InvalidArgument, NotFound, PermissionDenied) as exc:
            # A refusal by role or environment is audited by the run service itself.
            status = 403 if isinstance(exc, PermissionDenied) else 400
            return self.render(
                request,
                "commands.html",
                status=status,
                scripts=self._scripts(),
                may_run=True,
                form=raw,
                error=str(exc),
            )
        self._runs.add(run)
        raise web.HTTPSeeOther(f"/commands/runs/{run.id}")

    def _tickets(self) -> Tickets:
        # As the gRPC TicketApi's: every ticket event also reaches the PSA webhook.
        return Tickets(self.deps.store, on_event=list(self.deps.ticket_events))

    def _run_view(self, run_id: str) -> dict[str, Any]:
        records = self._commands.query(
            CommandQuery(run_id=run_id, limit=10_000, without_file_data=True)
        )
        rows = [views.command_view(record) for record in records]
        hostnames = {record.id: record.hostname for record in records}
        agents = {record.id: record.agent_id for record in records}
        unreached = self._runs.unreached(run_id)
        done = all(record.final for record in records)
        return {
            "run_id": run_id,
            "rows": rows,
            "hostnames": hostnames,
            "agents": agents,
            "unreached": unreached,
            "done": done,
            "found": bool(records or unreached),
        }

    async def _run_page(self, request: web.Request) -> web.StreamResponse:
        run_id = request.match_info["run_id"]
        view = await asyncio.to_thread(self._run_view, run_id)
        if not view["found"]:
            return self.render(request, "not_found.html", status=404, what=f"run {run_id}")
        return self.render(request, "run.html", **view)

    async def _run_live(self, request: web.Request) -> web.StreamResponse:
        view = await asyncio.to_thread(self._run_view, request.match_info["run_id"])
        return self.render(request, "run_live.html", **view)

    async def _static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        # Only files shipped in the package's static folder, by exact name.
        path = HERE / "static" / name
        if "/" in name or name.startswith(".") or not path.is_file():
            raise web.HTTPNotFound(text="not found\n")
        types = {".js": "text/javascript", ".css": "text/css"}
        return web.Response(
            body=path.read_bytes(),
            content_type=types.get(path.suffix, "application/octet-stream"),
            headers={**SECURITY_HEADERS, "Cache-Control": STATIC_CACHE},
        )


def _safe_next(target: str) -> str:
    """Return `target` if it is a path on this server, else /fleet: never an open redirect."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return quote(target, safe="/?&=%:+,;@-._~")
    return "/fleet"
