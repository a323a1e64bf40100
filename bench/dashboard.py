"""What the dashboard costs at 10,000 agents: first byte and whole page of the fleet overview and
an agent page, what an open dashboard's live updates cost the server, and (with --browser) the
overview complete in Debian's headless Chromium.

One real `rmm-server serve --insecure` (SQLite in a temporary data directory), with the shipped
policies and the rate limits off, is populated through its real APIs as bench.operator_queries
does it: `--agents` agents enrolled over `--clients` x `--sites`, one real report each, `--hot`
of them hot so the shipped policies open alerts on them. Then, logged in as admin with a real
session cookie, over one HTTP/1.1 connection per request (as a browser's first visit):

- `healthz`: GET /healthz, the peer (the same listener and loop, nothing rendered);
- `overview`: GET /fleet (site table of every client and site, first page of 100 agents);
- `overview search`, `overview page 50`, `overview client`: with ?q=, ?page=50, ?client=;
- `live`: GET /fleet/live, what an open overview fetches every 2 s;
- `agent`: GET /agents/<id> of an agent with a stored report;
- `history`: GET /agents/<id>/history (the charts' points).

Each is timed `--repeat` times: first byte (the status line read) and complete (body read), medians
and p90; all of it is measured `--rounds` times on the same populated server (populating 10,000
agents is most of a run's time) and summarised as medians over rounds, printed after each.

The live update's cost: the server's CPU (utime+stime from /proc) over `--live-seconds` while one
dashboard polls /fleet/live every 2 s revalidating as a browser does (If-None-Match with the
last ETag), less its CPU over as long with nobody polling (`--live-windows` idle and polling
windows alternating), as a share of one core; the CPU of a full render (no ETag) over a burst of
50 and of a revalidation answered 304 over a burst of 300; and the polls' share modelled from
those two (304s x their cost + full renders x theirs), which background work does not blur.

    .venv/bin/python -m bench.dashboard --json /tmp/dashboard.json
    .venv/bin/python -m bench.dashboard --agents 10000 --browser --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import re
import signal
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psutil

from bench.agent_footprint import (
    BIN,
    ensure_alive,
    exit_on_sigterm,
    free_port,
    http_get,
    machine,
    spawn,
    stop_process,
    wait_until,
)
from bench.ingest_rate import POLICIES, RATE_LIMITS_OFF, capture_template
from bench.operator_queries import _open_alert_count, populate

START_TIMEOUT_SECONDS = 60.0
LIVE_POLL_SECONDS = 2.0  # the overview's hx-trigger
BURST = 50
BURST_304 = 300
TARGETS = {"overview": 0.300, "agent": 0.200}  # first byte, seconds (issue #14)
TARGET_LIVE_CORE_SHARE = 0.01
TARGET_BROWSER_SECONDS = 1.0
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
CHROMIUM = "/usr/bin/chromium"


class Session:
    """One operator's session cookie against the server at host:port."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.cookies: dict[str, str] = {}
        self.etag = ""

    def request(
        self,
        method: str,
        path: str,
        form: dict[str, str] | None = None,
        extra: dict[str, str] | None = None,
    ) -> tuple[int, float, float, bytes, dict[str, str]]:
        """Return (status, first byte s, complete s, body, cookies set); the response's ETag
        is kept in `self.etag`."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        headers.update(extra or {})
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            started = time.perf_counter()
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()  # returns once the status line and headers are read
            first = time.perf_counter() - started
            data = response.read()
            complete = time.perf_counter() - started
            self.etag = response.headers.get("ETag", "")
            set_cookies = {}
            for line in response.headers.get_all("Set-Cookie") or []:
                name, _, rest = line.partition("=")
                set_cookies[name] = rest.split(";", 1)[0]
        finally:
            conn.close()
        self.cookies.update(set_cookies)
        return response.status, first, complete, data, set_cookies

    def login(self, token: str) -> None:
        status, _, _, body, _ = self.request("GET", "/login")
        found = CSRF.search(body.decode())
        if status != 200 or found is None:
            raise RuntimeError(f"GET /login answered {status}")
        status, *_ = self.request(
            "POST", "/login", {"csrf": found.group(1), "token": token, "next": "/fleet"}
        )
        if status != 303 or "rmm_session" not in self.cookies:
            raise RuntimeError(f"login answered {status}: is the token right?")


def timed(session: Session, path: str, repeat: int) -> dict[str, Any]:
    firsts, completes, sizes = [], [], []
    for _ in range(repeat):
        status, first, complete, body, _ = session.request("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path} answered {status}: {body[:300]!r}")
        firsts.append(first)
        completes.append(complete)
        sizes.append(len(body))
    return {
        "path": path,
        "first_byte_median": statistics.median(firsts),
        "first_byte_p90": sorted(firsts)[max(0, int(len(firsts) * 0.9) - 1)],
        "complete_median": statistics.median(completes),
        "bytes": sizes[-1],
        "samples_first_byte": firsts,
    }


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def live_cost(session: Session, pid: int, seconds: float, windows: int) -> dict[str, Any]:
    """The server's CPU with one dashboard polling every 2 s, less its CPU with none.

    The poller revalidates as a browser does (If-None-Match with the last ETag): 304 while
    nothing the overview must show at once changed. Idle and polling windows alternate
    (`windows` of each, `seconds` of polling in all), so background work that comes in bursts
    (the chart history's flush, patch compliance read once a minute) falls on both sides alike.
    The bursts measure a full render (no ETag) and a revalidation answered 304, each alone.
    """
    idle = polling = 0.0
    polls = not_modified = 0
    window = seconds / windows
    for _ in range(windows):
        before = cpu_seconds(pid)
        time.sleep(window)
        idle += cpu_seconds(pid) - before
        before = cpu_seconds(pid)
        deadline = time.monotonic() + window
        session.etag = ""
        while time.monotonic() < deadline:
            tick = time.monotonic()
            etag = session.etag
            status, *_ = session.request(
                "GET", "/fleet/live", extra={"If-None-Match": etag} if etag else None
            )
            if status == 304:
                not_modified += 1
                session.etag = etag
            polls += 1
            time.sleep(max(0.0, LIVE_POLL_SECONDS - (time.monotonic() - tick)))
        polling += cpu_seconds(pid) - before
    before = cpu_seconds(pid)
    for _ in range(BURST):
        session.request("GET", "/fleet/live")
    per_poll = (cpu_seconds(pid) - before) / BURST
    etag = session.etag
    revalidated = 0
    before = cpu_seconds(pid)
    for _ in range(BURST_304):
        status, *_ = session.request("GET", "/fleet/live", extra={"If-None-Match": etag})
        if status == 304:
            revalidated += 1
        else:  # the minute's slot turned: go on with the new tag
            etag = session.etag
    per_304 = (cpu_seconds(pid) - before) / BURST_304
    full = polls - not_modified
    return {
        "seconds": seconds,
        "windows": windows,
        "polls": polls,
        "not_modified": not_modified,
        "server_cpu_idle_seconds": idle,
        "server_cpu_polling_seconds": polling,
        "core_share_measured": max(0.0, polling - idle) / seconds,
        "cpu_per_poll_seconds": per_poll,
        "cpu_per_304_seconds": per_304,
        "burst_304_answered_304": revalidated,
        # What the polls cost by the bursts' figures: not blurred by background work.
        "core_share_modelled": (not_modified * per_304 + full * per_poll) / seconds,
        "full_render_core_share": per_poll / LIVE_POLL_SECONDS,
    }


def browser_load(http_url: str, token: str, repeat: int) -> dict[str, Any]:
    """Load the overview in headless Chromium: navigation start to the load event."""
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 (only with --browser)

    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            page = chromium.new_page()
            page.goto(http_url + "/login")
            page.fill("#token", token)
            page.click("button[type=submit]")
            page.wait_for_url(http_url + "/fleet")
            loads = []
            for _ in range(repeat):
                page.goto(http_url + "/fleet", wait_until="load")
                loads.append(
                    page.evaluate(
                        "() => { const n = performance.getEntriesByType('navigation')[0];"
                        " return (n.loadEventEnd - n.startTime) / 1000; }"
                    )
                )
        finally:
            chromium.close()
    return {"load_median": statistics.median(loads), "samples": loads}


def one_run(args: argparse.Namespace) -> dict[str, Any]:
    template, inventory_json = capture_template()
    with tempfile.TemporaryDirectory(prefix="rmm-bench-dashboard-") as tmp:
        workdir = Path(tmp)
        data_dir, log_path = workdir / "server", workdir / "server.log"
        address = f"127.0.0.1:{free_port()}"
        http_port = free_port()
        http_url = f"http://127.0.0.1:{http_port}"
        proc = spawn(
            [BIN / "rmm-server", "serve", "--data-dir", data_dir, "--grpc-listen", address,
             "--http-listen", f"127.0.0.1:{http_port}", "--insecure", "--log-format", "json",
             "--policies", str(POLICIES), *RATE_LIMITS_OFF],
            log_path,
        )  # fmt: skip
        try:

            def ready() -> bool:
                ensure_alive(proc, "rmm-server", log_path)
                return (data_dir / "admin.token").exists() and bool(http_get(http_url + "/healthz"))

            wait_until(ready, START_TIMEOUT_SECONDS, f"rmm-server on {http_url}/healthz")
            token = (data_dir / "admin.token").read_text().strip()
            env = dict(os.environ, RMM_SERVER=address, RMM_TOKEN=token, RMM_INSECURE="1")
            print(f"populating {args.agents} agents...", flush=True)
            population = asyncio.run(populate(address, token, args, template, inventory_json))
            expected = population["agents_with_alerts"]
            population["open_alerts"] = wait_until(
                lambda: _open_alert_count(env, expected), 180.0, "alerts on the hot agents"
            )
            session = Session("127.0.0.1", http_port)
            session.login(token)
            agent = population["sample_agent"]
            paths: list[tuple[str, str]] = [
                ("healthz", "/healthz"),
                ("overview", "/fleet"),
                ("overview search", "/fleet?q=host-0500"),
                ("overview page 50", "/fleet?page=50"),
                ("overview client", "/fleet?client=client-007"),
                ("live", "/fleet/live"),
                ("agent", f"/agents/{agent}"),
                ("history", f"/agents/{agent}/history"),
            ]
            for _, path in paths:  # warm: templates compiled, caches filled
                session.request("GET", path)
            rounds = []
            for number in range(args.rounds):
                # Populating is most of a run's time: each round measures everything again on
                # the same fleet, and the summary takes medians over rounds.
                load = os.getloadavg()[0]
                rounds.append(
                    {
                        "loadavg_before": load,
                        "timings": {
                            name: timed(session, path, args.repeat) for name, path in paths
                        },
                        "live": live_cost(session, proc.pid, args.live_seconds, args.live_windows),
                        "browser": (
                            browser_load(http_url, token, args.repeat) if args.browser else None
                        ),
                    }
                )
                print(f"  round {number + 1}: load average {load:.1f}", flush=True)
                print_summary(summarise(rounds), len(rounds), args.agents)
            return {"population": population, "rounds": rounds}
        except Exception:
            # The server's own words on what failed (an HTTP 500 is logged there, not sent).
            lines = log_path.read_text(errors="replace").splitlines()
            print("\n".join(line for line in lines if "rror" in line)[-4000:], flush=True)
            raise
        finally:
            stop_process(proc)


def summarise(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Medians over rounds (each round: every page timed, the live cost, the browser)."""

    def median(get: Callable[[dict[str, Any]], float]) -> float:
        return statistics.median(get(run) for run in runs)

    summary: dict[str, Any] = {}
    for name in runs[0]["timings"]:
        per_run = [run["timings"][name] for run in runs]
        summary[name] = {
            "first_byte_median": statistics.median(t["first_byte_median"] for t in per_run),
            "complete_median": statistics.median(t["complete_median"] for t in per_run),
            "bytes": per_run[-1]["bytes"],
        }
    summary["live_core_share_measured"] = median(lambda r: r["live"]["core_share_measured"])
    summary["live_full_render_core_share"] = median(lambda r: r["live"]["full_render_core_share"])
    summary["live_not_modified"] = median(lambda r: r["live"]["not_modified"] / r["live"]["polls"])
    summary["live_cpu_per_poll_seconds"] = median(lambda r: r["live"]["cpu_per_poll_seconds"])
    summary["live_cpu_per_304_seconds"] = median(lambda r: r["live"]["cpu_per_304_seconds"])
    summary["live_core_share_modelled"] = median(lambda r: r["live"]["core_share_modelled"])
    if runs[0]["browser"] is not None:
        summary["browser_load_median"] = median(lambda r: r["browser"]["load_median"])
    return summary


def print_summary(summary: dict[str, Any], runs: int, agents: int) -> None:
    print(f"\n{agents} agents, medians of {runs} round(s):")
    print(f"{'page':<18} {'first byte':>11} {'complete':>10} {'bytes':>9}  target")
    for name, figures in summary.items():
        if not isinstance(figures, dict):
            continue
        target = TARGETS.get(name)
        verdict = ""
        if target:
            met = figures["first_byte_median"] < target
            verdict = f"< {target * 1000:.0f} ms: {'met' if met else 'MISSED'}"
        print(
            f"{name:<18} {figures['first_byte_median'] * 1000:>8.1f} ms "
            f"{figures['complete_median'] * 1000:>7.1f} ms {figures['bytes']:>9}  {verdict}"
        )
    share = summary["live_core_share_measured"]
    print(
        f"live updates, one open overview polling every 2 s: {share * 100:.2f} % of a core "
        f"({summary['live_not_modified'] * 100:.0f} % of polls 304; a full render is "
        f"{summary['live_cpu_per_poll_seconds'] * 1000:.1f} ms CPU, "
        f"{summary['live_full_render_core_share'] * 100:.2f} % of a core if every poll were one; "
        f"a 304 is {summary['live_cpu_per_304_seconds'] * 1000:.2f} ms CPU; from these two, "
        f"the polls cost {summary['live_core_share_modelled'] * 100:.2f} % of a core); "
        f"target < 1 %: {'met' if share < TARGET_LIVE_CORE_SHARE else 'MISSED'}"
    )
    if "browser_load_median" in summary:
        load = summary["browser_load_median"]
        print(
            f"overview complete in Chromium (load event): {load * 1000:.0f} ms; target < 1 s: "
            f"{'met' if load < TARGET_BROWSER_SECONDS else 'MISSED'}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--sites", type=int, default=4, help="sites per client")
    parser.add_argument("--hot", type=int, default=200, help="agents the policies alert on")
    # 64 in flight had enrollments refused (RST_STREAM, REFUSED_STREAM) on this machine.
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=15, help="requests per page per run")
    parser.add_argument("--live-seconds", type=float, default=30.0, help="polling, in all")
    parser.add_argument(
        "--live-windows", type=int, default=3, help="idle and polling windows, alternating"
    )
    parser.add_argument("--runs", type=int, default=1, help="servers populated and measured")
    parser.add_argument("--rounds", type=int, default=3, help="measurements per populated server")
    parser.add_argument("--browser", action="store_true", help="also load it in Chromium")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    args = parser.parse_args(argv)
    args.offline = 0  # bench.operator_queries.populate: no agent made to go offline
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    runs = [one_run(args) for _ in range(args.runs)]
    rounds = [measured for run in runs for measured in run["rounds"]]
    summary = summarise(rounds)
    print_summary(summary, len(rounds), args.agents)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": machine(),
                    "finished": datetime.now(UTC).isoformat(),
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "summary": summary,
                    "runs": runs,
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
