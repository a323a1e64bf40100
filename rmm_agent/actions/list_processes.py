"""list_processes: every process (or those whose name matches) with its CPU and memory use."""

from __future__ import annotations

import time

import psutil

from rmm_agent.actions.base import ActionContext, action, succeeded
from rmm_proto import commands_pb2

# CPU use is the difference of two readings: one sample for all processes together.
SAMPLE_SECONDS = 0.2
# A result holds every process: bound each command line so that a host with long ones (Java
# class paths) still fits a gRPC message.
MAX_CMDLINE_CHARS = 2000
_ATTRS = ["name", "username", "memory_info", "cmdline", "create_time", "status"]


def matches(name: str | None, wanted: str) -> bool:
    """Say whether a process name contains `wanted`, ignoring case ("" matches all)."""
    return not wanted or (name is not None and wanted.casefold() in name.casefold())


def process_info(proc: psutil.Process, cpu_percent: float) -> commands_pb2.ProcessInfo:
    """Describe one process with what can be read of it (denied fields stay empty)."""
    with proc.oneshot():
        info = proc.as_dict(_ATTRS, ad_value=None)
    memory = info.get("memory_info")
    cmdline = " ".join(info.get("cmdline") or [])
    if len(cmdline) > MAX_CMDLINE_CHARS:
        cmdline = cmdline[: MAX_CMDLINE_CHARS - 1] + "…"
    return commands_pb2.ProcessInfo(
        pid=proc.pid,
        name=info.get("name") or "",
        user=info.get("username") or "",
        cpu_ratio=cpu_percent / 100.0,
        memory_rss_bytes=memory.rss if memory is not None else 0,
        cmdline=cmdline,
        started_at=info.get("create_time") or 0.0,
        status=info.get("status") or "",
    )


def list_processes(
    name: str = "", limit: int = 0, sample_seconds: float = SAMPLE_SECONDS
) -> list[commands_pb2.ProcessInfo]:
    """Return the matching processes, busiest first, the top `limit` of them (0: all)."""
    sampled: list[psutil.Process] = []
    for proc in psutil.process_iter(["name"]):
        if not matches(proc.info.get("name"), name):
            continue
        try:
            proc.cpu_percent(None)  # the first reading: the sample starts here
        except psutil.NoSuchProcess:
            continue
        except psutil.AccessDenied:
            pass  # listed with a CPU ratio of 0
        sampled.append(proc)
    time.sleep(sample_seconds)
    found = []
    for proc in sampled:
        try:
            cpu = proc.cpu_percent(None)
        except psutil.AccessDenied:
            cpu = 0.0
        except psutil.NoSuchProcess:
            continue  # ended during the sample
        try:
            found.append(process_info(proc, cpu))
        except psutil.NoSuchProcess:
            continue
    found.sort(key=lambda p: (-p.cpu_ratio, -p.memory_rss_bytes, p.pid))
    return found[:limit] if limit else found


@action
def run(request: commands_pb2.ListProcesses, context: ActionContext) -> commands_pb2.CommandResult:
    """List the processes the request asks for."""
    processes = list_processes(request.name, request.limit)
    return succeeded(processes=commands_pb2.ProcessList(processes=processes))
