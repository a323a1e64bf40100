"""The dashboard's commands page: run a library script on a selection of agents (tier1 and up,
or the script's own min_role), then watch each agent's result arrive.

A run goes through the same RunService as `rmm run --script`: the same role checks, parameter
checks, signing and audit (one entry per command sent, written by the commands service). The
dashboard starts it detached and shows the stored commands of the run, polled every 2 s, so a
reload or another operator's browser sees the same results.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from rmm_common.errors import InvalidArgument
from rmm_proto import commands_pb2, operator_pb2
from rmm_server.desk.ticket_runs import ticket_number
from rmm_server.runs import Run, RunRequest
from rmm_server.storage import AgentRecord

# Runs whose unreached (offline) agents this process remembers, for their run pages.
MAX_REMEMBERED_RUNS = 1000


@dataclass(frozen=True, slots=True)
class RunForm:
    """A commands form as posted: the script, its parameters and the selection."""

    script: str
    params: dict[str, str]
    agents: list[str]
    client: str
    site: str
    tag: str
    os: str
    status: str
    everyone: bool
    queue_offline: bool
    ticket: int  # as rmm run --ticket N; 0: none

    @classmethod
    def parse(cls, form: Mapping[str, str]) -> RunForm:
        """Read the form; a parameter line that is not NAME=VALUE is refused naming it."""
        params: dict[str, str] = {}
        for number, line in enumerate(form.get("params", "").splitlines(), 1):
            if not line.strip():
                continue
            name, sep, value = line.partition("=")
            if not sep or not name.strip():
                raise InvalidArgument(
                    f"parameter line {number} ({line.strip()!r}) is not NAME=VALUE: write one "
                    "parameter a line, e.g. threshold=90"
                )
            params[name.strip()] = value.strip()
        words = form.get("agents", "").replace(",", " ").split()
        return cls(
            script=form.get("script", "").strip(),
            params=params,
            agents=words,
            client=form.get("client", "").strip(),
            site=form.get("site", "").strip(),
            tag=form.get("tag", "").strip(),
            os=form.get("os", "").strip(),
            status=form.get("status", "").strip(),
            everyone=form.get("all", "") == "1",
            queue_offline=form.get("queue_offline", "") == "1",
            ticket=ticket_number(form.get("ticket", "")),
        )

    def request(self, operator: str, role: str) -> RunRequest:
        """Return the run request this form asks for, as the CLI's would be."""
        if not self.script:
            raise InvalidArgument("choose a library script to run")
        selector = operator_pb2.TargetSelector(
            agents=self.agents,
            client=self.client,
            site=self.site,
            tag=self.tag,
            os=self.os,
            status=self.status,
            all=self.everyone,
        )
        script = commands_pb2.RunScript(library_name=self.script, params=self.params)
        return RunRequest(
            operator=operator,
            role=role,
            action="run_script",
            payload=script,
            target=selector,
            queue_offline=self.queue_offline,
            detach=True,
            ticket=self.ticket,
        )


class RememberedRuns:
    """Which agents each run started here could not reach (nothing was sent to them)."""

    def __init__(self) -> None:
        self._unreached: OrderedDict[str, list[AgentRecord]] = OrderedDict()

    def add(self, run: Run) -> None:
        """Remember a run just started."""
        self._unreached[run.id] = [] if run.queue_offline else list(run.offline)
        while len(self._unreached) > MAX_REMEMBERED_RUNS:
            self._unreached.popitem(last=False)

    def unreached(self, run_id: str) -> list[AgentRecord]:
        """Return the agents a run sent nothing to (offline, not queued)."""
        return self._unreached.get(run_id, [])
