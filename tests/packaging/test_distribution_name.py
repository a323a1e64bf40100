"""The project installs under one distribution name everywhere: msp-rmm, not PyPI's `rmm`.

"rmm" on the public package index is an unrelated project (a placeholder whose install fails),
so every install command, extra and default must name ours.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from rmm_common.oneliner import DEFAULT_PACKAGE, DISTRIBUTION

ROOT = Path(__file__).resolve().parents[2]
# `rmm[...]` or `rmm==`/`rmm>=` as a requirement, but not msp-rmm[...] or a path's ".[server]".
OLD_REQUIREMENT = re.compile(r"(?<![\w.-])rmm(\[[\w,]+\]|[=<>~]=)")
WHERE_PEOPLE_READ = ("README.md", "docs", "deploy", "scripts", "rmm_agent", "rmm_cli", "rmm_server")


def test_pyproject_names_the_distribution_and_its_extras_by_it() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == DISTRIBUTION == "msp-rmm"
    own = [
        requirement
        for extra in project["optional-dependencies"].values()
        for requirement in extra
        if re.match(r"[\w.-]*rmm\b", requirement)
    ]
    assert own and all(r.startswith(f"{DISTRIBUTION}[") for r in own), own


def test_the_installer_default_is_this_release_of_the_distribution() -> None:
    import rmm_agent  # noqa: PLC0415

    assert f"{DISTRIBUTION}[agent]=={rmm_agent.__version__}" == DEFAULT_PACKAGE


def test_no_install_command_names_the_wrong_project() -> None:
    found = []
    for top in WHERE_PEOPLE_READ:
        base = ROOT / top
        files = [base] if base.is_file() else sorted(base.rglob("*"))
        for path in files:
            if (
                path.suffix not in (".md", ".sh", ".py", ".ps1", ".yaml", ".txt")
                or "__pycache__" in path.parts
            ):
                continue
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                if OLD_REQUIREMENT.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)
