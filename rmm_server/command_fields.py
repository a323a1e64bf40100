"""Every field of a command that can change what runs, as JSON-ready data.

The audit entry of each command and `rmm commands show` carry these, so that nothing an operator
set (args, env, parameters, working directory, timeout, shell, which script and which version of
it) runs unrecorded. The action's message is walked field by field rather than listed by hand:
a field added to an action later is recorded without anyone remembering to.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from rmm_proto import commands_pb2

# Text longer than this (a script body) and every bytes field (a file's content) are recorded as
# their SHA-256 and size: what ran is identified without copying it into every audit row.
MAX_INLINE_CHARS = 1024
# Always hashed, whatever their size: the body is the script, its hash names its version.
HASHED = frozenset({"body"})


def command_fields(command: commands_pb2.Command) -> dict[str, Any]:
    """Return the action, its timeout and consent mode, and every field of its request."""
    action = command.WhichOneof("action") or ""
    fields: dict[str, Any] = {
        "action": action,
        "timeout_seconds": command.timeout_seconds,
        "consent": commands_pb2.ConsentMode.Name(command.consent),
    }
    if action:
        fields.update(message_fields(getattr(command, action)))
    return fields


def signed_command_fields(signed: bytes) -> dict[str, Any]:
    """command_fields() of a stored SignedCommand; {} when it cannot be read."""
    try:
        envelope = commands_pb2.SignedCommand.FromString(signed)
        return command_fields(commands_pb2.Command.FromString(envelope.command))
    except Exception:  # a damaged row must not break listing the others
        return {}


def fields_json(fields: dict[str, Any]) -> str:
    """The fields as one compact JSON object (keys sorted, so equal commands compare equal)."""
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def message_fields(message: Message) -> dict[str, Any]:
    """Return the fields `message` has set, by name: maps as objects, big text as hashes."""
    out: dict[str, Any] = {}
    for field, value in message.ListFields():
        name = field.name
        if field.type == FieldDescriptor.TYPE_BYTES:
            out[f"{name}_sha256"] = hashlib.sha256(value).hexdigest()
            out[f"{name}_bytes"] = len(value)
        elif field.type == FieldDescriptor.TYPE_STRING and (
            name in HASHED or len(value) > MAX_INLINE_CHARS
        ):
            data = value.encode("utf-8")
            out[f"{name}_sha256"] = hashlib.sha256(data).hexdigest()
            out[f"{name}_bytes"] = len(data)
        elif field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            out[name] = {
                key: message_fields(item) if value_field.message_type is not None else item
                for key, item in sorted(value.items())
            }
        elif field.is_repeated:
            out[name] = [_single(field, item) for item in value]
        else:
            out[name] = _single(field, value)
    return out


def _single(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return message_fields(value)
    if field.type == FieldDescriptor.TYPE_ENUM and field.enum_type is not None:
        enum_value = field.enum_type.values_by_number.get(value)
        return enum_value.name if enum_value is not None else value
    return value
