"""End to end: real agent archives under the real launcher update themselves from a real server.

Three archives are built from temporary copies of this repository with
scripts/build_agent_archive.sh: A (this version), B (A with the version bumped) and C (B bumped
again, with one line changed so that it never reaches the server). The launcher runs them with
the host's /usr/bin/python3, not this virtual environment.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from rmm_agent import __version__
from tests.helpers import ServerProcess, enroll_agent, free_port, rmm_json, wait_for

# The session's first test also builds the three archives (BUILD_SECONDS at most).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
HOST_PYTHON = Path("/usr/bin/python3")
IGNORED = shutil.ignore_patterns(
    ".git", ".venv", "dist", "build", "*.egg-info", "__pycache__", ".*_cache", "bench"
)
# Three pip installs and shivs side by side: about 30 s on an idle machine, several minutes
# while the other test worker saturates both cores.
BUILD_SECONDS = 540
# C's one-line change: it dials a port where no server listens, so it never reports.
NEVER_REPORTS = (
    "channel = agent_channel(identity, state_dir)",
    'channel = open_channel("127.0.0.1:9", identity.insecure, identity.ca_cert_pem)',
)


def _end_group(process: subprocess.Popen[bytes]) -> None:
    """Kill `process` and all it started: its process group (it runs with start_new_session).

    Killing the launcher alone orphans the agent it runs to init, where it goes on reporting
    long after the test, its server and the whole suite have ended; a build killed alone leaves
    its pip running.
    """
    descendants: list[psutil.Process] = []
    if process.poll() is None:  # not yet reaped, so its pid is still its own
        with contextlib.suppress(psutil.NoSuchProcess):
            descendants = psutil.Process(process.pid).children(recursive=True)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(30)
    _gone, alive = psutil.wait_procs(descendants, timeout=10)
    assert not alive, f"still running after SIGKILL to their process group: {alive}"


def _bump(version: str, by: int) -> str:
    match = re.match(r"^(\d+)\.(\d+)\.(\d+)", version)
    assert match, f"cannot bump {version!r}"
    major, minor, patch = (int(part) for part in match.groups())
    return f"{major}.{minor}.{patch + by}"


def _host_python_fits() -> bool:
    if not HOST_PYTHON.exists():
        return False
    out = subprocess.run(
        [str(HOST_PYTHON), "-c", "import sys; print(sys.version_info[:2])"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return out == str(sys.version_info[:2])


@dataclass(frozen=True)
class Archive:
    version: str
    path: Path

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class Archives:
    a: Archive
    b: Archive
    c: Archive
    shiv_root: Path  # shared, so each archive's libraries are unpacked once per session


def _copy_with(source: Path, dest: Path, version: str, *edits: tuple[str, str, str]) -> None:
    shutil.copytree(source, dest, ignore=IGNORED)
    replacements = [
        ("rmm_common/__init__.py", f'__version__ = "{__version__}"', f'__version__ = "{version}"'),
        ("pyproject.toml", f'version = "{__version__}"', f'version = "{version}"'),
        *edits,
    ]
    for relative, old, new in replacements:
        path = dest / relative
        text = path.read_text()
        assert text.count(old) == 1, f"{relative} no longer contains {old!r} exactly once"
        path.write_text(text.replace(old, new))


@pytest.fixture(scope="session")
def archives(tmp_path_factory: pytest.TempPathFactory) -> Archives:
    """Build A, B and C in parallel, once per session (only this module uses them)."""
    if not _host_python_fits():
        pytest.skip(f"{HOST_PYTHON} is missing or not Python {sys.version_info[:2]}")
    work = tmp_path_factory.mktemp("archives")
    b_version, c_version = _bump(__version__, 1), _bump(__version__, 2)
    sources = {__version__: ROOT}
    _copy_with(ROOT, work / "src-b", b_version)
    _copy_with(ROOT, work / "src-c", c_version, ("rmm_agent/cli.py", *NEVER_REPORTS))
    sources[b_version] = work / "src-b"
    sources[c_version] = work / "src-c"
    env = {
        **os.environ,
        "PYTHON": str(Path(sys.executable)),
        "SHIV": str(Path(sys.executable).parent / "shiv"),
    }
    builds = {}
    for version, source in sources.items():
        out = work / f"rmm-agent-{version}.pyz"
        log = (work / f"build-{version}.log").open("wb")
        builds[version] = (
            out,
            log,
            subprocess.Popen(
                ["bash", str(source / "scripts/build_agent_archive.sh"), str(out)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a group of its own: _end_group() ends its pip too
            ),
        )
    deadline = time.monotonic() + BUILD_SECONDS
    try:
        for version, (out, log, process) in builds.items():
            code = process.wait(timeout=max(deadline - time.monotonic(), 1))
            log.close()
            assert code == 0, f"building {version} failed: {Path(log.name).read_text()[-3000:]}"
            assert out.is_file()
    finally:  # a failed or timed-out build must not leave the others running
        for _out, log, process in builds.values():
            log.close()
            _end_group(process)
    a, b, c = (Archive(v, builds[v][0]) for v in (__version__, b_version, c_version))
    return Archives(a, b, c, work / "shiv")


@dataclass
class Fleet:
    server: ServerProcess
    state_dir: Path
    agent_id: str
    launcher: subprocess.Popen[bytes]
    log_path: Path

    def show(self) -> dict[str, Any]:
        return dict(rmm_json(self.server, "agents", "show", self.agent_id))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        """Wait as wait_for does; on failure show the launcher's log as it is then."""
        try:
            return wait_for(predicate, timeout, what, every=0.5)
        except AssertionError as error:
            raise AssertionError(f"{error}\nlauncher log:\n{self.log()[-4000:]}") from None

    @property
    def layout(self) -> Path:
        return self.state_dir / "agent"


