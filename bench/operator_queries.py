"""How fast every operator query answers over a large fleet (10,000 agents by default).

One real `rmm-server serve --insecure` (SQLite in a temporary data directory, or a fresh
database on a PostgreSQL server with `--db`), with the shipped policies on and the enrollment,
report and operator rate limits off, is populated through its real APIs:

1. one enrollment token per client and site (`--clients` x `--sites`) from CreateEnrollmentToken;
2. `--agents` agents enrolled through the Enroll RPC (grpc.aio, `--concurrency` calls in flight
   over one channel), spread evenly over the tokens, half tagged `server` and half
   `workstation`;
3. every agent sends one real report (with its inventory) on its own StreamReports stream and
   waits for the acknowledgement; `--hot` of them run hot (a failed systemd unit, 40 days of
   uptime, CPU and memory at the thresholds), so the shipped policies open alerts on them;
4. `--runs-of-commands` remote actions, each queued for every agent of one client and site
   (`rmm run --queue-offline --detach`: the agents are not connected to their command streams),
   which also writes audit entries.

Then every operator query the `rmm` command line offers is timed `--repeat` times two ways: the
real CLI process (wall time, Python start-up included) and the gRPC call(s) alone that the CLI
makes (from this process, over one open channel). `rmm --version` gives the CLI's start-up floor
and `rmm --help` what listing the commands adds. With `--peer-tree DIR` (a source tree of another
version, e.g. `git archive` of an earlier commit) that version's `rmm` is timed too, against the
same server, each run right after this tree's: a peer under the same load, for before/after.
The table shows medians; `--json FILE` keeps every sample.

Run from the repository root:

    .venv/bin/python -m bench.operator_queries --json /tmp/queries.json
    .venv/bin/python -m bench.operator_queries --db postgresql://postgres@127.0.0.1:5432/test
    git archive abf7aec | tar -x -C /tmp/before   # the CLI before issue #16, as the peer
    .venv/bin/python -m bench.operator_queries --peer-tree /tmp/before --json /tmp/queries.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import psutil

from bench.agent_footprint import (
    BIN,
    BenchError,
    ensure_alive,
    exit_on_sigterm,
    free_port,
    http_get,
    log_problems,
    machine,
    run_command,
    spawn,
    stop_process,
    wait_until,
)
from bench.ingest_rate import (
    POLICIES,
    RATE_LIMITS_OFF,
    ClientJob,
    ReportMaker,
    SimAgent,
    capture_template,
    fresh_database,
)
from rmm_agent import __version__ as agent_version
from rmm_cli.agents import FETCH_JSON_PAGE, FETCH_PAGE, TABLE_PAGE
from rmm_common.tokens import bearer_metadata
from rmm_proto import (
    agent_pb2,
    agent_pb2_grpc,
    commands_pb2,
    operator_pb2,
    operator_pb2_grpc,
)
from rmm_server.storage.migrate import mask_url

START_TIMEOUT_SECONDS = 60.0
OFFLINE_INTERVAL_SECONDS = 30
ONLINE_INTERVAL_SECONDS = 3600
CALL_TIMEOUT_SECONDS = 120.0
# The bar: a gRPC answer well under a second at 10,000 agents.
TARGET_CALL_SECONDS = 1.0
OPTIONS = [
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]


Call = Callable[[operator_pb2_grpc.OperatorServiceStub], int]  # returns rows received


@dataclass(frozen=True, slots=True)
class Query:
    """One operator query: the CLI's arguments and the gRPC call(s) it makes."""

    name: str
    argv: tuple[str, ...]
    call: Call


# --------------------------------------------------------------------------------------------
# Population


def client_name(index: int) -> str:
    return f"client-{index:03d}"


def site_name(index: int) -> str:
    return f"site-{index}"


