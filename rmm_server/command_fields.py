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
        if _hashed(field, value):
            out[f"{name}_sha256"], out[f"{name}_bytes"] = _digest(value)
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


# One run sends the same body to every target: comparing with the last one hashed (memcmp) is
# several times cheaper than hashing a 1 MiB body again for each of thousands of agents.
_last_hashed: list[tuple[str | bytes, str, int]] = [("", hashlib.sha256(b"").hexdigest(), 0)]


def _hashed(field: FieldDescriptor, value: Any) -> bool:
    """Say whether a field is recorded as its hash: bytes, the body, long text."""
    if field.type == FieldDescriptor.TYPE_BYTES:
        return True
    return field.type == FieldDescriptor.TYPE_STRING and (
        field.name in HASHED or len(value) > MAX_INLINE_CHARS
    )


def _digest(value: str | bytes) -> tuple[str, int]:
    """Return the SHA-256 (hex) and size in bytes of `value` (text as UTF-8)."""
    last = _last_hashed[0]  # one read: another thread may replace it, never half of it
    if type(value) is type(last[0]) and value == last[0]:
        return last[1], last[2]
    data = value.encode("utf-8") if isinstance(value, str) else value
    digest = hashlib.sha256(data).hexdigest()
    _last_hashed[0] = (value, digest, len(data))
    return digest, len(data)


def _single(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return message_fields(value)
    if field.type == FieldDescriptor.TYPE_ENUM and field.enum_type is not None:
        enum_value = field.enum_type.values_by_number.get(value)
        return enum_value.name if enum_value is not None else value
    return value
