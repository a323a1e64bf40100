"""The committed rmm_proto/ is exactly what proto/ generates."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_matches_proto_sources(tmp_path: Path) -> None:
    protos = sorted(str(p.relative_to(ROOT / "proto")) for p in (ROOT / "proto").rglob("*.proto"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I",
            "proto",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            *[f"proto/{p}" for p in protos],
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    generated = {p.name for p in (tmp_path / "rmm_proto").iterdir()}
    committed = {
        p.name
        for p in (ROOT / "rmm_proto").iterdir()
        if p.suffix in {".py", ".pyi"} and p.name != "__init__.py"
    }
    assert generated == committed, "run scripts/gen_proto.sh and commit rmm_proto/"
    _match, mismatch, errors = filecmp.cmpfiles(
        tmp_path / "rmm_proto", ROOT / "rmm_proto", sorted(generated), shallow=False
    )
    assert not mismatch and not errors, (
        f"rmm_proto/ drifted from proto/ in {mismatch + errors}: run scripts/gen_proto.sh"
    )