async def populate(
    address: str,
    admin_token: str,
    args: argparse.Namespace,
    template: agent_pb2.Report,
    inventory_json: bytes,
) -> dict[str, Any]:
    """Enroll the fleet and send one report per agent; return counts and timings."""
    channel = grpc.aio.insecure_channel(address, options=OPTIONS)
    admin = bearer_metadata(admin_token)
    try:
        operator = operator_pb2_grpc.OperatorServiceStub(channel)
        agent_stub = agent_pb2_grpc.AgentServiceStub(channel)
        scopes = [
            (client_name(c), site_name(s)) for c in range(args.clients) for s in range(args.sites)
        ]
        tokens = []
        for client, site in scopes:
            created = await operator.CreateEnrollmentToken(
                operator_pb2.CreateEnrollmentTokenRequest(client=client, site=site),
                metadata=admin,
                timeout=CALL_TIMEOUT_SECONDS,
            )
            tokens.append(created.secret)
        hot_every = max(1, args.agents // max(1, args.hot)) if args.hot else 0
        gate = asyncio.Semaphore(args.concurrency)
        agents: list[SimAgent | None] = [None] * args.agents

        async def enroll(index: int) -> None:
            tag = "server" if index % 2 == 0 else "workstation"
            hostname = f"host-{index:05d}"
            facts = agent_pb2.HostFacts()
            facts.CopyFrom(template.host)
            facts.hostname = hostname
            async with gate:
                response = await agent_stub.Enroll(
                    agent_pb2.EnrollRequest(
                        token=tokens[index % len(tokens)],
                        host=facts,
                        tags=[tag],
                        agent_version=agent_version,
                    ),
                    timeout=CALL_TIMEOUT_SECONDS,
                )
            hot = bool(hot_every) and index % hot_every == 0
            agents[index] = SimAgent(
                index, response.agent_id, response.credential, hostname, tag, hot
            )

        started = time.monotonic()
        await asyncio.gather(*(enroll(i) for i in range(args.agents)))
        enroll_seconds = time.monotonic() - started
        enrolled = [agent for agent in agents if agent is not None]
        job = ClientJob(
            worker=0,
            address=address,
            agents=(),
            template=template.SerializeToString(),
            inventory_hash=template.inventory_hash,
            inventory_json=inventory_json,
            in_flight=1,
            seed=1,
        )

        async def report(agent: SimAgent) -> None:
            message = ReportMaker(agent, job).next(1, with_inventory=True)
            # The first --offline agents say they report every 30 s and so go offline 90 s
            # later (AgentOffline opens for them); the rest say hourly and stay online for
            # the whole measurement without sending more.
            message.interval_seconds = (
                OFFLINE_INTERVAL_SECONDS if agent.index < args.offline else ONLINE_INTERVAL_SECONDS
            )
            async with gate:
                call = agent_stub.StreamReports(
                    metadata=bearer_metadata(agent.credential), timeout=CALL_TIMEOUT_SECONDS
                )
                await call.write(message)
                ack = await call.read()
                await call.done_writing()
                await call.code()
            if ack is grpc.aio.EOF or ack.sequence != 1 or ack.rejected:
                raise BenchError(f"agent {agent.hostname}: its report was not stored: {ack}")

        started = time.monotonic()
        await asyncio.gather(*(report(agent) for agent in enrolled))
        report_seconds = time.monotonic() - started
        return {
            "tokens": len(tokens),
            "agents": len(enrolled),
            "hot_agents": sum(agent.hot for agent in enrolled),
            "offline_agents": args.offline,
            "agents_with_alerts": sum(a.hot or a.index < args.offline for a in enrolled),
            "enroll_seconds": enroll_seconds,
            "enroll_per_second": len(enrolled) / enroll_seconds,
            "report_seconds": report_seconds,
            "reports_per_second": len(enrolled) / report_seconds,
            "sample_agent": enrolled[len(enrolled) // 2].agent_id,
            "sample_hostname": enrolled[len(enrolled) // 2].hostname,
        }
    finally:
        await channel.close()


def queue_commands(env: dict[str, str], runs: int, sites: int) -> list[str]:
    """Queue `runs` remote actions, each for every agent of one client and site, through the
    real CLI; return their run ids."""
    run_ids = []
    for index in range(runs):
        target = f"client={client_name(index // sites)},site={site_name(index % sites)}"
        out = run_command(
            [
                BIN / "rmm",
                "run",
                "-t",
                target,
                "--queue-offline",
                "--detach",
                "--output",
                "json",
                "--command",
                f"echo bench {index}",
            ],
            env,
            timeout=CALL_TIMEOUT_SECONDS,
        )
        run_ids.append(_run_id(out, target))
    return run_ids


def _run_id(out: str, target: str) -> str:
    try:
        data = json.loads(out)
    except ValueError:
        data = None
    if isinstance(data, dict) and data.get("run_id"):
        return str(data["run_id"])
    raise BenchError(f"rmm run -t {target} printed no run id: {out[:300]!r}")


# --------------------------------------------------------------------------------------------
# The queries


def queries(sample_agent: str, sample_host: str, run_id: str) -> list[Query]:
    """Every operator query of the CLI, with the same gRPC calls it makes."""
    client, site = client_name(1), site_name(1)
    page = TABLE_PAGE  # the rows a table shows unless --limit says otherwise

    def agents(
        flt: operator_pb2.AgentFilter, limit: int = 0, start: int = 0, as_json: bool = False
    ) -> Call:
        # As `rmm agents list` does: page after page until done or --limit rows, FETCH_PAGE
        # rows a call (the CLI asks for each next page before printing; here nothing prints);
        # with --output json, FETCH_JSON_PAGE rows a call as the server's text (json_rows).
        fetch = FETCH_JSON_PAGE if as_json else FETCH_PAGE

        def call(stub: operator_pb2_grpc.OperatorServiceStub) -> int:
            rows, token = 0, str(start) if start else ""
            while True:
                size = min(limit - rows, fetch) if limit else fetch
                response = stub.ListAgents(
                    operator_pb2.ListAgentsRequest(
                        filter=flt,
                        limit=size,
                        page_token=token,
                        json_rows=as_json,
                        json_now=time.time() if as_json else 0.0,
                    ),
                    timeout=CALL_TIMEOUT_SECONDS,
                )
                rows += len(response.agents) or response.json_row_count
                token = response.next_page_token
                if not token or (limit and rows >= limit):
                    return rows

        return call

    def one(method: str, request: Any, field: str | None) -> Call:
        def call(stub: operator_pb2_grpc.OperatorServiceStub) -> int:
            response = getattr(stub, method)(request, timeout=CALL_TIMEOUT_SECONDS)
            return len(getattr(response, field)) if field else 1

        return call

    def alerts(**fields: Any) -> Call:
        # A table asks for one more than it shows, to say whether more match.
        return one("ListAlerts", operator_pb2.ListAlertsRequest(limit=page + 1, **fields), "alerts")

    flt = operator_pb2.AgentFilter
    json_out = ("--output", "json")
    return [
        Query("agents list", ("agents", "list"), agents(flt(), page)),
        Query("agents list --limit 0 (all)", ("agents", "list", "--limit", "0"), agents(flt())),
        Query(
            "agents list --output json (all)",
            ("agents", "list", *json_out),
            agents(flt(), as_json=True),
        ),
        Query(
            "agents list --page-token (page 50)",
            ("agents", "list", "--page-token", str(page * 49)),
            agents(flt(), page, page * 49),
        ),
        Query(
            "agents list --client",
            ("agents", "list", "--client", client),
            agents(flt(client=client), page),
        ),
        Query(
            "agents list --client --site",
            ("agents", "list", "--client", client, "--site", site),
            agents(flt(client=client, site=site), page),
        ),
        Query(
            "agents list --tag server",
            ("agents", "list", "--tag", "server"),
            agents(flt(tag="server"), page),
        ),
        Query(
            "agents list --tag server --output json",
            ("agents", "list", "--tag", "server", *json_out),
            agents(flt(tag="server"), as_json=True),
        ),
        Query(
            "agents list --status offline",
            ("agents", "list", "--status", "offline"),
            agents(flt(status="offline"), page),
        ),
        Query(
            "agents list --status online --client",
            ("agents", "list", "--status", "online", "--client", client),
            agents(flt(status="online", client=client), page),
        ),
        Query(
            "agents show (id)",
            ("agents", "show", sample_agent, *json_out),
            one("GetAgent", operator_pb2.GetAgentRequest(agent=sample_agent), None),
        ),
        Query(
            "agents show (hostname)",
            ("agents", "show", sample_host),
            one("GetAgent", operator_pb2.GetAgentRequest(agent=sample_host), None),
        ),
        Query("alerts list", ("alerts", "list"), alerts()),
        Query(
            "alerts list --output json",
            ("alerts", "list", *json_out),
            one("ListAlerts", operator_pb2.ListAlertsRequest(), "alerts"),
        ),
        Query(
            "alerts list --client", ("alerts", "list", "--client", client), alerts(client=client)
        ),
        Query(
            "alerts list --agent",
            ("alerts", "list", "--agent", sample_agent),
            alerts(agent=sample_agent),
        ),
        Query(
            "alerts list --state resolved",
            ("alerts", "list", "--state", "resolved"),
            alerts(states=["resolved"]),
        ),
        Query(
            "commands list",
            ("commands", "list"),
            one("ListCommands", operator_pb2.ListCommandsRequest(), "commands"),
        ),
        Query(
            "commands list --run",
            ("commands", "list", "--run", run_id),
            one("ListCommands", operator_pb2.ListCommandsRequest(run_id=run_id), "commands"),
        ),
        Query(
            "commands list --agent",
            ("commands", "list", "--agent", sample_agent),
            one("ListCommands", operator_pb2.ListCommandsRequest(agent=sample_agent), "commands"),
        ),
        Query(
            "commands list --status queued",
            ("commands", "list", "--status", "queued"),
            one(
                "ListCommands",
                operator_pb2.ListCommandsRequest(statuses=[commands_pb2.COMMAND_QUEUED]),
                "commands",
            ),
        ),
        Query(
            "audit list",
            ("audit", "list"),
            one("ListAudit", operator_pb2.ListAuditRequest(limit=100), "entries"),
        ),
        Query(
            "audit list --agent",
            ("audit", "list", "--agent", sample_agent),
            one(
                "ListAudit", operator_pb2.ListAuditRequest(agent=sample_agent, limit=100), "entries"
            ),
        ),
        Query(
            "audit list --operator",
            ("audit", "list", "--operator", "admin"),
            one("ListAudit", operator_pb2.ListAuditRequest(operator="admin", limit=100), "entries"),
        ),
        Query(
            "scripts list",
            ("scripts", "list"),
            one("ListScripts", operator_pb2.ListScriptsRequest(), "scripts"),
        ),
        Query(
            "tokens list",
            ("tokens", "list"),
            one("ListEnrollmentTokens", operator_pb2.ListEnrollmentTokensRequest(), "tokens"),
        ),
        Query(
            "operators list",
            ("operators", "list"),
            one("ListOperators", operator_pb2.ListOperatorsRequest(), "operators"),
        ),
        Query(
            "silences list",
            ("silences", "list"),
            one("ListSilences", operator_pb2.ListSilencesRequest(), "silences"),
        ),
        Query(
            "maintenance list",
            ("maintenance", "list"),
            one("ListMaintenance", operator_pb2.ListMaintenanceRequest(), "windows"),
        ),
        Query(
            "notifications failed",
            ("notifications", "failed"),
            one(
                "ListFailedNotifications",
                operator_pb2.ListFailedNotificationsRequest(limit=50),
                "failures",
            ),
        ),
        Query(
            "policy explain",
            ("policy", "explain", sample_agent),
            one("ExplainPolicy", operator_pb2.ExplainPolicyRequest(agent=sample_agent), "rules"),
        ),
    ]


def time_cli(
    argv: Sequence[str], env: dict[str, str], tree: Path | None = None
) -> tuple[float, float, int]:
    """Run the CLI once (the `rmm` of source tree `tree` when given); return its wall time, its
    CPU time (user + system: what it costs whatever else the machine runs) and how many bytes it
    printed."""
    if tree is not None:
        # The same launcher: rmm_* found on PYTHONPATH before the editable install's finder.
        env = dict(env, PYTHONPATH=str(tree))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(
        [str(BIN / "rmm"), *argv],
        env=env,
        capture_output=True,
        timeout=CALL_TIMEOUT_SECONDS,
        check=False,
    )
    wall = time.perf_counter() - started
    # Only the CLI is reaped in between: the server, also a child, is counted when it ends.
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if result.returncode != 0:
        raise BenchError(
            f"rmm {' '.join(argv)}{f' (from {tree})' if tree else ''} exited "
            f"{result.returncode}: {result.stderr.decode(errors='replace')[-500:]}"
        )
    return wall, cpu, len(result.stdout)


def with_bytecode(env: dict[str, str], cache: Path) -> dict[str, str]:
    """Return `env` for an `rmm` that runs as an installed one does, from compiled bytecode
    (kept in `cache`), whatever PYTHONDONTWRITEBYTECODE this environment sets: pip compiles an
    installed package's modules, a source checkout run without bytecode compiles every module
    it imports at every start."""
    env = {key: value for key, value in env.items() if key != "PYTHONDONTWRITEBYTECODE"}
    return dict(env, PYTHONPYCACHEPREFIX=str(cache))


def warm_bytecode(env: dict[str, str], selected: Sequence[Query], peer: Path | None) -> None:
    """Run each command group once (its --help imports its module), and one call to the server,
    so that timed runs find every module compiled, for this tree and the peer's."""
    argvs = [["--version"], ["agents", "list", "--limit", "1"], ["alerts", "list", "--limit", "1"]]
    argvs += [[group, "--help"] for group in dict.fromkeys(query.argv[0] for query in selected)]
    for argv in argvs:
        for tree in (None, peer) if peer else (None,):
            time_cli(argv, env, tree)


def measure_queries(
    address: str,
    env: dict[str, str],
    selected: Sequence[Query],
    repeat: int,
    peer_tree: Path | None = None,
    server_pid: int | None = None,
) -> list[dict[str, Any]]:
    """Time each query `repeat` times: gRPC, this tree's CLI and the peer's, interleaved. CPU
    times are kept beside wall times: on a machine shared with other work they move far less."""
    channel = grpc.insecure_channel(address, options=OPTIONS)
    token = env["RMM_TOKEN"]
    stub = operator_pb2_grpc.OperatorServiceStub(_AuthChannel(channel, token))
    server = psutil.Process(server_pid) if server_pid else None
    results: list[dict[str, Any]] = []

    def server_cpu() -> float:
        if server is None:
            return 0.0
        times = server.cpu_times()
        return float(times.user + times.system)

    def clis(argv: Sequence[str], samples: dict[str, list[float]]) -> int:
        wall, cpu, size = time_cli(argv, env)
        samples["cli_seconds"].append(wall)
        samples["cli_cpu_seconds"].append(cpu)
        if peer_tree is not None:
            wall, cpu, _ = time_cli(argv, env, peer_tree)
            samples["peer_cli_seconds"].append(wall)
            samples["peer_cli_cpu_seconds"].append(cpu)
        return size

    def new_samples() -> dict[str, list[float]]:
        keys = ("cli", "cli_cpu", "peer_cli", "peer_cli_cpu", "grpc", "server_cpu")
        return {f"{key}_seconds": [] for key in keys}

    try:
        for name, argv in (
            ("rmm --version (start-up floor)", ["--version"]),
            ("rmm --help", ["--help"]),
        ):
            samples = new_samples()
            for _ in range(repeat):
                clis(argv, samples)
            results.append({"name": name, "argv": argv, **samples, "rows": None, "cli_bytes": None})
        for query in selected:
            samples, rows, size = new_samples(), 0, 0
            for _ in range(repeat):
                cpu_before = server_cpu()
                started = time.perf_counter()
                rows = query.call(stub)
                samples["grpc_seconds"].append(time.perf_counter() - started)
                samples["server_cpu_seconds"].append(server_cpu() - cpu_before)
                size = clis(query.argv, samples)
            results.append(
                {"name": query.name, "argv": list(query.argv), **samples, "rows": rows,
                 "cli_bytes": size}
            )  # fmt: skip
            print(f"  {query.name:<40} {_medians(results[-1])}   rows {rows}", flush=True)
    finally:
        channel.close()
    return results


def _medians(entry: dict[str, Any]) -> str:
    """Return one line of an entry's medians in milliseconds."""
    parts = []
    for key, label in (
        ("grpc_seconds", "grpc"),
        ("server_cpu_seconds", "server cpu"),
        ("cli_seconds", "cli"),
        ("cli_cpu_seconds", "cli cpu"),
        ("peer_cli_seconds", "peer cli"),
        ("peer_cli_cpu_seconds", "peer cli cpu"),
    ):
        if entry.get(key):
            parts.append(f"{label} {statistics.median(entry[key]) * 1000:7.1f}")
    return "  ".join(parts)


def compare_list_paths(db_url: str, repeat: int) -> list[dict[str, Any]]:
    """CPU time of one ListAgents page built the way before issue #16 (Store.list_agents: whole
    records, tags by an IN list of the page's ids, agent_to_summary) and the way ListAgents
    builds it now (storage/agent_list.py, list_row_to_summary), alternately in this process on
    the server's own database: a peer in the same run, whatever else loads the machine."""
    from rmm_server.grpc_api.operator_service import (  # noqa: PLC0415 - the server's code
        agent_to_summary,
        list_row_to_summary,
    )
    from rmm_server.storage.agent_list import list_agent_rows  # noqa: PLC0415
    from rmm_server.storage.store import AgentQuery, open_store  # noqa: PLC0415

    store = open_store(db_url)
    pages = [
        ("5,000 rows (first page)", AgentQuery(limit=5000)),
        ("2,000 rows at offset 8,000", AgentQuery(limit=2000, offset=8000)),
        ("100 rows at offset 4,900", AgentQuery(limit=100, offset=4900)),
        ("100 rows, --tag server", AgentQuery(tag="server", limit=100)),
    ]
    found = []
    try:
        for name, query in pages:
            before, after = [], []
            for _ in range(repeat):
                now = time.time()
                started = time.process_time()
                records, _total = store.list_agents(query, now)
                old = [agent_to_summary(record, now) for record in records]
                before.append(time.process_time() - started)
                started = time.process_time()
                rows, _total = list_agent_rows(store, query, now)
                new = [list_row_to_summary(row) for row in rows]
                after.append(time.process_time() - started)
                if [m.id for m in old] != [m.id for m in new]:
                    raise BenchError(f"{name}: the two paths listed different agents")
            found.append({"name": name, "before_cpu_seconds": before, "after_cpu_seconds": after})
            print(
                f"  ListAgents page, {name:<28} before {statistics.median(before) * 1000:7.1f} ms"
                f"   after {statistics.median(after) * 1000:7.1f} ms CPU",
                flush=True,
            )
    finally:
        store.close()
    return found


class _AuthChannel:
    """A channel whose unary calls all carry the operator's token."""

    def __init__(self, channel: grpc.Channel, token: str) -> None:
        self.channel = channel
        self.metadata = bearer_metadata(token)

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        multi = self.channel.unary_unary(method, *args, **kwargs)
        metadata = self.metadata

        def call(request: Any, timeout: float | None = None) -> Any:
            return multi(request, timeout=timeout, metadata=metadata)

        return call

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self.channel.unary_stream(method, *args, **kwargs)

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self.channel.stream_unary(method, *args, **kwargs)

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self.channel.stream_stream(method, *args, **kwargs)


# --------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start a server, populate it, time the queries; return every figure."""
    template, inventory_json = capture_template()
    with (
        tempfile.TemporaryDirectory(prefix="rmm-bench-queries-") as tmp,
        fresh_database(args.db) as db_url,
    ):
        workdir = Path(tmp)
        data_dir, log_path = workdir / "server", workdir / "server.log"
        address = f"127.0.0.1:{free_port()}"
        http_url = f"http://127.0.0.1:{free_port()}"
        db_args = ["--db", db_url] if db_url else []
        proc = spawn(
            [
                BIN / "rmm-server",
                "serve",
                "--data-dir",
                data_dir,
                "--grpc-listen",
                address,
                "--http-listen",
                http_url.removeprefix("http://"),
                "--insecure",
                "--log-format",
                "json",
                "--policies",
                str(POLICIES),
                *RATE_LIMITS_OFF,
                # AgentOffline opens as soon as the --offline agents miss their reports.
                "--offline-grace",
                "0s",
                *db_args,
            ],
            log_path,
        )
        try:

            def ready() -> bool:
                ensure_alive(proc, "rmm-server", log_path)
                return (data_dir / "admin.token").exists() and bool(http_get(http_url + "/healthz"))

            wait_until(ready, START_TIMEOUT_SECONDS, f"rmm-server on {http_url}/healthz")
            token = (data_dir / "admin.token").read_text().strip()
            env = dict(os.environ, RMM_SERVER=address, RMM_TOKEN=token, RMM_INSECURE="1")
            print(
                f"populating: {args.agents} agents over {args.clients} clients x "
                f"{args.sites} sites ({mask_url(db_url) if db_url else 'SQLite'})...",
                flush=True,
            )
            population = asyncio.run(populate(address, token, args, template, inventory_json))
            print(
                f"  enrolled in {population['enroll_seconds']:.1f} s "
                f"({population['enroll_per_second']:.0f}/s), one report each in "
                f"{population['report_seconds']:.1f} s "
                f"({population['reports_per_second']:.0f}/s)",
                flush=True,
            )
            started = time.monotonic()
            run_ids = queue_commands(env, args.runs_of_commands, args.sites)
            population["command_runs"] = len(run_ids)
            population["command_seconds"] = time.monotonic() - started
            # Alerts open once each hot agent's first report was evaluated, and on the
            # --offline agents once they missed 3 intervals; measure with all of them open.
            expected = population["agents_with_alerts"]
            population["open_alerts"] = wait_until(
                lambda: _open_alert_count(env, expected),
                OFFLINE_INTERVAL_SECONDS * 3 + 120.0,
                f"alerts open on {expected} agents (hot or offline)",
            )
            load_before = os.getloadavg()
            print(
                f"timing ({args.repeat} times each; load average {load_before[0]:.2f})...",
                flush=True,
            )
            selected = [
                q
                for q in queries(
                    population["sample_agent"],
                    population["sample_hostname"],
                    run_ids[0] if run_ids else "",
                )
                if args.only is None or args.only in q.name
            ]
            cli_env = env
            if args.cli_bytecode:
                cli_env = with_bytecode(env, workdir / "pycache")
                warm_bytecode(cli_env, selected, args.peer_tree)
            results = measure_queries(
                address, cli_env, selected, args.repeat, args.peer_tree, proc.pid
            )
            list_paths = compare_list_paths(
                db_url or f"sqlite:///{data_dir / 'rmm.sqlite3'}", max(args.repeat, 5)
            )
            ensure_alive(proc, "rmm-server", log_path)
        finally:
            stopped = stop_process(proc)
        problems = log_problems(log_path)
    return {
        "database": "postgresql" if args.db else "sqlite",
        "peer_tree": str(args.peer_tree) if args.peer_tree else None,
        "population": population,
        "queries": results,
        "list_paths": list_paths,
        "loadavg_before": list(load_before),
        "loadavg_after": list(os.getloadavg()),
        "server_stop": stopped,
        "server_log": problems,
    }


def _open_alert_count(env: dict[str, str], agents: int) -> int | None:
    alerts = json.loads(
        run_command([BIN / "rmm", "alerts", "list", "--limit", "5000", "--output", "json"], env)
    )
    with_alerts = {alert["agent_id"] for alert in alerts}
    return len(alerts) if len(with_alerts) >= agents else None


def print_report(result: dict[str, Any]) -> None:
    pop = result["population"]
    print()
    print(
        f"{result['database']}: {pop['agents']} agents, {pop['tokens']} client/site tokens, "
        f"{pop['hot_agents']} hot agents, {pop['open_alerts']} open alerts, "
        f"{pop['command_runs']} queued runs; load average "
        f"{result['loadavg_before'][0]:.2f} -> {result['loadavg_after'][0]:.2f}"
    )
    peer = bool(result.get("peer_tree"))
    if peer:
        print(f"(peer: the rmm of {result['peer_tree']}, run right after this tree's each time)")
    columns = [
        ("gRPC", "grpc_seconds"),
        ("srv CPU", "server_cpu_seconds"),
        ("CLI", "cli_seconds"),
        ("CLI CPU", "cli_cpu_seconds"),
    ]
    if peer:
        columns += [("peer CLI", "peer_cli_seconds"), ("peer CPU", "peer_cli_cpu_seconds")]
    print(
        f"{'query (ms, medians)':<42}"
        + "".join(f"{label:>10}" for label, _ in columns)
        + f"{'rows':>8}{'CLI bytes':>12}"
    )
    slow = []
    for entry in result["queries"]:
        cells = [
            f"{statistics.median(entry[key]) * 1000:.1f}" if entry.get(key) else "-"
            for _, key in columns
        ]
        print(
            f"{entry['name']:<42}"
            + "".join(f"{cell:>10}" for cell in cells)
            + f"{'' if entry['rows'] is None else entry['rows']:>8}"
            f"{'' if entry['cli_bytes'] is None else entry['cli_bytes']:>12}"
        )
        grpc_ms = statistics.median(entry["grpc_seconds"]) * 1000 if entry["grpc_seconds"] else None
        if grpc_ms is not None and grpc_ms >= TARGET_CALL_SECONDS * 1000:
            slow.append(entry["name"])
    print(f"gRPC calls at or over {TARGET_CALL_SECONDS:g} s: {', '.join(slow) or 'none'}")
    for entry in result.get("list_paths", []):
        print(
            f"ListAgents page, {entry['name']}: CPU before issue #16 "
            f"{statistics.median(entry['before_cpu_seconds']) * 1000:.1f} ms, now "
            f"{statistics.median(entry['after_cpu_seconds']) * 1000:.1f} ms"
        )
    if result["server_log"].get("error") or result["server_log"].get("critical"):
        print(f"server log problems: {result['server_log']}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.operator_queries",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--sites", type=int, default=4, help="sites per client")
    parser.add_argument(
        "--hot", type=int, default=300, help="agents that run hot, so alerts open on them"
    )
    parser.add_argument(
        "--offline",
        type=int,
        default=200,
        help="agents that go offline 90 s after their report, so AgentOffline opens on them",
    )
    parser.add_argument(
        "--runs-of-commands",
        type=int,
        default=10,
        help="remote actions queued, each for one client/site's agents",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=64,
        help="enrollments and reports in flight while populating",
    )
    parser.add_argument("--repeat", type=int, default=5, help="timings per query (median)")
    parser.add_argument("--only", help="time only queries whose name contains this")
    parser.add_argument(
        "--db",
        help="postgresql://USER@HOST:PORT/DB: a fresh database is "
        "created on that server (and dropped afterwards) instead of SQLite",
    )
    parser.add_argument(
        "--peer-tree",
        type=Path,
        help="a source tree of another version (git archive COMMIT | tar -x -C DIR): its rmm "
        "is timed beside this tree's on every query, against the same server",
    )
    parser.add_argument(
        "--cli-bytecode",
        action="store_true",
        help="run every rmm from compiled bytecode, as an installed rmm runs (its cache in the "
        "work directory, warmed first), even where PYTHONDONTWRITEBYTECODE is set",
    )
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    args = parser.parse_args(argv)
    if not 1 <= args.agents <= 100_000:
        parser.error("--agents must be between 1 and 100,000")
    if args.clients < 2 or args.sites < 2:
        parser.error("--clients and --sites must be at least 2 (the filters pick client 1, site 1)")
    if not 0 <= args.offline <= args.agents:
        parser.error("--offline must be between 0 and --agents")
    if not 0 <= args.hot <= args.agents:
        parser.error("--hot must be between 0 and --agents")
    if not 1 <= args.runs_of_commands <= args.clients * args.sites:
        parser.error("--runs-of-commands must be between 1 and --clients x --sites")
    if not 1 <= args.repeat <= 50:
        parser.error("--repeat must be between 1 and 50")
    if args.peer_tree and not (args.peer_tree / "rmm_cli" / "main.py").is_file():
        parser.error(f"--peer-tree {args.peer_tree} has no rmm_cli/main.py: not a source tree")
    if args.db and not args.db.startswith("postgresql"):
        parser.error("--db takes a postgresql:// URL (SQLite is the default)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    started = datetime.now(UTC).isoformat()
    try:
        result = run(args)
    except BenchError as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        return 1
    print_report(result)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "benchmark": "operator_queries",
                    "started_at": started,
                    "finished_at": datetime.now(UTC).isoformat(),
                    "machine": machine(),
                    "args": {
                        k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
                    },
                    **result,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
