"""The `rmm` tables show text as written: rich markup in an agent's labels or an operator's words
is never drawn as markup (a `[link=...]` would make a cell a hidden hyperlink, `[/]` would end
the table's own styles, and `[red]x[/red]` would drop its brackets).

A real server and the real `rmm` command line; stdout is not a terminal, so rich prints no
colour, and any markup it parsed would be missing from the output.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import BIN, ServerProcess, free_port, rmm

pytestmark = pytest.mark.timeout(180)

RED = "[red]x[/red]"
LINK = "[link=http://evil.example]y"
CLOSE = "z[/]"
POLICY = """apiVersion: rmm/v1
kind: AlertPolicy
metadata: {name: disks}
scope: {all: true}
rules:
  - name: DiskAlmostFull
    expr: disk_usage_ratio > 0.5
    severity: warning
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("cli-markup")
    running = ServerProcess(base / "data", free_port(), free_port(), base / "server.log").start()
    try:
        yield running
    finally:
        running.stop()


def test_policy_test_shows_an_agents_labels_as_written(tmp_path: Path) -> None:
    policy = tmp_path / "disks.yaml"
    policy.write_text(POLICY)
    samples = [
        {
            "name": "disk_usage_ratio",
            "labels": {"device": "sda", "fstype": "ext4", "mountpoint": text},
            "value": 0.9,
        }
        for text in (RED, LINK, CLOSE)
    ]
    report = {
        "host": {"hostname": "[bold]web-01[/bold]", "os": "linux"},
        "collectors": [{"name": "disk", "ok": True, "samples": samples}],
    }
    (tmp_path / "report.json").write_text(json.dumps(report))
    shown = subprocess.run(
        [
            str(BIN / "rmm"),
            "policy",
            "test",
            str(policy),
            "--report",
            str(tmp_path / "report.json"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    for text in (RED, LINK, CLOSE):
        assert f"mountpoint={text}" in shown.stdout, shown.stdout
    assert "3 checks, 3 would fire" in shown.stderr


def test_audit_silences_and_maintenance_tables_show_operator_text_as_written(
    server: ServerProcess,
) -> None:
    rmm(server, "alerts", "silence", "--match", f"mountpoint={RED}", "--for", "1h",
        "--comment", LINK)  # fmt: skip
    rmm(server, "maintenance", "add", "--name", CLOSE, "--duration", "1h", "--start", "now",
        "--tag", "web")  # fmt: skip
    silences = rmm(server, "silences", "list").stdout
    assert f"mountpoint={RED}" in silences and LINK in silences, silences
    windows = rmm(server, "maintenance", "list").stdout
    assert CLOSE in windows, windows
    audit = rmm(server, "audit", "list").stdout
    # The details column is cut at 80 characters; the silence's matcher comes first.
    assert RED in audit, audit
    assert CLOSE in audit, audit
