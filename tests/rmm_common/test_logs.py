"""Logs are plain text by default and JSON lines on request, with structured fields kept."""

from __future__ import annotations

import json
import logging
import re
import sys

import pytest

from rmm_common.agent_words import agent_label
from rmm_common.logs import JsonFormatter, TextFormatter, agent_text, setup_logging


def test_json_lines_keep_extra_fields_and_exceptions() -> None:
    record = logging.LogRecord(
        "rmm_agent.runner", logging.WARNING, __file__, 1, "lost the server: %s", ("refused",), None
    )
    record.agent = "a1"
    try:
        raise OSError("boom")
    except OSError:
        import sys  # noqa: PLC0415

        record.exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "warning" and entry["logger"] == "rmm_agent.runner"
    assert entry["msg"] == "lost the server: refused" and entry["agent"] == "a1"
    assert "OSError: boom" in entry["exc"] and entry["ts"].endswith("Z")


def test_setup_logging_switches_format(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("info", "json")
    logging.getLogger("rmm_server.app").info("serving")
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert json.loads(line)["msg"] == "serving"
    setup_logging("info", "text")
    logging.getLogger("rmm_server.app").info("serving")
    assert "INFO rmm_server.app: serving" in capsys.readouterr().err
    logging.getLogger().handlers.clear()


FORGED_HOST = "web-07\n2026-12-07 03:00:00,000 ERROR rmm_server.app: forged\x1b[2J\r\u2028"
PREFIX = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")


def text_record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("rmm_server.ingest", logging.WARNING, __file__, 1, msg, args, None)


def test_a_value_cannot_start_a_line_of_its_own_in_plain_text() -> None:
    record = text_record(
        "refusing the reports of %s: %s",
        agent_label(FORGED_HOST, "3f9c2a71d0e4" * 2),
        ValueError("bad\nerror"),
    )
    line = TextFormatter().format(record)
    assert "\n" not in line and "\r" not in line and "\x1b" not in line and "\u2028" not in line
    assert PREFIX.match(line)
    assert "web-07\\n2026-12-07 03:00:00,000 ERROR rmm_server.app: forged\\x1b[2J\\r\\u2028" in line
    assert line.endswith(" [3f9c2a71d0e4]: bad\\nerror")
    # The record itself is left as it was, for any other handler.
    assert record.getMessage().count("\n") == 1  # the error, escaped only when formatted


def test_plain_text_keeps_numbers_and_repr_and_marks_continuation_lines() -> None:
    formatter = TextFormatter()
    line = formatter.format(text_record("%d of %.1f s, command %r", 3, 2.5, "a\nb"))
    assert line.endswith(": 3 of 2.5 s, command 'a\\nb'")
    # A line break of the server's own template, or a traceback, continues the record.
    text = formatter.format(text_record("policies refused:\n%s", "one\ntwo"))
    assert text.splitlines()[1] == "  | one\\ntwo"
    try:
        raise OSError(FORGED_HOST)
    except OSError:
        record = text_record("failed")
        record.exc_info = sys.exc_info()
    lines = formatter.format(record).splitlines()
    assert PREFIX.match(lines[0]) and all(line.startswith("  | ") for line in lines[1:])


def test_a_forged_hostname_in_a_log_file_yields_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    setup_logging("info", "text")
    try:
        logging.getLogger("rmm_server.ingest").warning(
            "agent %s sent report %d", agent_label(FORGED_HOST, "ab" * 16), 7
        )
        (line,) = capsys.readouterr().err.splitlines()
        assert PREFIX.match(line) and line.endswith(" [abababababab] sent report 7")
        setup_logging("info", "json")
        logging.getLogger("rmm_server.ingest").warning("agent %s", FORGED_HOST)
        (line,) = capsys.readouterr().err.splitlines()
        assert json.loads(line)["msg"] == f"agent {FORGED_HOST}"  # JSON escapes it already
    finally:
        logging.getLogger().handlers.clear()


def test_agent_text_escapes_and_bounds() -> None:
    assert agent_text("Ubuntu 24.04\x1b]0;x\x07") == "Ubuntu 24.04\\x1b]0;x\\x07"
    assert agent_text("x" * 500, 10) == "x" * 9 + "…"
    assert agent_text(ValueError("a\nb")) == "a\\nb"
