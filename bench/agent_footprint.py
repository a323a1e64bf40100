"""The agent's footprint against Prometheus' node_exporter and zabbix_agent2, in the same run.

Five measurements, each repeated `--runs` times (figures are medians across runs):

1. in-process: one `ReportBuilder` over every collector, warmed up once, then `--cycles`
   `build()` calls timed with `time.process_time()` (CPU of every thread of this process), its
   clock moved `--interval` between two (a collector read at most every few seconds is read
   as often as in the real agent);
2. the real agent: `rmm-server serve --insecure` and `rmm-agent run --interval 1` as real
   processes on loopback; VmRSS sampled every second for `--duration` seconds, and CPU per
   report (utime+stime over reports made) over the last half of that window;
3. node_exporter: `--cycles` scrapes of /metrics after 3 warm-up scrapes, with the exporter's
   CPU per scrape and its VmRSS from /proc;
4. breakdown: the agent's parts (`assemble_agent`) in this process at interval 1 s for
   `--breakdown-duration` seconds: CPU per cycle by thread and the report loop's by step;
5. idle: the real agent again at the default 30 s interval for `--idle-duration` seconds, its
   CPU per minute over the steady half (cycles included), with zabbix_agent2 running idle beside
   it over the same minutes; then `--cycles` polls of zabbix_agent2 (16 passive items each).

Run from the repository root:

    .venv/bin/python -m bench.agent_footprint --runs 3 --json /tmp/footprint.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import psutil

from rmm_agent import __version__ as agent_version
from rmm_agent.cli import make_collectors
from rmm_agent.report import ReportBuilder

BIN = Path(sys.executable).parent
NODE_EXPORTER = Path("/usr/bin/prometheus-node-exporter")
CLK_TCK = os.sysconf("SC_CLK_TCK")
WARMUP_SCRAPES = 3
SAMPLE_EVERY_SECONDS = 1.0
STOP_TIMEOUT_SECONDS = 10.0
START_TIMEOUT_SECONDS = 30.0
# The issue's targets for the Python agent.
TARGET_RSS_MB = 35.0
# CPU per cycle: at most node_exporter's per scrape, measured in the same run (a ratio <= 1).
TARGET_CPU_RATIO = 1.0
# At the default interval: at most 0.1 s of CPU per minute, cycles included.
TARGET_IDLE_CPU_MS_PER_MINUTE = 100.0
DEFAULT_INTERVAL_SECONDS = 30.0
ZABBIX_AGENT2 = Path("/usr/sbin/zabbix_agent2")

T = TypeVar("T")


class BenchError(RuntimeError):
    """Something the benchmark started did not behave; the message says what and where."""


# --------------------------------------------------------------------------------------------
# Small helpers: /proc, statistics, processes


def cpu_ticks_of(stat_path: Path) -> int:
    """Return utime+stime in clock ticks from a proc stat file (a process's or a thread's)."""
    data = stat_path.read_bytes()
    # The command name is in parentheses and may hold spaces: split after the last ")".
    fields = data[data.rindex(b")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # fields 14 utime and 15 stime of proc_pid_stat(5)


def cpu_ticks(pid: int) -> int:
    """Return utime+stime of `pid` in clock ticks, from /proc/<pid>/stat."""
    return cpu_ticks_of(Path(f"/proc/{pid}/stat"))


def rss_kb(pid: int) -> int:
    """Return VmRSS of `pid` in kB, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"no VmRSS in /proc/{pid}/status (a kernel thread or a zombie?)")


def ticks_ms(ticks: float) -> float:
    """Convert clock ticks to milliseconds."""
    return ticks * 1000.0 / CLK_TCK


def summarise(values: Sequence[float]) -> dict[str, float]:
    """Return median, p90, min, max and mean of `values` (which must not be empty)."""
    ordered = sorted(values)
    if len(ordered) > 1:
        p90 = statistics.quantiles(ordered, n=10, method="inclusive")[8]
    else:
        p90 = ordered[0]
    return {
        "median": statistics.median(ordered),
        "p90": p90,
        "min": ordered[0],
        "max": ordered[-1],
        "mean": statistics.fmean(ordered),
        "n": float(len(ordered)),
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """Return numerator/denominator, or None when either is missing or the denominator is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def median_or_none(values: Sequence[float | None]) -> float | None:
    """Return the median of the values that are not None, or None when there are none."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str, timeout: float = 10.0) -> bytes:
    """GET `url` and return the body; raise on anything but 200."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        if response.status != 200:
            raise BenchError(f"GET {url}: HTTP {response.status}")
        body: bytes = response.read()
        return body


def wait_until(predicate: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll `predicate` every 0.1 s until it returns something truthy, at most `timeout` s."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    for _ in range(int(timeout / 0.1) + 1):
        try:
            value = predicate()
        except BenchError:
            raise
        except Exception as exc:  # not up yet
            last_error = exc
        else:
            if value:
                return value
        if time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    raise BenchError(f"timed out after {timeout:g}s waiting for {what} (last error: {last_error})")


def spawn(argv: Sequence[str | Path], log_path: Path, env: dict[str, str] | None = None
          ) -> subprocess.Popen[bytes]:
    """Start `argv` with stdout and stderr going to `log_path`."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [str(arg) for arg in argv], stdout=log, stderr=subprocess.STDOUT, env=env
        )


def stop_process(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT_SECONDS
                 ) -> dict[str, Any]:
    """SIGTERM `proc`, SIGKILL it if it has not exited after `timeout`; say how it ended."""
    if proc.poll() is not None:
        return {"exit_code": proc.returncode, "killed": False, "exited_before_stop": True}
    proc.send_signal(signal.SIGTERM)
    try:
        return {"exit_code": proc.wait(timeout), "killed": False, "exited_before_stop": False}
    except subprocess.TimeoutExpired:
        proc.kill()
        return {"exit_code": proc.wait(timeout), "killed": True, "exited_before_stop": False}


def ensure_alive(proc: subprocess.Popen[bytes], what: str, log_path: Path) -> None:
    """Raise BenchError with the log's tail when `proc` has exited."""
    if proc.poll() is not None:
        tail = log_path.read_text(errors="replace")[-2000:]
        raise BenchError(f"{what} exited with {proc.returncode}; log {log_path}:\n{tail}")


