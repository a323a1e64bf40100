"""`rmm` sets its objects aside from the collection Python makes while it exits (gc.freeze at
exit): ~30 ms of CPU of every command that calls the server, whose imports leave ~28,000
objects for that collection to walk (issue #16)."""

from __future__ import annotations

import subprocess
import sys

# An exit handler registered before rmm_cli.main is imported runs after rmm's own (last in,
# first out): it sees what rmm's left.
PROBE = (
    "import atexit, gc; atexit.register(lambda: print(gc.get_freeze_count())); import rmm_cli.main"
)


def test_objects_are_frozen_at_exit_only() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True
    )
    assert int(result.stdout) > 1000, result.stdout
    # Importing rmm_cli.main (as a test or a tool does) freezes nothing before exit.
    result = subprocess.run(
        [sys.executable, "-c", "import gc, rmm_cli.main; print(gc.get_freeze_count())"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert int(result.stdout) == 0, result.stdout
