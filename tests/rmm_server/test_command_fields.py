"""command_fields: every field of a command that can change what runs, for audit and display."""

from __future__ import annotations

import hashlib
import json

from rmm_proto import commands_pb2
from rmm_server.command_fields import command_fields, fields_json, signed_command_fields

BODY = "#!/bin/sh\necho hi\n"


def test_a_script_command_records_everything_that_changes_what_runs() -> None:
    command = commands_pb2.Command(
        timeout_seconds=90,
        consent=commands_pb2.CONSENT_ASK,
        run_script=commands_pb2.RunScript(
            shell="bash",
            body=BODY,
            args=["--all", "x y"],
            env={"B": "2", "A": "1"},
            working_directory="/srv",
            library_name="greet",
            params={"who": "alice"},
        ),
    )
    fields = command_fields(command)
    assert fields == {
        "action": "run_script",
        "timeout_seconds": 90.0,
        "consent": "CONSENT_ASK",
        "shell": "bash",
        "body_sha256": hashlib.sha256(BODY.encode()).hexdigest(),
        "body_bytes": len(BODY),
        "args": ["--all", "x y"],
        "env": {"A": "1", "B": "2"},
        "working_directory": "/srv",
        "library_name": "greet",
        "params": {"who": "alice"},
    }
    assert json.loads(fields_json(fields)) == fields
    signed = commands_pb2.SignedCommand(command=command.SerializeToString()).SerializeToString()
    assert signed_command_fields(signed) == fields
    assert signed_command_fields(b"\xff not a command") == {}


def test_every_action_is_recorded_with_file_contents_as_hashes() -> None:
    data = b"\x00" * 5000
    push = commands_pb2.Command(
        push_file=commands_pb2.PushFile(path="/etc/app.conf", data=data, overwrite=True)
    )
    fields = command_fields(push)
    assert fields["path"] == "/etc/app.conf" and fields["overwrite"] is True
    assert fields["data_sha256"] == hashlib.sha256(data).hexdigest()
    assert fields["data_bytes"] == 5000 and "data" not in fields
    # A field added to an action later is recorded without a change here.
    for action in commands_pb2.Command.DESCRIPTOR.oneofs_by_name["action"].fields:
        command = commands_pb2.Command()
        getattr(command, action.name).SetInParent()
        assert command_fields(command)["action"] == action.name
