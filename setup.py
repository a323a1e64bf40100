"""Build hook: the shipped policies/ and script-library/ go into the wheel as package data.

Everything else about the project is in pyproject.toml. The two folders stay at the top of the
source tree, where operators and docs find them (`rmm policy validate policies/`), as the one
copy; a wheel, and a wheel built from the sdist (MANIFEST.in grafts them), carries them as
rmm_server/_shipped/<folder>/, where rmm_server/shipped.py finds them with importlib.resources.
An editable install and a checkout read them in place, so this hook does nothing there.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from setuptools import setup
from setuptools.command.build_py import build_py

SHIPPED = ("policies", "script-library")
TARGET = ("rmm_server", "_shipped")


class BuildPyWithShipped(build_py):
    """Copy the shipped folders into the built package along with its other data files."""

    def _get_package_data_output_mapping(self) -> Iterator[tuple[str, str]]:
        yield from super()._get_package_data_output_mapping()
        if self.editable_mode:
            return
        for folder in SHIPPED:
            if not os.path.isdir(folder):
                # A wheel without them would start a server with no policies and no scripts.
                raise FileNotFoundError(
                    f"{os.path.abspath(folder)} is missing: the wheel must ship it (is it in "
                    "MANIFEST.in, and was the sdist built from a full checkout?)"
                )
            for directory, subdirs, files in os.walk(folder):
                subdirs[:] = sorted(d for d in subdirs if not _skipped(d))
                for name in sorted(files):
                    if _skipped(name):
                        continue
                    source = os.path.join(directory, name)
                    yield os.path.join(self.build_lib, *TARGET, source), source


def _skipped(name: str) -> bool:
    return name.startswith(".") or name == "__pycache__" or name.endswith((".pyc", "~"))


setup(cmdclass={"build_py": BuildPyWithShipped})
