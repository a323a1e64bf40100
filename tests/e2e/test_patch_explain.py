"""`rmm policy explain` shows an agent's patch settings and which file set each, on a real
server; a broken PatchPolicy is refused at reload with its place and the old settings stay."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.helpers import ServerProcess, enroll_agent, free_port, rmm, rmm_json

ROOT = Path(__file__).resolve().parents[2]

CLIENT_LAYER = """\
apiVersion: rmm/v1
kind: PatchPolicy
metadata: {name: acme-patching}
layer: client
scope: {clients: [acme]}
approval:
  - name: bugfix
    min_age_days: 14
reboot: {mode: never}
"""


def test_explain_shows_patch_settings_and_a_bad_reload_keeps_them(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    shutil.copy(ROOT / "policies" / "common.yaml", policies / "common.yaml")
    shutil.copy(ROOT / "policies" / "patching.yaml", policies / "patching.yaml")
    (policies / "zz-acme.yaml").write_text(CLIENT_LAYER)
    server = ServerProcess(
        data_dir=tmp_path / "server",
        grpc_port=free_port(),
        http_port=free_port(),
        log_path=tmp_path / "server.log",
        extra_args=["--policies", str(policies)],
    ).start()
    try:
        agent_id = enroll_agent(server, tmp_path / "agent", "pilot")
        explained = rmm_json(server, "policy", "explain", agent_id)
        settings = {s["name"]: s for s in explained["patch_settings"]}
        assert settings["reboot.mode"]["value"] == "never"
        assert settings["reboot.mode"]["set_by"] == [
            f"{policies / 'zz-acme.yaml'}:9 (client, acme-patching) reboot.mode"
        ]
        assert settings["reboot.consent"]["value"] == "ask"
        assert settings["reboot.consent"]["set_by"][0].startswith(
            f"{policies / 'patching.yaml'}:"
        )
        assert settings["ring"]["value"] == "pilot"
        assert settings["approval.patching/bugfix"]["value"] == "approve bugfix after 14 days"
        assert any("acme-patching" in by for by in settings["approval.patching/bugfix"]["set_by"])
        assert settings["pre_install"]["set_by"] == []
        table = rmm(server, "policy", "explain", agent_id).stdout
        assert "PATCH SETTING" in table and "2nd tuesday + 3 days at 22:00" in table

        # A broken patch policy is refused with its place; the settings in force stay.
        (policies / "zz-acme.yaml").write_text(CLIENT_LAYER.replace("never", "sometimes"))
        refused = rmm(server, "policy", "reload", check=False)
        assert refused.returncode == 1
        assert f"{policies / 'zz-acme.yaml'}:9:16" in refused.stderr, refused.stderr
        again = rmm_json(server, "policy", "explain", agent_id)
        assert {s["name"]: s["value"] for s in again["patch_settings"]}["reboot.mode"] == "never"
    finally:
        server.stop()
