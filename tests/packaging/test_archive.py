"""The single-file agent (shiv .pyz) runs on the host's own Python, outside any venv."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVER_ONLY = ("sqlalchemy", "prometheus_client", "apscheduler", "rich", "grpc_health", "celpy")
SERVER_CODE = ("rmm_server", "rmm_cli")


PROBE = "import sys; print(sys.prefix == sys.base_prefix, tuple(sys.version_info[:2]))"


def host_python() -> str:
    """Return a Python of the build's minor version (compiled wheels), not inside a venv."""
    for candidate in ("/usr/bin/python3", shutil.which("python3")):
        if candidate and Path(candidate).exists():
            probe = subprocess.run(
                [candidate, "-c", PROBE], capture_output=True, text=True, timeout=30
            )
            if probe.stdout.strip() == f"True {tuple(sys.version_info[:2])}":
                return candidate
    pytest.skip("no system python3 of the build's version outside a venv")


@pytest.mark.slow
def test_archive_runs_with_the_host_python(tmp_path: Path) -> None:
    archive = tmp_path / "rmm-agent.pyz"
    build = subprocess.run(
        [str(ROOT / "scripts" / "build_agent_archive.sh"), str(archive)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout + build.stderr
    top_level = {
        name.split("/")[1]
        for name in zipfile.ZipFile(archive).namelist()
        if name.startswith("site-packages/")
    }
    assert {"rmm_agent", "rmm_common", "rmm_proto", "psutil", "grpc"} <= top_level
    assert not top_level & set(SERVER_ONLY + SERVER_CODE), top_level
    # A clean environment: no venv, no PYTHONPATH, shiv's cache in the test's directory.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SHIV_ROOT": str(tmp_path / "shiv")}
    collect = subprocess.run(
        [host_python(), str(archive), "collect", "--once", "--output", "json"],
        capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert collect.returncode == 0, collect.stderr
    report = json.loads(collect.stdout)
    assert report["host"]["hostname"] == os.uname().nodename
    by_name = {c["name"]: c for c in report["collectors"]}
    assert by_name["cpu"]["ok"] and by_name["memory"]["ok"]  # psutil's C extension loaded
    assert (tmp_path / "shiv").is_dir()  # unpacked where SHIV_ROOT said, as the units set it