def run_command(argv: Sequence[str | Path], env: dict[str, str] | None = None,
                timeout: float = 60.0) -> str:
    """Run a command to completion and return its stdout; raise BenchError on failure."""
    result = subprocess.run(
        [str(arg) for arg in argv], env=env, capture_output=True, text=True, timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise BenchError(
            f"{' '.join(str(a) for a in argv)} exited {result.returncode}: {result.stderr[-2000:]}"
        )
    return result.stdout


# --------------------------------------------------------------------------------------------
# 1. One collection cycle, in this process


def measure_in_process(cycles: int, interval: float) -> dict[str, Any]:
    """Time `cycles` ReportBuilder.build() calls (after one warm-up) in CPU and wall time.

    The builds follow each other at once, but the builder's clock moves `interval` seconds
    between two, as the real agent's does: a collector read at most every few seconds
    (`min_interval_seconds`) is then read as often as in the real agent at that interval."""
    skipped = [0.0]

    def agent_clock() -> float:
        return time.monotonic() + skipped[0]

    builder = ReportBuilder(make_collectors([]), monotonic=agent_clock)
    try:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        warm = builder.build()
        warmup = {
            "cpu_ms": (time.process_time() - cpu0) * 1000.0,
            "wall_ms": (time.perf_counter() - wall0) * 1000.0,
            "collector_wall_ms": {c.name: c.duration_seconds * 1000.0 for c in warm.collectors},
        }
        inventory = sorted(c.name for c in builder.collectors if c.inventory)
        cpu_ms: list[float] = []
        wall_ms: list[float] = []
        durations: dict[str, list[float]] = {}
        failures: dict[str, str] = {}
        report = warm
        for _ in range(cycles):
            skipped[0] += interval
            cpu0, wall0 = time.process_time(), time.perf_counter()
            report = builder.build()
            cpu_ms.append((time.process_time() - cpu0) * 1000.0)
            wall_ms.append((time.perf_counter() - wall0) * 1000.0)
            for result in report.collectors:
                if not result.ok:
                    failures[result.name] = result.error
                # Inventory results are carried over from the warm-up (re-read hourly): their
                # duration is the warm-up's, not this cycle's; a reading repeated (not due) has 0.
                if result.name not in inventory and result.duration_seconds > 0:
                    durations.setdefault(result.name, []).append(result.duration_seconds * 1000.0)
    finally:
        builder.close()
    series_by_collector = {c.name: len(c.samples) for c in report.collectors}
    return {
        "cycles": cycles,
        "warmup": warmup,
        "cpu_ms": summarise(cpu_ms),
        "wall_ms": summarise(wall_ms),
        "collector_wall_ms_median": {
            name: statistics.median(values) for name, values in durations.items()
        },
        # Cycles in which each collector ran (not carrying a reading over).
        "collector_runs": {name: len(values) for name, values in durations.items()},
        "collector_wall_ms_p90": {
            name: summarise(values)["p90"] for name, values in durations.items()
        },
        "inventory_collectors": inventory,
        "failed_collectors": failures,
        "series": sum(series_by_collector.values()),
        "series_by_collector": series_by_collector,
    }


# --------------------------------------------------------------------------------------------
# 2. The real agent, reporting to a real server


@dataclass(slots=True)
class ProcSample:
    at: float
    rss_kb: int
    ticks: int
    sequence: int


def report_sequence(state_dir: Path) -> int:
    """Return the last report number the agent made, from its runtime.json (0 before any)."""
    try:
        data = json.loads((state_dir / "runtime.json").read_text())
    except FileNotFoundError:
        return 0
    return int(data.get("sequence", 0))


def log_problems(log_path: Path, limit: int = 10) -> dict[str, Any]:
    """Count warning and error lines of a JSON-lines log; keep the first `limit` of them."""
    counts = {"warning": 0, "error": 0, "critical": 0, "not_json": 0}
    first: list[str] = []
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
            level, message = str(entry.get("level", "")), str(entry.get("msg", ""))
        except (ValueError, AttributeError):  # a traceback or other raw output
            level, message = "not_json", line
        if level not in counts:
            continue
        counts[level] += 1
        if len(first) < limit:
            first.append(f"{level}: {message}"[:300])
    return {"counts": counts, "first": first}


# Where the agent's memory goes before it collects anything: the interpreter alone, then
# with the modules `rmm-agent run` imports (grpc, protobuf, psutil, click, yaml...).
IMPORT_PROBE = """
def rss():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
bare = rss()
import rmm_agent.cli, rmm_agent.runner
print(bare, rss())
"""


def measure_import_rss() -> dict[str, float]:
    """Return the RSS of a fresh interpreter, before and after importing the agent, in MB."""
    bare, imported = (int(v) for v in run_command([sys.executable, "-c", IMPORT_PROBE]).split())
    return {"rss_mb_interpreter": bare / 1024.0, "rss_mb_after_imports": imported / 1024.0}


@dataclass(slots=True)
class Enrolled:
    """A running rmm-server and an agent state directory enrolled with it."""

    server: subprocess.Popen[bytes]
    state_dir: Path
    grpc_address: str
    env: dict[str, str]  # for `rmm` calls: RMM_SERVER, RMM_TOKEN (the admin's), RMM_INSECURE
    server_stop: dict[str, Any] = field(default_factory=dict)  # how the server ended


@contextlib.contextmanager
def enrolled_server(workdir: Path) -> Iterator[Enrolled]:
    """Start `rmm-server serve --insecure` on free loopback ports and enroll an agent state
    directory with a one-use token; stop the server on the way out."""
    server_dir, state_dir = workdir / "server", workdir / "agent"
    server_log = workdir / "server.log"
    grpc_address = f"127.0.0.1:{free_port()}"
    http_url = f"http://127.0.0.1:{free_port()}"
    server = spawn(
        [BIN / "rmm-server", "serve", "--data-dir", server_dir, "--grpc-listen", grpc_address,
         "--http-listen", http_url.removeprefix("http://"), "--insecure"],
        server_log,
    )
    enrolled = Enrolled(server, state_dir, grpc_address, dict(os.environ))
    try:

        def server_ready() -> bool:
            ensure_alive(server, "rmm-server", server_log)
            return (server_dir / "admin.token").exists() and bool(http_get(http_url + "/healthz"))

        wait_until(server_ready, START_TIMEOUT_SECONDS, f"rmm-server on {http_url}/healthz")
        enrolled.env.update(
            RMM_SERVER=grpc_address,
            RMM_TOKEN=(server_dir / "admin.token").read_text().strip(),
            RMM_INSECURE="1",
        )
        created = run_command(
            [BIN / "rmm", "tokens", "create", "--client", "bench", "--site", "local",
             "--uses", "1", "--output", "json"],
            enrolled.env,
        )
        run_command(
            [BIN / "rmm-agent", "enroll", "--server", grpc_address,
             "--token", json.loads(created)["token"], "--state-dir", state_dir, "--insecure"]
        )
        yield enrolled
    finally:
        enrolled.server_stop = stop_process(server)


def measure_agent(duration: float, interval: float, workdir: Path,
                  agent_env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a server and an enrolled agent; sample the agent's RSS and CPU for `duration` s."""
    agent_log = workdir / "agent.log"
    with enrolled_server(workdir) as enrolled:
        state_dir, env = enrolled.state_dir, enrolled.env
        agent_id = str(json.loads((state_dir / "identity.json").read_text())["agent_id"])
        started = time.monotonic()
        agent = spawn(
            [BIN / "rmm-agent", "run", "--state-dir", state_dir, "--interval", f"{interval:g}",
             "--log-format", "json"],
            agent_log,
            {**os.environ, **(agent_env or {})},
        )
        try:

            def first_report() -> bool:
                ensure_alive(agent, "rmm-agent run", agent_log)
                return report_sequence(state_dir) >= 1

            wait_until(first_report, START_TIMEOUT_SECONDS, "the agent's first report")
            time_to_first_report = time.monotonic() - started
            samples: list[ProcSample] = []
            begin = time.monotonic()
            for index in range(max(4, round(duration / SAMPLE_EVERY_SECONDS)) + 1):
                pause = begin + index * SAMPLE_EVERY_SECONDS - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                ensure_alive(agent, "rmm-agent run", agent_log)
                samples.append(
                    ProcSample(
                        time.monotonic() - begin, rss_kb(agent.pid), cpu_ticks(agent.pid),
                        report_sequence(state_dir),
                    )
                )
            threads = len(list(Path(f"/proc/{agent.pid}/task").iterdir()))
            shown = json.loads(
                run_command([BIN / "rmm", "agents", "show", agent_id, "--output", "json"], env)
            )
        finally:
            agent_stop = stop_process(agent)
    server_stop = enrolled.server_stop

    steady = samples[len(samples) // 2 :]
    first, last = steady[0], steady[-1]
    reports = last.sequence - first.sequence
    counted_by = "runtime.json sequence"
    if reports <= 0:
        reports = max(1, round((last.at - first.at) / interval))
        counted_by = "elapsed time / interval"
    steady_cpu_ms = ticks_ms(last.ticks - first.ticks)
    rss_mb = [s.rss_kb / 1024.0 for s in steady]
    slope = statistics.linear_regression([s.at for s in steady], rss_mb).slope * 60.0
    return {
        "interval_seconds": interval,
        "duration_seconds": duration,
        "time_to_first_report_seconds": time_to_first_report,
        "samples": [
            {"t": round(s.at, 3), "rss_kb": s.rss_kb, "cpu_ticks": s.ticks, "sequence": s.sequence}
            for s in samples
        ],
        "steady_window_seconds": last.at - first.at,
        "threads": threads,
        "rss_mb_median": statistics.median(rss_mb),
        "rss_mb_max": max(rss_mb),
        "rss_mb_first_sample": samples[0].rss_kb / 1024.0,
        "rss_mb_slope_per_minute": slope,
        "reports_in_window": reports,
        "reports_counted_by": counted_by,
        "cpu_ms_in_window": steady_cpu_ms,
        "cpu_ms_per_cycle": steady_cpu_ms / reports,
        "cpu_ms_per_cycle_whole_life": ticks_ms(samples[-1].ticks) / max(1, samples[-1].sequence),
        "server_view": {
            key: shown.get(key) for key in ("reports_stored", "first_sequence", "last_sequence")
        },
        "agent_stop": agent_stop,
        "server_stop": server_stop,
        "agent_log": log_problems(agent_log),
        **measure_import_rss(),
    }


# --------------------------------------------------------------------------------------------
# 2b. Where a real cycle's CPU goes: the agent's own parts in this process


def thread_ticks() -> dict[int, tuple[str, int]]:
    """Return {native thread id: (name, utime+stime ticks)} for this process's threads."""
    names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
    found: dict[int, tuple[str, int]] = {}
    for task in Path("/proc/self/task").iterdir():
        tid = int(task.name)
        try:
            comm = (task / "comm").read_text().strip()
            found[tid] = (names.get(tid, comm), cpu_ticks_of(task / "stat"))
        except OSError:  # the thread ended meanwhile
            continue
    return found


def thread_group(name: str) -> str:
    """Name the part of the agent a thread belongs to."""
    if name.startswith("collector-"):
        return "collectors (worker threads)"
    if name == "report-loop":
        return "report loop (build, spool, runtime.json)"
    if name == "grpc-loop":
        return "streams (asyncio loop, grpc.aio)"
    return "grpc core and other threads"


STEPS = (("builder", "build"), ("spool", "add"), ("state", "save_runtime"))


def measure_breakdown(duration: float, workdir: Path) -> dict[str, Any]:
    """Run the agent as `rmm-agent run --interval 1` assembles it, in this process, against a
    real server for `duration` s; split its CPU per cycle by thread, and the report loop's by
    step (each step timed with time.thread_time around the call)."""
    from rmm_agent.cli import assemble_agent  # noqa: PLC0415
    from rmm_agent.config import AgentConfig  # noqa: PLC0415
    from rmm_agent.state import StateDir  # noqa: PLC0415

    workdir.mkdir()
    with enrolled_server(workdir) as enrolled:
        identity = StateDir(enrolled.state_dir).load_identity()
        config = AgentConfig()
        config.interval_seconds = 1.0
        agent = assemble_agent(identity, enrolled.state_dir, config)
        runner = agent.runner
        spent: dict[str, float] = {}

        def timed(owner: Any, method: str) -> None:
            call = getattr(owner, method)

            def wrapper(*args: Any, **kwargs: Any) -> Any:
                started = time.thread_time()
                try:
                    return call(*args, **kwargs)
                finally:
                    spent[method] = spent.get(method, 0.0) + time.thread_time() - started

            setattr(owner, method, wrapper)

        for attribute, method in STEPS:
            timed(getattr(runner, attribute), method)
        timed(runner, "collect_now")
        loop = threading.Thread(target=runner.run, name="report-loop")
        loop.start()
        try:
            wait_until(lambda: runner.runtime.sequence >= 3, START_TIMEOUT_SECONDS,
                       "three reports from the in-process agent")
            spent.clear()
            first, before = runner.runtime.sequence, thread_ticks()
            time.sleep(duration)
            cycles, after = runner.runtime.sequence - first, thread_ticks()
            steps = dict(spent)
        finally:
            runner.stop()
            loop.join(15)
            agent.close()
    by_group: dict[str, float] = {}
    for tid, (name, ticks) in after.items():
        used = ticks - before.get(tid, (name, 0))[1]
        group = thread_group(name)
        by_group[group] = by_group.get(group, 0.0) + ticks_ms(used)
    cycles = max(1, cycles)
    per_cycle = {group: ms / cycles for group, ms in by_group.items()}
    step_ms = {method: seconds * 1000.0 / cycles for method, seconds in steps.items()}
    step_ms["other (the cycle's own work)"] = step_ms.pop("collect_now", 0.0) - sum(
        step_ms.get(method, 0.0) for _, method in STEPS
    )
    return {
        "cycles": cycles,
        "duration_seconds": duration,
        "cpu_ms_per_cycle": sum(per_cycle.values()),
        "cpu_ms_per_cycle_by_thread": per_cycle,
        "report_loop_ms_per_cycle_by_step": step_ms,
    }


# --------------------------------------------------------------------------------------------
# 3. node_exporter


def node_exporter_flags() -> list[str]:
    """Flags beyond the listen address: only what a container cannot serve."""
    # Debian enables the systemd collector; without systemd it fails and logs an error on every
    # scrape (the agent's services collector likewise skips hosts without systemd).
    return [] if Path("/run/systemd/system").is_dir() else ["--no-collector.systemd"]


def measure_node_exporter(binary: Path, scrapes: int, workdir: Path) -> dict[str, Any]:
    """Scrape node_exporter `scrapes` times; measure its CPU per scrape and its RSS."""
    log_path = workdir / "node_exporter.log"
    url = f"http://127.0.0.1:{free_port()}/metrics"
    flags = node_exporter_flags()
    proc = spawn(
        [binary, f"--web.listen-address={url.removeprefix('http://').removesuffix('/metrics')}",
         *flags],
        log_path,
    )
    try:

        def ready() -> bytes:
            ensure_alive(proc, "node_exporter", log_path)
            return http_get(url)

        wait_until(ready, START_TIMEOUT_SECONDS, f"node_exporter on {url}")
        for _ in range(WARMUP_SCRAPES):
            http_get(url)
        per_scrape_ticks: list[float] = []
        wall_ms: list[float] = []
        rss_samples: list[float] = []
        body = b""
        total_before = cpu_ticks(proc.pid)
        for _ in range(scrapes):
            before, wall0 = cpu_ticks(proc.pid), time.perf_counter()
            body = http_get(url)
            wall_ms.append((time.perf_counter() - wall0) * 1000.0)
            per_scrape_ticks.append(float(cpu_ticks(proc.pid) - before))
            rss_samples.append(rss_kb(proc.pid) / 1024.0)
        total_ticks = cpu_ticks(proc.pid) - total_before
    finally:
        stop = stop_process(proc)
    lines = [line for line in body.decode("utf-8", "replace").splitlines() if line.strip()]
    series = [line for line in lines if not line.startswith("#")]
    return {
        "flags": flags,
        "scrapes": scrapes,
        "warmup_scrapes": WARMUP_SCRAPES,
        "cpu_ms_per_scrape": ticks_ms(total_ticks) / scrapes,
        "cpu_ms_total": ticks_ms(total_ticks),
        "cpu_ms_per_scrape_ticks": summarise([ticks_ms(t) for t in per_scrape_ticks]),
        "scrape_wall_ms": summarise(wall_ms),
        "rss_mb_median": statistics.median(rss_samples),
        "rss_mb_max": max(rss_samples),
        "series": len(series),
        "series_node_prefixed": sum(1 for line in series if line.startswith("node_")),
        "body_bytes": len(body),
        "stop": stop,
    }


# --------------------------------------------------------------------------------------------
# 4. zabbix_agent2, idle beside the agent, then polled


# What a zabbix server would poll for roughly what the agent's collectors report each cycle.
ZABBIX_ITEMS = (
    "system.cpu.util[,user]",
    "system.cpu.util[,system]",
    "system.cpu.util[,idle]",
    "system.cpu.load[all,avg1]",
    "system.cpu.load[all,avg5]",
    "vm.memory.size[total]",
    "vm.memory.size[available]",
    "system.swap.size[,free]",
    "vfs.fs.size[/,used]",
    "vfs.fs.size[/,free]",
    "vfs.fs.size[/,pused]",
    "net.if.in[lo]",
    "net.if.out[lo]",
    "proc.num[]",
    "system.uptime",
    "system.users.num",
)


def zabbix_free_port() -> int:
    """Return a free loopback port that zabbix_agent2 accepts (ListenPort is 1024-32767)."""
    rng = random.Random()
    for _ in range(100):
        port = rng.randrange(20000, 32768)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise BenchError("no free port in 20000-32767 for zabbix_agent2 (100 tried)")


def zabbix_get(port: int, key: str, timeout: float = 10.0) -> str:
    """Ask a zabbix agent on loopback for one item (the passive protocol: ZBXD header)."""
    payload = key.encode()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(b"ZBXD\x01" + struct.pack("<Q", len(payload)) + payload)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    if not data.startswith(b"ZBXD"):
        raise BenchError(f"zabbix_agent2 on port {port} answered {data[:40]!r} for {key}")
    (length,) = struct.unpack("<Q", data[5:13])
    return data[13 : 13 + length].decode("utf-8", "replace")


class ZabbixAgent:
    """zabbix_agent2 started with a minimal configuration: passive checks on a loopback port,
    no active checks (no server to send to), logs in the work directory."""

    def __init__(self, binary: Path, workdir: Path) -> None:
        self.port = zabbix_free_port()
        self.log_path = workdir / "zabbix_agent2.log"
        self.out_path = workdir / "zabbix_agent2.out"
        config = workdir / "zabbix_agent2.conf"
        config.write_text(
            "\n".join(
                [
                    "Server=127.0.0.1",
                    f"ListenPort={self.port}",
                    "ListenIP=127.0.0.1",
                    "Hostname=bench",
                    "LogType=file",
                    f"LogFile={self.log_path}",
                    "LogFileSize=0",
                    f"PidFile={workdir / 'zabbix_agent2.pid'}",
                    f"ControlSocket={workdir / 'zabbix_agent2.sock'}",
                    "Timeout=10",
                    "",
                ]
            )
        )
        # -f: stay in the foreground, so this is the process measured and stopped.
        self.proc = spawn([binary, "-c", config, "-f"], self.out_path)

    def wait_ready(self) -> None:
        def ready() -> str:
            ensure_alive(self.proc, "zabbix_agent2", self.out_path)
            return zabbix_get(self.port, "agent.ping")

        wait_until(ready, START_TIMEOUT_SECONDS, f"zabbix_agent2 on port {self.port}")

    def poll(self, polls: int) -> dict[str, Any]:
        """Ask for every item of ZABBIX_ITEMS `polls` times; measure CPU per poll and RSS."""
        for key in ZABBIX_ITEMS:  # warm-up: the first CPU reading primes its counters
            zabbix_get(self.port, key)
        rss_samples: list[float] = []
        wall_ms: list[float] = []
        unsupported: set[str] = set()
        before = cpu_ticks(self.proc.pid)
        for _ in range(polls):
            wall0 = time.perf_counter()
            for key in ZABBIX_ITEMS:
                if zabbix_get(self.port, key).startswith("ZBX_NOTSUPPORTED"):
                    unsupported.add(key)
            wall_ms.append((time.perf_counter() - wall0) * 1000.0)
            rss_samples.append(rss_kb(self.proc.pid) / 1024.0)
        ticks = cpu_ticks(self.proc.pid) - before
        return {
            "polls": polls,
            "items_per_poll": len(ZABBIX_ITEMS),
            "unsupported_items": sorted(unsupported),
            "cpu_ms_per_poll": ticks_ms(ticks) / polls,
            "poll_wall_ms": summarise(wall_ms),
            "rss_mb_median": statistics.median(rss_samples),
            "rss_mb_max": max(rss_samples),
        }

    def stop(self) -> dict[str, Any]:
        return stop_process(self.proc)


def measure_idle(duration: float, polls: int, workdir: Path, zabbix: Path | None,
                 agent_env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run the agent at the default interval for `duration` s with zabbix_agent2 idle beside it
    (same minutes, same noise); then poll zabbix_agent2 `polls` times."""
    idle_dir = workdir / "idle"
    idle_dir.mkdir()
    agent_zbx: ZabbixAgent | None = ZabbixAgent(zabbix, workdir) if zabbix is not None else None
    zbx: dict[str, Any] | None = None
    try:
        if agent_zbx is not None:
            agent_zbx.wait_ready()
            ticks0, at0 = cpu_ticks(agent_zbx.proc.pid), time.monotonic()
        agent = measure_agent(duration, DEFAULT_INTERVAL_SECONDS, idle_dir, agent_env)
        if agent_zbx is not None:
            ticks1, at1 = cpu_ticks(agent_zbx.proc.pid), time.monotonic()
            idle_rss = rss_kb(agent_zbx.proc.pid) / 1024.0
            zbx = {
                "idle_window_seconds": at1 - at0,
                "idle_cpu_ms_per_minute": ticks_ms(ticks1 - ticks0) / (at1 - at0) * 60.0,
                "idle_rss_mb": idle_rss,
                **agent_zbx.poll(polls),
            }
    finally:
        if agent_zbx is not None:
            stopped = agent_zbx.stop()
            if zbx is not None:
                zbx["stop"] = stopped
    window = agent["steady_window_seconds"]
    return {
        "agent": agent,
        # Everything the agent did in its steady minute(s): the cycles in it and the idle between.
        "agent_cpu_ms_per_minute": agent["cpu_ms_in_window"] / window * 60.0,
        "zabbix_agent2": zbx,
    }


# --------------------------------------------------------------------------------------------
# One run, many runs, the figures


def headline(run: dict[str, Any]) -> dict[str, float | None]:
    """Return the scalar figures of one run that the summary and the table show."""
    inproc, agent, ne = run["in_process"], run["agent"], run["node_exporter"]
    figures: dict[str, float | None] = {
        "agent_rss_mb_median": agent["rss_mb_median"],
        "agent_rss_mb_max": agent["rss_mb_max"],
        "agent_rss_mb_slope_per_minute": agent["rss_mb_slope_per_minute"],
        "agent_rss_mb_interpreter": agent["rss_mb_interpreter"],
        "agent_rss_mb_after_imports": agent["rss_mb_after_imports"],
        "agent_threads": float(agent["threads"]),
        "agent_cpu_ms_per_cycle_process": agent["cpu_ms_per_cycle"],
        "agent_cpu_ms_per_cycle_inprocess_median": inproc["cpu_ms"]["median"],
        "agent_cpu_ms_per_cycle_inprocess_p90": inproc["cpu_ms"]["p90"],
        "agent_cpu_ms_per_cycle_inprocess_min": inproc["cpu_ms"]["min"],
        "agent_wall_ms_per_cycle_inprocess_median": inproc["wall_ms"]["median"],
        "agent_series": float(inproc["series"]),
        "node_exporter_rss_mb_median": ne["rss_mb_median"],
        "node_exporter_rss_mb_max": ne["rss_mb_max"],
        "node_exporter_cpu_ms_per_scrape": ne["cpu_ms_per_scrape"],
        "node_exporter_cpu_ms_per_scrape_ticks_median": ne["cpu_ms_per_scrape_ticks"]["median"],
        "node_exporter_series": float(ne["series"]),
        "node_exporter_series_node_prefixed": float(ne["series_node_prefixed"]),
    }
    # Ratios within the run: both sides saw the same machine at (nearly) the same time.
    figures["ratio_rss"] = ratio(agent["rss_mb_median"], ne["rss_mb_median"])
    figures["ratio_cpu_process"] = ratio(agent["cpu_ms_per_cycle"], ne["cpu_ms_per_scrape"])
    figures["ratio_cpu_inprocess"] = ratio(inproc["cpu_ms"]["median"], ne["cpu_ms_per_scrape"])
    figures["ratio_series"] = ratio(float(inproc["series"]), float(ne["series"]))
    figures["agent_cpu_ms_per_series_process"] = ratio(
        agent["cpu_ms_per_cycle"], float(inproc["series"])
    )
    figures["node_exporter_cpu_ms_per_series"] = ratio(ne["cpu_ms_per_scrape"], float(ne["series"]))
    idle = run.get("idle")
    zbx = idle["zabbix_agent2"] if idle else None
    figures["agent_idle_cpu_ms_per_minute"] = idle["agent_cpu_ms_per_minute"] if idle else None
    figures["agent_idle_rss_mb_median"] = idle["agent"]["rss_mb_median"] if idle else None
    figures["zabbix_idle_cpu_ms_per_minute"] = zbx["idle_cpu_ms_per_minute"] if zbx else None
    figures["zabbix_rss_mb_median"] = zbx["rss_mb_median"] if zbx else None
    figures["zabbix_cpu_ms_per_poll"] = zbx["cpu_ms_per_poll"] if zbx else None
    figures["ratio_idle_vs_zabbix"] = ratio(
        figures["agent_idle_cpu_ms_per_minute"], figures["zabbix_idle_cpu_ms_per_minute"]
    )
    figures["ratio_rss_vs_zabbix"] = ratio(agent["rss_mb_median"], figures["zabbix_rss_mb_median"])
    breakdown = run.get("breakdown")
    if breakdown:
        figures["breakdown_cpu_ms_per_cycle"] = breakdown["cpu_ms_per_cycle"]
        for group, value in breakdown["cpu_ms_per_cycle_by_thread"].items():
            figures[f"breakdown_thread:{group}"] = value
        for step, value in breakdown["report_loop_ms_per_cycle_by_step"].items():
            figures[f"breakdown_step:{step}"] = value
    return figures


def one_run(index: int, cycles: int, duration: float, interval: float, binary: Path,
            idle_duration: float = 0.0, zabbix: Path | None = None,
            agent_env: dict[str, str] | None = None, breakdown_duration: float = 0.0
            ) -> dict[str, Any]:
    """Measure everything once, in a temporary directory that is removed afterwards."""
    started = datetime.now(UTC).isoformat()
    with tempfile.TemporaryDirectory(prefix="rmm-bench-footprint-") as tmp:
        workdir = Path(tmp)
        print(f"run {index}: in-process, {cycles} cycles...", flush=True)
        in_process = measure_in_process(cycles, interval)
        print(f"run {index}: node_exporter, {cycles} scrapes...", flush=True)
        node_exporter = measure_node_exporter(binary, cycles, workdir)
        print(f"run {index}: real agent and server, {duration:g} s...", flush=True)
        agent = measure_agent(duration, interval, workdir, agent_env)
        breakdown: dict[str, Any] | None = None
        if breakdown_duration > 0:
            print(f"run {index}: the agent's parts in this process, {breakdown_duration:g} s...",
                  flush=True)
            breakdown = measure_breakdown(breakdown_duration, workdir / "breakdown")
        idle: dict[str, Any] | None = None
        if idle_duration > 0:
            print(f"run {index}: agent at the default {DEFAULT_INTERVAL_SECONDS:g} s interval"
                  f"{' beside an idle zabbix_agent2' if zabbix else ''}, {idle_duration:g} s...",
                  flush=True)
            idle = measure_idle(idle_duration, cycles, workdir, zabbix, agent_env)
    run: dict[str, Any] = {
        "run": index,
        "started_at": started,
        "finished_at": datetime.now(UTC).isoformat(),
        "loadavg_after": list(os.getloadavg()),
        "in_process": in_process,
        "agent": agent,
        "node_exporter": node_exporter,
        "idle": idle,
        "breakdown": breakdown,
    }
    run["figures"] = headline(run)
    return run


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the median of every headline figure and every collector's duration over runs."""
    names = list(dict.fromkeys(name for r in runs for name in r["figures"]))
    figures = {name: median_or_none([r["figures"].get(name) for r in runs]) for name in names}
    collectors = sorted({n for r in runs for n in r["in_process"]["collector_wall_ms_median"]})
    per_collector = {
        name: median_or_none(
            [r["in_process"]["collector_wall_ms_median"].get(name) for r in runs]
        )
        for name in collectors
    }
    warmup = {
        name: median_or_none(
            [r["in_process"]["warmup"]["collector_wall_ms"].get(name) for r in runs]
        )
        for name in runs[0]["in_process"]["inventory_collectors"]
    }
    return {
        "runs": len(runs),
        "figures": figures,
        "collector_wall_ms_median": per_collector,
        "inventory_collector_wall_ms_warmup": warmup,
        "series_by_collector": runs[-1]["in_process"]["series_by_collector"],
    }


def verdicts(figures: dict[str, float | None]) -> dict[str, dict[str, Any]]:
    """Judge the agent against the issue's targets (each value at most its limit)."""
    checks = {
        "rss_mb_at_most_35": ("agent_rss_mb_median", TARGET_RSS_MB),
        "cpu_per_cycle_at_most_node_exporters_process": ("ratio_cpu_process", TARGET_CPU_RATIO),
        "cpu_per_cycle_at_most_node_exporters_inprocess": (
            "ratio_cpu_inprocess", TARGET_CPU_RATIO,
        ),
        "idle_cpu_ms_per_minute_at_most_100": (
            "agent_idle_cpu_ms_per_minute", TARGET_IDLE_CPU_MS_PER_MINUTE,
        ),
    }
    result: dict[str, dict[str, Any]] = {}
    for key, (figure, limit) in checks.items():
        value = figures.get(figure)
        result[key] = {
            "figure": figure,
            "value": value,
            "limit": limit,
            "pass": value is not None and value <= limit,
        }
    return result


def fmt(value: float | None, spec: str = ".1f", suffix: str = "") -> str:
    """Format a figure, or '-' when it is missing."""
    return "-" if value is None else f"{value:{spec}}{suffix}"


PER_RUN = (
    ("agent RSS MB", "agent_rss_mb_median", ".1f"),
    ("agent CPU ms/cycle (process)", "agent_cpu_ms_per_cycle_process", ".2f"),
    ("agent CPU ms/cycle (in-process)", "agent_cpu_ms_per_cycle_inprocess_median", ".2f"),
    ("node_exporter RSS MB", "node_exporter_rss_mb_median", ".1f"),
    ("node_exporter CPU ms/scrape", "node_exporter_cpu_ms_per_scrape", ".2f"),
    ("CPU ratio (process)", "ratio_cpu_process", ".2f"),
    ("agent idle CPU ms/min (30 s)", "agent_idle_cpu_ms_per_minute", ".0f"),
    ("zabbix_agent2 idle CPU ms/min", "zabbix_idle_cpu_ms_per_minute", ".0f"),
    ("zabbix_agent2 RSS MB", "zabbix_rss_mb_median", ".1f"),
)


def print_report(
    summ: dict[str, Any], judged: dict[str, dict[str, Any]], runs: list[dict[str, Any]]
) -> None:
    """Print the comparison table, the spread over runs, per-collector times and verdicts."""
    f = summ["figures"]
    count = summ["runs"]
    print()
    print(f"agent vs node_exporter (medians over {count} run{'s' if count > 1 else ''})")
    rows = [
        ("", "agent", "node_exporter", "agent/ne"),
        ("RSS MB, median (real process)", fmt(f["agent_rss_mb_median"]),
         fmt(f["node_exporter_rss_mb_median"]), fmt(f["ratio_rss"], ".2f", "x")),
        ("RSS MB, max", fmt(f["agent_rss_mb_max"]), fmt(f["node_exporter_rss_mb_max"]), ""),
        ("CPU ms/cycle, real process total/N", fmt(f["agent_cpu_ms_per_cycle_process"], ".2f"),
         fmt(f["node_exporter_cpu_ms_per_scrape"], ".2f"),
         fmt(f["ratio_cpu_process"], ".2f", "x")),
        ("CPU ms/cycle, in-process median",
         fmt(f["agent_cpu_ms_per_cycle_inprocess_median"], ".2f"), "",
         fmt(f["ratio_cpu_inprocess"], ".2f", "x")),
        ("CPU ms/cycle, in-process p90 / min",
         f"{fmt(f['agent_cpu_ms_per_cycle_inprocess_p90'], '.2f')} / "
         f"{fmt(f['agent_cpu_ms_per_cycle_inprocess_min'], '.2f')}", "", ""),
        ("series per cycle/scrape", fmt(f["agent_series"], ".0f"),
         f"{fmt(f['node_exporter_series'], '.0f')} "
         f"({fmt(f['node_exporter_series_node_prefixed'], '.0f')} node_*)",
         fmt(f["ratio_series"], ".2f", "x")),
        ("CPU us per series", fmt(_us(f["agent_cpu_ms_per_series_process"]), ".1f"),
         fmt(_us(f["node_exporter_cpu_ms_per_series"]), ".1f"), ""),
    ]
    for label, agent, ne, rat in rows:
        print(f"  {label:<36} {agent:>15} {ne:>20} {rat:>9}")
    print()
    print(f"at the default {DEFAULT_INTERVAL_SECONDS:g} s interval, idle between cycles "
          "(agent: its steady window, cycles included; zabbix_agent2: idle beside it)")
    idle_rows = [
        ("", "agent", "zabbix_agent2", "agent/zbx"),
        ("CPU ms per minute", fmt(f["agent_idle_cpu_ms_per_minute"], ".1f"),
         fmt(f["zabbix_idle_cpu_ms_per_minute"], ".1f"),
         fmt(f["ratio_idle_vs_zabbix"], ".1f", "x")),
        ("RSS MB, median", fmt(f["agent_idle_rss_mb_median"]), fmt(f["zabbix_rss_mb_median"]),
         fmt(f["ratio_rss_vs_zabbix"], ".2f", "x")),
        (f"zabbix_agent2 CPU ms per poll of {len(ZABBIX_ITEMS)} items", "",
         fmt(f["zabbix_cpu_ms_per_poll"], ".2f"), ""),
    ]
    for label, agent, zbx, rat in idle_rows:
        print(f"  {label:<36} {agent:>15} {zbx:>20} {rat:>9}")
    split = {k: v for k, v in f.items() if k.startswith("breakdown_")}
    if split:
        print()
        print(f"where a cycle's CPU goes (the agent's parts in this process, interval 1 s): "
              f"{fmt(f.get('breakdown_cpu_ms_per_cycle'), '.2f')} ms a cycle")
        for key, value in split.items():
            if key.startswith("breakdown_thread:"):
                print(f"  {key.removeprefix('breakdown_thread:'):<44} {fmt(value, '.2f'):>7} ms")
        print("  report loop, by step:")
        for key, value in split.items():
            if key.startswith("breakdown_step:"):
                print(f"    {key.removeprefix('breakdown_step:'):<42} {fmt(value, '.2f'):>7} ms")
    print(f"  agent RSS: a bare interpreter {fmt(f['agent_rss_mb_interpreter'])} MB, after the "
          f"agent's imports {fmt(f['agent_rss_mb_after_imports'])} MB; steady-state trend "
          f"{fmt(f['agent_rss_mb_slope_per_minute'], '+.2f')} MB/min; "
          f"{fmt(f.get('agent_threads'), '.0f')} threads")
    if len(runs) > 1:
        print()
        print("each run (the table shows their medians)")
        for label, key, spec in PER_RUN:
            values = " / ".join(fmt(r["figures"][key], spec) for r in runs)
            print(f"  {label:<36} {values}")
    print()
    print("agent collectors, wall ms per cycle they ran in (median; first run's count of "
          "cycles they ran in)")
    series = summ["series_by_collector"]
    ran = runs[0]["in_process"].get("collector_runs", {})
    cycles = runs[0]["in_process"]["cycles"]
    for name, value in sorted(
        summ["collector_wall_ms_median"].items(), key=lambda kv: -(kv[1] or 0.0)
    ):
        print(f"  {name:<12} {fmt(value, '.2f'):>8} ms  {series.get(name, 0):>4} series  "
              f"ran in {ran.get(name, 0)} of {cycles} cycles")
    for name, value in summ["inventory_collector_wall_ms_warmup"].items():
        print(f"  {name:<12} {fmt(value, '.2f'):>8} ms  {series.get(name, 0):>4} series  "
              "(inventory: warm-up only, re-read hourly)")
    print()
    print("targets (issue #16): RSS <= 35 MB; CPU per cycle <= node_exporter's per scrape "
          "(ratio <= 1); <= 100 ms CPU per minute at the default interval")
    for key, verdict in judged.items():
        mark = "PASS" if verdict["pass"] else "FAIL"
        print(f"  {key:<48} {fmt(verdict['value'], '.2f'):>8} <= {verdict['limit']:g}  {mark}")


def _us(ms: float | None) -> float | None:
    return None if ms is None else ms * 1000.0


def node_exporter_version(binary: Path) -> str:
    """Return node_exporter's version line."""
    try:
        result = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except OSError as exc:
        raise BenchError(f"cannot run {binary}: {exc}") from exc
    text = (result.stdout + result.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def machine() -> dict[str, Any]:
    """Describe where the figures come from."""
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "psutil": psutil.__version__,
        "platform": platform.platform(),
        "clock_ticks_per_second": CLK_TCK,
        "loadavg_at_start": list(os.getloadavg()),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.agent_footprint",
        description="Measure the agent's CPU and memory against node_exporter in one run.",
    )
    parser.add_argument("--cycles", type=int, default=100,
                        help="in-process build() calls and node_exporter scrapes (default 100)")
    parser.add_argument("--duration", type=float, default=30.0,
                        help="seconds the real agent is sampled, once reporting (default 30)")
    parser.add_argument("--interval", type=float, default=1.0,
                        help="the real agent's report interval in seconds (default 1)")
    parser.add_argument("--runs", type=int, default=3,
                        help="repeat everything this many times; medians are reported (default 3)")
    parser.add_argument("--node-exporter", type=Path, default=NODE_EXPORTER,
                        help=f"node_exporter binary (default {NODE_EXPORTER})")
    parser.add_argument("--idle-duration", type=float, default=120.0,
                        help="seconds the agent runs at the default 30 s interval beside an idle "
                        "zabbix_agent2; its steady half is measured (default 120; 0 skips)")
    parser.add_argument("--zabbix-agent2", type=Path, default=ZABBIX_AGENT2,
                        help=f"zabbix_agent2 binary (default {ZABBIX_AGENT2}; Debian package "
                        "zabbix-agent2; skipped with a note when missing)")
    parser.add_argument("--breakdown-duration", type=float, default=20.0,
                        help="seconds the agent's parts run in this process to split a cycle's "
                        "CPU by thread and step (default 20; 0 skips)")
    parser.add_argument("--malloc-arena-max", type=int, default=2,
                        help="MALLOC_ARENA_MAX for the real agent, as deploy/systemd/"
                        "rmm-agent.service sets it (default 2; 0: glibc's default)")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    args = parser.parse_args(argv)
    if args.cycles < 2:
        parser.error("--cycles must be at least 2")
    if args.duration < 4:
        parser.error("--duration must be at least 4 seconds")
    if args.interval < 1:
        parser.error("--interval must be at least 1 second (the agent's minimum)")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.malloc_arena_max < 0:
        parser.error("--malloc-arena-max must be 0 (glibc's default) or more")
    if 0 < args.idle_duration < 2 * DEFAULT_INTERVAL_SECONDS:
        parser.error("--idle-duration must be 0 or at least 60 s (two cycles at 30 s)")
    return args


def exit_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    # SystemExit unwinds through the finally blocks, which stop what was started.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    if not sys.platform.startswith("linux"):
        print("agent_footprint needs Linux (/proc)", file=sys.stderr)
        return 2
    if not os.access(args.node_exporter, os.X_OK):
        print(f"node_exporter not found at {args.node_exporter} (--node-exporter)",
              file=sys.stderr)
        return 2
    zabbix: Path | None = args.zabbix_agent2
    if zabbix is not None and not os.access(zabbix, os.X_OK):
        print(f"zabbix_agent2 not found at {zabbix} (--zabbix-agent2; apt-get install "
              "zabbix-agent2): measured without it", file=sys.stderr)
        zabbix = None
    agent_env = (
        {"MALLOC_ARENA_MAX": str(args.malloc_arena_max)} if args.malloc_arena_max > 0 else {}
    )
    started = datetime.now(UTC).isoformat()
    result: dict[str, Any] = {
        "benchmark": "agent_footprint",
        "started_at": started,
        "machine": machine(),
        "versions": {
            "agent": agent_version,
            "node_exporter": node_exporter_version(args.node_exporter),
            "zabbix_agent2": node_exporter_version(zabbix) if zabbix else None,
        },
        "options": {
            "cycles": args.cycles,
            "duration_seconds": args.duration,
            "interval_seconds": args.interval,
            "runs": args.runs,
            "node_exporter": str(args.node_exporter),
            "node_exporter_flags": node_exporter_flags(),
            "idle_duration_seconds": args.idle_duration,
            "agent_env": agent_env,
            "breakdown_duration_seconds": args.breakdown_duration,
            "zabbix_agent2": str(zabbix) if zabbix else None,
            "zabbix_items": list(ZABBIX_ITEMS),
        },
    }
    runs: list[dict[str, Any]] = []
    try:
        for index in range(1, args.runs + 1):
            runs.append(one_run(index, args.cycles, args.duration, args.interval,
                                args.node_exporter, args.idle_duration, zabbix, agent_env,
                                args.breakdown_duration))
    except BenchError as exc:
        print(f"agent_footprint: {exc}", file=sys.stderr)
        return 1
    summ = summary(runs)
    judged = verdicts(summ["figures"])
    result.update(
        finished_at=datetime.now(UTC).isoformat(), runs=runs, summary=summ, targets=judged
    )
    print_report(summ, judged, runs)
    print(f"\nagent environment: {agent_env or '(glibc defaults)'}")
    print(f"node_exporter flags: {' '.join(node_exporter_flags()) or '(none)'}; "
          f"nproc {result['machine']['nproc']}, load {os.getloadavg()[0]:.2f}")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
