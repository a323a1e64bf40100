"""scripts/demo.sh as a newcomer runs it: its own policies and notification config, Ctrl-C."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.helpers import BIN, free_port, http_get, wait_for

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
NOTIFY_CONFIG = """\
receivers:
  - name: desk
    webhook:
      url: http://127.0.0.1:9/hook
route:
  receiver: desk
"""


def _end_group(demo: subprocess.Popen[bytes]) -> int | None:
    """Ctrl-C the demo's process group as a terminal would; kill what is left after 60 s."""
    try:
        os.killpg(demo.pid, signal.SIGINT)
        return demo.wait(60)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        return None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(demo.pid, signal.SIGKILL)  # the server and agent, if the demo left them
        demo.wait()


# Up to 180 s for the demo to come up on a loaded machine, then a reload and a Ctrl-C: more
# than the default 180 s in all.
@pytest.mark.timeout(480)
def test_demo_runs_with_my_policies_and_notification_config(tmp_path: Path) -> None:
    # Relative paths, from where the user stands: the demo moves to the checkout itself.
    (tmp_path / "my-policies").mkdir()
    shutil.copy(ROOT / "policies" / "common.yaml", tmp_path / "my-policies" / "mine.yaml")
    (tmp_path / "notify.yaml").write_text(NOTIFY_CONFIG)
    http_port = free_port()
    env = {
        **os.environ,
        "RMM_DEMO_DIR": "demo",
        "RMM_GRPC_PORT": str(free_port()),
        "RMM_HTTP_PORT": str(http_port),
        "RMM_INTERVAL": "1",
        "RMM_POLICIES": "my-policies",
        "RMM_NOTIFY_CONFIG": "notify.yaml",
    }
    for name in ("RMM_SERVER", "RMM_TOKEN", "RMM_CA_FINGERPRINT", "RMM_INSECURE", "RMM_CA_CERT"):
        env.pop(name, None)
    output = tmp_path / "demo.out"
    with output.open("wb") as sink:
        demo = subprocess.Popen(
            [str(ROOT / "scripts" / "demo.sh")],
            cwd=tmp_path, env=env, stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a terminal's job
        )  # fmt: skip
    try:
        wait_for(
            lambda: demo.poll() is None and "The RMM is running" in output.read_text(),
            180,
            f"the demo to say it is running ({output})",
        )
        text = output.read_text()
        assert f"policies: {tmp_path / 'my-policies'}" in text, text
        assert f"notifications: {tmp_path / 'notify.yaml'}" in text, text
        exported = re.search(r"export RMM_SERVER=(\S+) RMM_CA_FINGERPRINT=(\S+)", text)
        assert exported is not None, text
        cli_env = {
            **env,
            "RMM_SERVER": exported.group(1),
            "RMM_CA_FINGERPRINT": exported.group(2),
            "RMM_TOKEN": (tmp_path / "demo" / "server" / "admin.token").read_text().strip(),
        }
        reload = subprocess.run(
            [str(BIN / "rmm"), "policy", "reload", "--output", "json"],
            capture_output=True, text=True, env=cli_env, timeout=120,
        )  # fmt: skip
        assert reload.returncode == 0, reload.stdout + reload.stderr
        reloaded = json.loads(reload.stdout)
        assert (reloaded["ok"], reloaded["policies"]) == (True, 1), reloaded
        status, metrics = http_get(f"http://127.0.0.1:{http_port}/metrics")
        assert status == 200
        assert "rmm_notify_config_last_reload_successful 1" in metrics.decode()
    finally:
        code = _end_group(demo)
    assert code == 0, output.read_text()[-3000:]
    assert "stopped; state kept in" in output.read_text()


def test_demo_refuses_a_missing_policy_directory(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(ROOT / "scripts" / "demo.sh")],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={**os.environ, "RMM_POLICIES": "nowhere", "RMM_DEMO_DIR": "demo"},
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "RMM_POLICIES=nowhere: no such directory" in done.stderr
    assert not (tmp_path / "demo").exists()
