"""Logs are plain text by default and JSON lines on request, with structured fields kept."""

from __future__ import annotations

import json
import logging

import pytest

from rmm_common.logs import JsonFormatter, setup_logging


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
