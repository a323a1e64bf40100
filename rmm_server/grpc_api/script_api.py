"""ListScripts and GetScript: the script library as operators see it."""

from __future__ import annotations

import asyncio

import grpc.aio

from rmm_common.errors import InvalidArgument
from rmm_proto import operator_pb2
from rmm_server.scripts import Script, ScriptLibrary


def script_to_proto(script: Script, with_body: bool = False) -> operator_pb2.ScriptInfo:
    """Convert a library script to its message; the body only when asked for."""
    return operator_pb2.ScriptInfo(
        name=script.name,
        description=script.description,
        shells=script.shells,
        default_timeout_seconds=script.timeout_seconds,
        min_role=script.min_role.name.lower(),
        body=script.body if with_body else "",
        path=str(script.path),
        params=[
            operator_pb2.ScriptParam(
                name=param.name,
                type=param.type,
                description=param.description,
                required=param.required,
                default=param.default or "",
                has_default=param.default is not None,
                choices=param.choices,
                pattern=param.pattern,
                minimum="" if param.minimum is None else str(param.minimum),
                maximum="" if param.maximum is None else str(param.maximum),
                roots=param.roots,
            )
            for param in script.params
        ],
    )


class ScriptApi:
    """OperatorService mixin; the servicer sets `scripts` (shared with the server's reloads)."""

    scripts: ScriptLibrary

    async def ListScripts(
        self, request: operator_pb2.ListScriptsRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.ListScriptsResponse:
        return operator_pb2.ListScriptsResponse(
            scripts=[script_to_proto(script) for script in self.scripts]
        )

    async def GetScript(
        self, request: operator_pb2.GetScriptRequest, context: grpc.aio.ServicerContext
    ) -> operator_pb2.ScriptInfo:
        name = request.name.strip()
        if not name:
            raise InvalidArgument("name a script: see `rmm scripts list`")
        return script_to_proto(self.scripts.get(name), with_body=True)

    async def reload_scripts(self) -> list[str]:
        """Reload the library (ReloadPolicies); its problems, empty when the new one is in force."""
        return await asyncio.to_thread(self.scripts.reload)
