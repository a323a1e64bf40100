"""Fuzz run_script's output: whatever bytes a script writes, the result is valid UTF-8 text that
fits the output limit, and so a gRPC message."""

from __future__ import annotations

import base64
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rmm_agent.actions import execute
from rmm_agent.actions.run_script import MAX_OUTPUT_LIMIT, output_text
from rmm_proto import commands_pb2
from tests.fuzz import FUZZ, examples
from tests.rmm_agent.actions.helpers import Agent

pytestmark = pytest.mark.skipif(sys.platform.startswith("win"), reason="POSIX shells")

# Output that is mostly valid text, with invalid and partial sequences mixed in.
outputs = st.one_of(
    st.binary(max_size=300),
    st.lists(
        st.one_of(
            st.text(max_size=20).map(lambda text: text.encode("utf-8")),
            st.sampled_from([b"\xff", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\x00", b"\x80"]),
        ),
        max_size=20,
    ).map(b"".join),
)


@settings(FUZZ, max_examples=examples(500))
@given(outputs, st.integers(0, 400))
def test_output_text_is_valid_utf8_within_the_limit(data: bytes, limit: int) -> None:
    text, cut = output_text(data, limit)
    encoded = text.encode("utf-8")  # raises on a lone surrogate
    assert len(encoded) <= limit
    whole = data.decode("utf-8", "replace")
    if cut:
        assert whole.encode("utf-8").startswith(encoded)
        assert len(encoded) > limit - 4  # only the last, partial character is dropped
    else:
        assert text == whole


def run(body: str, tmp_path: Path, limit: int) -> commands_pb2.CommandResult:
    command = commands_pb2.Command(
        id="fuzz-1",
        run_script=commands_pb2.RunScript(shell="python", body=body, output_limit_bytes=limit),
    )
    return execute(command, Agent().context(command, state_dir=tmp_path, timeout=60))


def writer(stdout: bytes, stderr: bytes) -> str:
    return (
        "import base64, sys\n"
        f"sys.stdout.buffer.write(base64.b64decode({base64.b64encode(stdout)!r}))\n"
        f"sys.stderr.buffer.write(base64.b64decode({base64.b64encode(stderr)!r}))\n"
    )


@settings(FUZZ, max_examples=examples(12))
@given(outputs, outputs, st.integers(1, 400))
def test_a_script_writing_any_bytes_returns_valid_utf8(
    tmp_path_factory: pytest.TempPathFactory, stdout: bytes, stderr: bytes, limit: int
) -> None:
    result = run(writer(stdout, stderr), tmp_path_factory.mktemp("script"), limit)
    assert result.status == commands_pb2.COMMAND_SUCCEEDED, result.error
    parsed = commands_pb2.CommandResult.FromString(result.SerializeToString())
    for sent, got, truncated in (
        (stdout, parsed.script.stdout, parsed.script.stdout_truncated),
        (stderr, parsed.script.stderr, parsed.script.stderr_truncated),
    ):
        expected, cut = output_text(sent[:limit], limit)
        assert got == expected
        assert truncated == (len(sent) > limit or cut)


def test_binary_output_at_the_cap_still_fits_a_grpc_message(tmp_path: Path) -> None:
    """Found by the fuzzing: invalid bytes became U+FFFD, three bytes each, so a script writing
    4 MiB of binary on both streams returned 24 MiB of text, past the 16 MiB gRPC message the
    agent may send: the result could never reach the server."""
    body = (
        "import sys\n"
        f"sys.stdout.buffer.write(b'\\xff' * {MAX_OUTPUT_LIMIT})\n"
        f"sys.stderr.buffer.write(b'\\xfe' * {MAX_OUTPUT_LIMIT})\n"
    )
    result = run(body, tmp_path, MAX_OUTPUT_LIMIT)
    assert result.status == commands_pb2.COMMAND_SUCCEEDED, result.error
    assert len(result.script.stdout.encode()) <= MAX_OUTPUT_LIMIT
    assert len(result.script.stderr.encode()) <= MAX_OUTPUT_LIMIT
    assert result.script.stdout_truncated and result.script.stderr_truncated
    assert result.ByteSize() < 16 * 1024 * 1024
