"""The wheel carries the dashboard's templates and front-end files, and a server installed from
it in a fresh virtual environment serves them (nothing read from this checkout)."""

from __future__ import annotations

import os
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.helpers import end_process, free_port, http_get, wait_for
from tests.packaging.test_shipped_data import installed, wheel
from tests.web.client import Browser

__all__ = ["installed", "wheel"]  # fixtures, used by name
WEB = Path(__file__).resolve().parents[2] / "rmm_server" / "web"


@pytest.mark.slow
def test_the_wheel_ships_the_dashboard_and_its_server_serves_it(
    tmp_path: Path, wheel: Path, installed: Path
) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = [
        path.relative_to(WEB.parents[1]).as_posix()
        for folder in ("templates", "static")
        for path in sorted((WEB / folder).iterdir())
    ]
    assert shipped and not [name for name in shipped if name not in names], sorted(names)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    http_port = free_port()
    with (tmp_path / "server.log").open("wb") as log:
        process = subprocess.Popen(
            [str(installed / "rmm-server"), "serve", "--data-dir", str(tmp_path / "data"),
             "--insecure", "--no-policies", "--grpc-listen", f"127.0.0.1:{free_port()}",
             "--http-listen", f"127.0.0.1:{http_port}"],
            stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, env=env,
        )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{http_port}"
        wait_for(
            lambda: process.poll() is None and http_get(base + "/healthz", 1)[0] == 200,
            90,
            "the wheel's server to answer /healthz",
        )
        browser = Browser(base)
        token = (tmp_path / "data" / "admin.token").read_text().strip()
        assert browser.login(token).status == 303
        assert "0 agents" in browser.get("/fleet").body
        script = browser.get("/static/uplot-1.6.32.min.js")
        assert script.status == 200 and script.body.startswith("/*! https://github.com/leeoniya")
    finally:
        end_process(process)
