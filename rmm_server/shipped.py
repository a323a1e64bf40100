"""What ships with the server: the default policies and script library.

One copy lives at the top of the source tree (policies/, script-library/), where operators and
the docs use it. A wheel carries it as package data in rmm_server/_shipped/ (setup.py copies it
there, MANIFEST.in puts it in the sdist), found here through importlib.resources; a source
checkout and an editable install have no such folder and read the top-level one in place.
Apart from app.py so that light commands need not import the server.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

# Inside the installed package: where setup.py puts the folders in a wheel.
PACKAGED = ("_shipped",)


def shipped(name: str) -> Path:
    """Return the shipped folder `name`: the package's copy if installed, else the checkout's."""
    packaged = resources.files("rmm_server").joinpath(*PACKAGED, name)
    # A regular install on disk gives a Path; from inside a zip there is no folder to load.
    if isinstance(packaged, Path) and packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / name


SHIPPED_POLICIES = shipped("policies")
SHIPPED_SCRIPT_LIBRARY = shipped("script-library")
