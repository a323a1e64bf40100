"""Policy-driven remediation: when a rule with `remediate:` fires, run its library script.

The script goes to the agent as a signed command from operator "policy:<policy>/<rule>", so it
is audited like any other. Each (rule, agent) runs at most once per the rule's interval; the
outcome is written into the alert's history, and after a success the agent is asked for a fresh
report so that a fix that worked resolves the alert at once instead of one interval later.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from rmm_common.errors import NotFound
from rmm_proto import commands_pb2
from rmm_server.alerts.service import AlertService
from rmm_server.background import BackgroundTasks
from rmm_server.commands import CommandService, decode_result, status_name
from rmm_server.policy.model import Remediate
from rmm_server.runs import summarize
from rmm_server.scripts import ScriptLibrary
from rmm_server.storage import AgentRecord
from rmm_server.storage.alerts import AlertRecord
from rmm_server.storage.commands import CommandRecord

log = logging.getLogger(__name__)
Status = commands_pb2.CommandStatus
OUTPUT_HEAD_CHARS = 300


def outcome_line(record: CommandRecord) -> str:
    """One line for the alert's history: status, exit code and the head of the output."""
    words = [status_name(record.status)]
    result = decode_result(record)
    if result is not None and result.HasField("script"):
        words.append(f"(exit {result.script.exit_code})")
        output = (result.script.stdout or result.script.stderr).strip()
        if output:
            words.append(output[:OUTPUT_HEAD_CHARS])
    if record.error:
        words.append(record.error)
    return " ".join(words)


class Remediator:
    """Run firing rules' remediation scripts, rate-limited per rule and agent."""

    def __init__(
        self,
        commands: CommandService,
        scripts: Callable[[], ScriptLibrary],
        alerts: AlertService,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.commands = commands
        self.scripts = scripts
        self.alerts = alerts
        self.clock = clock
        self._last_run: dict[tuple[str, str], float] = {}
        self._tasks = BackgroundTasks()

    async def on_firing(self, alert: AlertRecord, remedy: Remediate, agent: AgentRecord) -> None:
        """Send the rule's script to the agent unless it ran there within the interval."""
        now = self.clock()
        key = (alert.rule_key, agent.id)
        last = self._last_run.get(key)
        if last is not None and now - last < remedy.interval_seconds:
            await self.alerts.note(
                alert.id,
                "remediation skipped",
                f"{remedy.script} ran on this agent {now - last:.0f}s ago; at most once every "
                f"{remedy.interval_seconds:.0f}s",
                by="policy",
            )
            return
        try:
            script = self.scripts().get(remedy.script)
        except NotFound as exc:
            await self.alerts.note(alert.id, "remediation failed", str(exc), by="policy")
            return
        if not self.commands.is_connected(agent.id):
            await self.alerts.note(
                alert.id,
                "remediation not sent",
                f"{remedy.script}: the agent has no command stream open",
                by="policy",
            )
            return
        self._last_run[key] = now
        payload = commands_pb2.RunScript(
            shell=script.shells[0],
            body=script.body,
            args=list(remedy.args),
            library_name=script.name,
        )
        (record,) = await self.commands.issue(
            f"policy:{alert.rule_key}",
            [agent],
            "run_script",
            payload,
            script.timeout_seconds,
            script.timeout_seconds + 60.0,
            self.alerts.consent_for,
            summarize,
            watch=lambda done: self._tasks.spawn(self._settled(alert.id, done, agent)),
        )
        log.info(
            "alert %s fired: remediation %s sent as command %s", alert.id, script.name, record.id
        )
        await self.alerts.note(
            alert.id,
            "remediation",
            f"ran library script {script.name} as command {record.id}",
            by="policy",
        )

    async def _settled(self, alert_id: str, record: CommandRecord, agent: AgentRecord) -> None:
        await self.alerts.note(alert_id, "remediation result", outcome_line(record), by="policy")
        if record.status != Status.COMMAND_SUCCEEDED or not self.commands.is_connected(agent.id):
            return
        # A fresh report now lets a fix that worked resolve the alert without waiting.
        await self.commands.issue(
            record.operator,  # policy:<rule>, as the remediation was issued
            [agent],
            "collect_now",
            commands_pb2.CollectNow(),
            30.0,
            90.0,
            # Reading the agent's state is nothing to tell its users about.
            lambda _agent: commands_pb2.CONSENT_UNATTENDED,
            summarize,
        )
