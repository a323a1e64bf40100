"""What a running agent holds while idle: the streams on one asyncio loop over grpc.aio (no
polling thread of grpc's synchronous API), and no library loaded that only a command needs
(the crypto library, every action, the consent dialogs) until a command comes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from rmm_agent.actions import reboot
from rmm_agent.commands import channel as channel_module

# Run in a fresh interpreter: this test process has loaded everything already.
PROBE = textwrap.dedent(
    """
    import json, os, sys, threading
    from pathlib import Path
    from rmm_agent.cli import AssembledAgent, assemble_agent
    from rmm_agent.config import AgentConfig
    from rmm_agent.state import Identity, StateDir

    state = StateDir(Path(sys.argv[1]))
    state.ensure()
    identity = Identity(
        agent_id="agent1", credential="rmma_agent1_x", server=sys.argv[2], client="acme",
        site="hq", insecure=True, command_public_key=os.urandom(32).hex(),
    )
    state.save_identity(identity)
    config = AgentConfig()
    config.disabled_collectors = ["software", "hardware", "patches", "processes", "services"]
    agent = assemble_agent(identity, state.path, config)
    loaded = sorted(
        name for name in ("cryptography", "yaml", "rmm_agent.actions", "rmm_agent.consent")
        if name in sys.modules
    )
    threads = sorted(t.name for t in threading.enumerate())
    agent.runner.stop()
    agent.close()
    print(json.dumps({"loaded": loaded, "threads": threads, "modules": sorted(sys.modules)}))
    """
)


def test_an_idle_agent_loads_no_command_library_and_runs_its_streams_on_one_loop(
    tmp_path: Path,
) -> None:
    # No server: the streams retry in the background while the probe looks.
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path / "state"), "127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["loaded"] == [], "loaded at start, before any command came"
    # One loop thread for both streams, the collectors' workers, and the main thread: no
    # "sender" or "commands" thread blocked in grpc's synchronous (polling) calls.
    assert found["threads"].count("grpc-loop") == 1, found["threads"]
    assert not {"sender", "commands"} & set(found["threads"]), found["threads"]


# Loaded only by what needs them: the self-update launcher's argument parsing and its archive
# installer (argparse, zipfile), the updater (only under the launcher, RMM_AGENT_LAUNCHER=1),
# macOS's and SUSE's patch parsers (plistlib, ElementTree). Each module an agent imports stays
# in its memory for its whole life (about 1 MB for these, bench.agent_footprint).
NOT_AT_START = (
    "argparse",
    "plistlib",
    "rmm_agent.update.install",
    "rmm_agent.update.updater",
    "xml.etree.ElementTree",
    "zipfile",
)


def run_probe(tmp_path: Path) -> dict[str, list[str]]:
    """Assemble an agent in a fresh interpreter; return what it loaded and its threads."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path / "state"), "127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "RMM_AGENT_LAUNCHER"},
    )
    assert result.returncode == 0, result.stderr
    found: dict[str, list[str]] = json.loads(result.stdout.strip().splitlines()[-1])
    return found


def test_a_running_agent_holds_no_module_only_an_update_or_another_os_needs(
    tmp_path: Path,
) -> None:
    modules = set(run_probe(tmp_path)["modules"])
    assert "rmm_agent.update.command" in modules  # the probe went through the CLI's imports
    assert sorted(modules & set(NOT_AT_START)) == []


def test_the_reboot_record_is_looked_for_under_the_name_the_reboot_action_writes() -> None:
    assert channel_module.REBOOT_PENDING_FILE == reboot.PENDING_FILE
