"""Report validation and enrollment refuse agent text of rmm_common.text's class."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from rmm_common.errors import InvalidArgument
from rmm_common.text import INVISIBLE_RE
from rmm_proto import agent_pb2
from rmm_server.enrollment import Enrollment
from rmm_server.fleet import Fleet
from rmm_server.reports import CONTROL_RE, validate_report
from rmm_server.storage import open_store
from rmm_server.storage.store import sqlite_url
from tests.rmm_common.test_text import HOSTILE


def _report(hostname: str, os_name: str = "Debian") -> agent_pb2.Report:
    return agent_pb2.Report(
        sequence=1,
        collected_at=time.time(),
        interval_seconds=30,
        agent_version="1.0",
        host=agent_pb2.HostFacts(hostname=hostname, os_name=os_name),
    )


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_report_validation_uses_the_class(kind: str) -> None:
    assert CONTROL_RE is INVISIBLE_RE
    with pytest.raises(InvalidArgument, match=r"host\.hostname"):
        validate_report(_report(f"web-01{HOSTILE[kind]}"))
    with pytest.raises(InvalidArgument, match=r"host\.os_name"):
        validate_report(_report("web-01", f"Debian{HOSTILE[kind]}"))
    validate_report(_report("wéb-01", "Debian\u00a012"))


def test_enrollment_refuses_the_class_in_every_host_fact_and_the_version(tmp_path: Path) -> None:
    store = open_store(sqlite_url(tmp_path))
    try:
        enrollment = Enrollment(store, Fleet())
        _, secret = enrollment.create_token("acme", "hq", "alice")
        for char in ("\u202e", "\u2028", "\u200b", "\ufeff", "\x1b"):
            for name in ("hostname", "os_name"):
                with pytest.raises(
                    InvalidArgument, match=rf"host\.{name} .* holds control characters \(U\+"
                ):
                    enrollment.enroll(secret, {name: f"web{char}01"}, [], "1.0")
            with pytest.raises(
                InvalidArgument, match=r"agent_version .* holds control characters \(U\+"
            ):
                enrollment.enroll(secret, {"hostname": "web-01"}, [], f"1.0{char}")
        enrolled = enrollment.enroll(secret, {"hostname": "wéb-01", "os_name": "Linux"}, [], "1.0")
        assert enrolled.record.hostname == "wéb-01"
    finally:
        store.close()
