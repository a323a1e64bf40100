"""A server installed from a wheel (built from the sdist) runs the shipped policies and scripts.

The wheel is built the way an operator's `pip install .` would build it, but from the sdist, so
both carry the shipped folders. It is installed with pip into a fresh virtual environment; the
dependencies come from this environment's site-packages through a .pth line (no download, no
install: about 5 s instead of a minute), never the project itself, whose only copy there is the
wheel's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from rmm_server.policy.loader import policy_files
from rmm_server.scripts import ScriptLibrary
from rmm_server.shipped import SHIPPED_POLICIES, SHIPPED_SCRIPT_LIBRARY
from tests.helpers import free_port, http_get, wait_for

ROOT = Path(__file__).resolve().parents[2]
# What a fresh clone would not have: build output, caches, the demo's state, the dev venv.
IGNORED = shutil.ignore_patterns(
    ".git", ".venv", "dist", "build", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis",
    "run", "bench",
)  # fmt: skip
BUILD = "from setuptools import build_meta; import sys; print(getattr(build_meta, sys.argv[1])(sys.argv[2]))"  # noqa: E501


def test_a_checkout_and_an_editable_install_use_the_top_level_folders() -> None:
    assert SHIPPED_POLICIES == ROOT / "policies"
    assert SHIPPED_SCRIPT_LIBRARY == ROOT / "script-library"


def _build(kind: str, source: Path, out: Path) -> Path:
    """Build an sdist or a wheel of `source` into `out` with this environment's setuptools."""
    out.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-c", BUILD, f"build_{kind}", str(out)],
        cwd=source, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out / done.stdout.strip().splitlines()[-1]


@pytest.fixture
def wheel(tmp_path: Path) -> Path:
    source = tmp_path / "checkout"
    shutil.copytree(ROOT, source, ignore=IGNORED)
    sdist = _build("sdist", source, tmp_path / "sdist")
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp_path / "unpacked", filter="data")
    (unpacked,) = (tmp_path / "unpacked").iterdir()
    return _build("wheel", unpacked, tmp_path / "wheel")


@pytest.fixture
def installed(tmp_path: Path, wheel: Path) -> Path:
    """A fresh venv with the wheel installed by pip; return its bin directory."""
    env_dir = tmp_path / "server-venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
         "--no-deps", "--no-compile", "--disable-pip-version-check", str(wheel)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout + install.stderr
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True, text=True, check=True, timeout=60,
        ).stdout.strip()
    )  # fmt: skip
    # The dependencies, appended after the venv's own site-packages: a plain path entry, whose
    # .pth files (this checkout's editable install among them) are not run.
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return env_dir / "bin"


@pytest.fixture
def server(tmp_path: Path, installed: Path) -> Iterator[tuple[dict[str, str], Path]]:
    """The wheel's `rmm-server` on loopback, with nothing but its defaults for policies."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    grpc_port, http_port = free_port(), free_port()
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(installed / "rmm-server"), "serve", "--data-dir", str(tmp_path / "data"),
             "--insecure", "--grpc-listen", f"127.0.0.1:{grpc_port}",
             "--http-listen", f"127.0.0.1:{http_port}"],
            stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, env=env,
        )  # fmt: skip
    try:
        wait_for(
            lambda: process.poll() is None
            and http_get(f"http://127.0.0.1:{http_port}/healthz", 1)[0] == 200,
            90,
            f"the wheel's server to answer /healthz (log: {log_path})",
        )
        token = (tmp_path / "data" / "admin.token").read_text().strip()
        yield (
            {**env, "RMM_SERVER": f"127.0.0.1:{grpc_port}", "RMM_TOKEN": token,
             "RMM_INSECURE": "1"},
            log_path,
        )  # fmt: skip
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.slow
def test_the_wheel_ships_policies_and_scripts_and_its_server_loads_them(
    tmp_path: Path, wheel: Path, installed: Path, server: tuple[dict[str, str], Path]
) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "rmm_server/_shipped/policies/common.yaml" in names, names
    assert "rmm_server/_shipped/policies/patching.yaml" in names, names
    assert "rmm_server/_shipped/policies/tests/common_test.yaml" in names
    assert "rmm_server/_shipped/script-library/disk-usage.sh" in names
    env, log_path = server

    def rmm(*args: str) -> object:
        done = subprocess.run(
            [str(installed / "rmm"), *args, "--output", "json"],
            capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(done.stdout)

    reloaded = rmm("policy", "reload")
    assert isinstance(reloaded, dict)
    assert reloaded["ok"], reloaded["errors"]
    assert reloaded["policies"] == len(policy_files(ROOT / "policies")) > 0
    assert reloaded["rules"] > 0
    scripts = rmm("scripts", "list")
    assert isinstance(scripts, list)
    expected = sorted(ScriptLibrary.load(ROOT / "script-library").names())
    assert sorted(row["name"] for row in scripts) == expected
    # Loaded from the installed package, not from this checkout.
    packaged = installed.parent / "lib"
    assert all(Path(row["path"]).is_relative_to(packaged) for row in scripts), scripts
    log = log_path.read_text(errors="replace")
    assert "running without alert policies" not in log and "is empty" not in log, log
    # Where an operator finds them to copy: inside the installed package too.
    shown = subprocess.run(
        [str(installed / "rmm-server"), "shipped"],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stdout + shown.stderr
    where = dict(line.split("\t") for line in shown.stdout.splitlines())
    assert Path(where["policies"]) == Path(scripts[0]["path"]).parent.parent / "policies"
    assert Path(where["script-library"]) == Path(scripts[0]["path"]).parent
