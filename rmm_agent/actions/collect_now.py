"""collect_now: build a report at once instead of at the next interval."""

from __future__ import annotations

from rmm_agent.actions.base import ActionContext, action, succeeded
from rmm_proto import commands_pb2


@action
def run(request: commands_pb2.CollectNow, context: ActionContext) -> commands_pb2.CommandResult:
    """Queue a report now and return its sequence number."""
    return succeeded(collect=commands_pb2.CollectResult(sequence=context.collect_now()))