@contextmanager
def _start(
    tmp_path: Path, archives: Archives, offered: Archive, current: Archive, confirm_timeout: float
) -> Iterator[Fleet]:
    updates = tmp_path / "updates"
    updates.mkdir()
    shutil.copy(offered.path, updates / offered.path.name)
    server = ServerProcess(
        data_dir=tmp_path / "server",
        grpc_port=free_port(),
        http_port=free_port(),
        log_path=tmp_path / "server.log",
        extra_args=["--agent-updates", str(updates), "--no-policies"],
    ).start()
    state_dir = tmp_path / "agent"
    agent_id = enroll_agent(server, state_dir)
    log_path = tmp_path / "launcher.log"
    # A slow inventory collector (a package manager's dry run) must not delay the first report.
    config = tmp_path / "agent.yaml"
    config.write_text("collector_timeout: 3s\n")
    launcher = subprocess.Popen(
        [
            str(HOST_PYTHON),
            str(current.path),
            "launch",
            "--state-dir",
            str(state_dir),
            "--update-confirm-timeout",
            str(confirm_timeout),
            "--",
            "--interval",
            "1",
            "--config",
            str(config),
        ],
        env={**os.environ, "SHIV_ROOT": str(archives.shiv_root)},
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # the launcher, the agent it runs and theirs: one group to end
    )
    fleet = Fleet(server, state_dir, agent_id, launcher, log_path)
    try:
        yield fleet
    finally:
        try:
            _end_group(launcher)
        finally:
            server.stop()


def _reports(fleet: Fleet, version: str, state: str | None = None) -> dict[str, Any] | None:
    shown = fleet.show()
    if shown["agent_version"] != version or shown["last_seen_seconds_ago"] > 3:
        return None
    update = shown["info"].get("update") or {}
    if state is not None and (update.get("last") or {}).get("state") != state:
        return None
    return shown


def test_agent_updates_itself_and_the_launcher_stops_cleanly(
    archives: Archives, tmp_path: Path
) -> None:
    a, b = archives.a, archives.b
    # B's first start unpacks its libraries: give it long enough on a loaded machine, since
    # a confirmation timeout here would roll back an update that works.
    with _start(tmp_path, archives, offered=b, current=a, confirm_timeout=180) as fleet:
        shown = fleet.wait(
            lambda: _reports(fleet, b.version, "updated"),
            240,
            f"the agent to report version {b.version} after updating",
        )
        update = shown["info"]["update"]
        assert update["self_updatable"] is True
        assert update["last"]["from"] == a.version and update["last"]["to"] == b.version
        assert (fleet.layout / f"confirmed-{b.version}").exists()
        assert hashlib.sha256((fleet.layout / "current.pyz").read_bytes()).hexdigest() == b.sha256
        assert (fleet.layout / "previous.pyz").read_bytes() == a.path.read_bytes()
        assert not (fleet.layout / "trial.json").exists()
        assert fleet.server.log().count(f"downloads agent {b.version}") == 1

        # SIGTERM to the launcher stops the agent it runs and exits 0.
        children = psutil.Process(fleet.launcher.pid).children(recursive=True)
        assert children, "the launcher runs no agent"
        fleet.launcher.send_signal(signal.SIGTERM)
        assert fleet.launcher.wait(60) == 0, fleet.log()[-3000:]
        _gone, alive = psutil.wait_procs(children, timeout=20)
        assert not alive, f"agent processes outlived the launcher: {alive}"


def test_update_that_never_reports_is_rolled_back_and_not_retried(
    archives: Archives, tmp_path: Path
) -> None:
    a, c = archives.a, archives.c
    with _start(tmp_path, archives, offered=c, current=a, confirm_timeout=8) as fleet:
        rejected = fleet.layout / "rejected.json"
        fleet.wait(rejected.exists, 240, f"the launcher to write {rejected}")
        assert c.version in json.loads(rejected.read_text())
        shown = fleet.wait(
            lambda: _reports(fleet, a.version, "rolled_back"),
            120,
            f"the agent to report {a.version} again, rolled back",
        )
        last = shown["info"]["update"]["last"]
        assert last["to"] == c.version and "did not report within 8s" in last["reason"]
        assert list(shown["info"]["update"]["rejected"]) == [c.version]
        assert hashlib.sha256((fleet.layout / "current.pyz").read_bytes()).hexdigest() == a.sha256
        # The server goes on offering C; the agent says no and does not download it again.
        fleet.wait(
            lambda: "it was rolled back on this host before" in fleet.log(),
            60,
            "the agent to refuse the rejected version",
        )
        sequence = fleet.show()["last_sequence"]
        fleet.wait(lambda: fleet.show()["last_sequence"] >= sequence + 3, 60, "three more reports")
        assert fleet.server.log().count(f"downloads agent {c.version}") == 1
        assert fleet.log().count(f"from {a.version} to {c.version}") == 1
        assert fleet.launcher.poll() is None
