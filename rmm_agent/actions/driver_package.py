"""driver_package: install an operator's driver or firmware package, or roll the last one back.

How each kind installs, and what a rollback restores (docs/patching.md, "Drivers"):

- .deb: `dpkg -i FILE`; rollback: the version it replaced, from the .deb this agent kept
  (`dpkg -i`) or else the repositories (`apt-get install --allow-downgrades NAME=VERSION`);
  when it replaced nothing, `dpkg -r NAME`.
- .rpm: `rpm -U FILE`; rollback: the kept .rpm (`rpm -U --oldpackage`), else
  `dnf downgrade NAME-VERSION`; when it replaced nothing, `rpm -e NAME`.
- .cab: `fwupdmgr install FILE [DEVICE]`; rollback: `fwupdmgr downgrade DEVICE` (fwupd's own
  older release for the device).
- .zip or .inf (Windows): `pnputil /add-driver X.inf /subdirs /install`; rollback:
  `pnputil /delete-driver oemNN.inf /uninstall /force`, after which Windows uses the previous
  package, still in its driver store.

Every package this agent installs is kept under its state directory with a journal of what
it replaced, so a rollback knows the previous version even after a restart; a rollback pops
the journal, so a second one goes one version further back.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

from rmm_agent.actions.base import ActionContext, ActionFailed, action, succeeded
from rmm_agent.patching.base import (
    PatchError,
    ProcessRunner,
    ProcessTimedOut,
    run_process,
    tail,
)
from rmm_agent.patching.pnputil import (
    ENUM_DRIVERS,
    EXIT_NO_MATCHING_DEVICE,
    EXIT_REBOOT_REQUIRED,
    PNPUTIL,
    parse_add_driver,
    parse_enum_drivers,
)
from rmm_common.command_summary import printable
from rmm_proto import commands_pb2

INSTALL = "install"
ROLLBACK = "rollback"
KINDS = ("deb", "rpm", "fwupd", "pnputil")
_SUFFIX_KIND = {".deb": "deb", ".rpm": "rpm", ".cab": "fwupd", ".zip": "pnputil", ".inf": "pnputil"}
_KIND_PLATFORM = {"deb": "linux", "rpm": "linux", "fwupd": "linux", "pnputil": "win"}
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+~-]*$")
_QUERY_SECONDS = 60.0
# dpkg's "no such package" while asking for a version: the package is not installed.
_NOT_INSTALLED = 1
JOURNAL = "journal.json"


@dataclass
class Outcome:
    """What one install or rollback did, built up as its commands run."""

    kind: str
    package: str = ""
    version: str = ""
    previous: str = ""
    commands: list[str] = field(default_factory=list)
    output: str = ""
    reboot_required: bool = False

    def result(self) -> commands_pb2.DriverPackageResult:
        """Return the outcome as its protocol message."""
        return commands_pb2.DriverPackageResult(
            kind=self.kind,
            package=self.package,
            version=self.version,
            previous=self.previous,
            commands=self.commands,
            output=self.output,
            reboot_required=self.reboot_required,
        )


class Tools:
    """Runs the platform's commands, recording each in the outcome; failures raise."""

    def __init__(self, runner: ProcessRunner, outcome: Outcome, deadline: float) -> None:
        self.runner = runner
        self.outcome = outcome
        self.deadline = deadline

    def run(self, argv: Sequence[str], ok: Sequence[int] = (0,)) -> tuple[int, str]:
        """Run `argv`; return (exit status, output); ActionFailed on another status."""
        self.outcome.commands.append(" ".join(argv))
        timeout = max(1.0, self.deadline - time.monotonic())
        try:
            rc, out, err = self.runner(argv, timeout)
        except (ProcessTimedOut, PatchError) as exc:
            raise self.failed(str(exc)) from None
        self.outcome.output = tail((out + ("\n" + err if err.strip() else "")).strip(), 2000)
        if rc not in ok:
            raise self.failed(f"{' '.join(argv)}: exited {rc}: {tail(err or out, 500)}")
        return rc, out

    def query(self, argv: Sequence[str]) -> tuple[int, str]:
        """Run a read-only query (not recorded as a command); return (status, stdout)."""
        try:
            rc, out, _ = self.runner(argv, _QUERY_SECONDS)
        except (ProcessTimedOut, PatchError) as exc:
            raise self.failed(str(exc)) from None
        return rc, out

    def failed(self, message: str) -> ActionFailed:
        """Return the ActionFailed carrying what was done so far."""
        return ActionFailed(message, driver_package=self.outcome.result())


# --- the journal of installed packages --------------------------------------------------------


def _store(state_dir: Path) -> Path:
    return state_dir / "drivers"


def read_journal(state_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Return "kind/package" -> installs, oldest first ({} when none yet)."""
    path = _store(state_dir) / JOURNAL
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ActionFailed(
            f"the driver journal {path} is unreadable ({exc}); move it away to start afresh"
        ) from exc
    return data if isinstance(data, dict) else {}


def write_journal(state_dir: Path, journal: dict[str, list[dict[str, Any]]]) -> None:
    """Write the journal atomically."""
    path = _store(state_dir) / JOURNAL
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(journal, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def keep_file(state_dir: Path, kind: str, name: str, data: bytes) -> Path:
    """Keep a copy of an installed package for later rollbacks; return its path."""
    digest = hashlib.sha256(data).hexdigest()[:16]
    folder = _store(state_dir) / kind
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{digest}-{name}"
    if not path.exists():
        path.write_bytes(data)
    return path


# --- .deb and .rpm ----------------------------------------------------------------------------


def deb_fields_argv(path: str) -> list[str]:
    """Return the command line printing a .deb's package name and version."""
    return ["dpkg-deb", "--showformat=${Package}\\n${Version}\\n", "--show", path]


def deb_installed_argv(name: str) -> list[str]:
    """Return the command line printing the installed version of a package."""
    return ["dpkg-query", "--showformat=${Version}", "--show", name]


def rpm_fields_argv(path: str) -> list[str]:
    return ["rpm", "-qp", "--queryformat", "%{NAME}\\n%{VERSION}-%{RELEASE}\\n", path]


def rpm_installed_argv(name: str) -> list[str]:
    return ["rpm", "-q", "--queryformat", "%{VERSION}-%{RELEASE}", name]


def install_argv(kind: str, path: str, device: str = "") -> list[str]:
    """Return the command line that installs a package file of `kind`."""
    if kind == "deb":
        return ["dpkg", "-i", path]
    if kind == "rpm":
        return ["rpm", "-U", "--replacepkgs", path]
    if kind == "fwupd":
        return [
            "fwupdmgr",
            "install",
            "--assume-yes",
            "--no-reboot-check",
            path,
            *([device] if device else []),
        ]
    return [PNPUTIL, "/add-driver", path, "/subdirs", "/install"]


def reinstall_kept_argv(kind: str, path: str) -> list[str]:
    """Return the command line that puts a kept older package back."""
    if kind == "deb":
        return ["dpkg", "-i", path]
    return ["rpm", "-U", "--oldpackage", "--replacepkgs", path]


def from_repository_argv(kind: str, name: str, version: str) -> list[str]:
    """Return the command line that installs an older version from the repositories."""
    if kind == "deb":
        return [
            "apt-get",
            "install",
            "--yes",
            "--allow-downgrades",
            "--no-install-recommends",
            f"{name}={version}",
        ]
    return ["dnf", "downgrade", "--assumeyes", f"{name}-{version}"]


def remove_argv(kind: str, name: str) -> list[str]:
    """Return the command line that removes a package (a rollback of a first install)."""
    return ["dpkg", "-r", name] if kind == "deb" else ["rpm", "-e", name]


def fwupd_downgrade_argv(device: str) -> list[str]:
    return ["fwupdmgr", "downgrade", "--assume-yes", "--no-reboot-check", device]


def pnputil_delete_argv(published: str) -> list[str]:
    return [PNPUTIL, "/delete-driver", published, "/uninstall", "/force"]


def _package_fields(tools: Tools, kind: str, path: str) -> tuple[str, str]:
    argv = deb_fields_argv(path) if kind == "deb" else rpm_fields_argv(path)
    rc, out = tools.query(argv)
    lines = out.splitlines()
    if rc != 0 or len(lines) < 2 or not _SAFE_NAME.match(lines[0]):
        raise tools.failed(f"{' '.join(argv)}: not a readable {kind} package: {tail(out, 300)}")
    return lines[0], lines[1]


def _installed_version(tools: Tools, kind: str, name: str) -> str:
    argv = deb_installed_argv(name) if kind == "deb" else rpm_installed_argv(name)
    rc, out = tools.query(argv)
    # dpkg-query shows an empty version for a removed package whose configuration remains.
    return out.strip() if rc == 0 else ""


def install_package(
    tools: Tools, kind: str, path: Path, data: bytes, state_dir: Path, clock: float
) -> None:
    """Install a .deb or .rpm and record what it replaced."""
    name, version = _package_fields(tools, kind, str(path))
    outcome = tools.outcome
    outcome.package = name
    outcome.previous = _installed_version(tools, kind, name)
    tools.run(install_argv(kind, str(path)))
    outcome.version = _installed_version(tools, kind, name)
    if outcome.version != version:
        raise tools.failed(
            f"{kind} {name}: {version} was installed but the package manager now says "
            f"{outcome.version or 'not installed'}"
        )
    kept = keep_file(state_dir, kind, path.name, data)
    journal = read_journal(state_dir)
    journal.setdefault(f"{kind}/{name}", []).append(
        {"version": version, "previous": outcome.previous, "file": str(kept), "at": clock}
    )
    write_journal(state_dir, journal)


def _kept_file(entries: list[dict[str, Any]], version: str) -> str:
    """Return the kept file of an earlier install of `version`, "" when none is on disk."""
    for entry in reversed(entries):
        if entry.get("version") == version and Path(str(entry.get("file", ""))).is_file():
            return str(entry["file"])
    return ""


def rollback_package(tools: Tools, kind: str, name: str, state_dir: Path) -> None:
    """Put back the version the last install of `name` replaced (remove it if none)."""
    if not _SAFE_NAME.match(name):
        raise tools.failed(f"{printable(name)} is not a package name")
    journal = read_journal(state_dir)
    entries = journal.get(f"{kind}/{name}", [])
    if not entries:
        raise tools.failed(
            f"this agent installed no {kind} package {name} with `rmm drivers install`: "
            "nothing to roll back (the package manager's own history is not touched)"
        )
    last = entries[-1]
    outcome = tools.outcome
    outcome.package = name
    outcome.previous = str(last.get("previous") or "")
    if not outcome.previous:
        tools.run(remove_argv(kind, name))
    elif kept := _kept_file(entries[:-1], outcome.previous):
        tools.run(reinstall_kept_argv(kind, kept))
    else:
        tools.run(from_repository_argv(kind, name, outcome.previous))
    outcome.version = _installed_version(tools, kind, name)
    if outcome.version != outcome.previous:
        raise tools.failed(
            f"{kind} {name}: rolling back to {outcome.previous or 'no package'} left "
            f"{outcome.version or 'nothing'} installed"
        )
    entries.pop()
    if entries:
        journal[f"{kind}/{name}"] = entries
    else:
        journal.pop(f"{kind}/{name}", None)
    write_journal(state_dir, journal)


# --- fwupd and pnputil ------------------------------------------------------------------------


def install_firmware(tools: Tools, path: Path, device: str) -> None:
    """Flash a .cab with fwupd (the device's older release is fwupd's to offer back)."""
    outcome = tools.outcome
    outcome.package = device
    tools.run(install_argv("fwupd", str(path), device))
    # fwupd stages most firmware for the next boot (UEFI capsules): say a reboot is due.
    outcome.reboot_required = True


def rollback_firmware(tools: Tools, device: str) -> None:
    """Ask fwupd for the device's previous release."""
    if not device:
        raise tools.failed("a firmware rollback needs the device id (--package DEVICE_ID)")
    tools.outcome.package = device
    tools.run(fwupd_downgrade_argv(device))
    tools.outcome.reboot_required = True


def unpack_driver(path: Path, folder: Path) -> Path:
    """Return the folder holding the driver's .inf: a .zip is unpacked into `folder`."""
    if path.suffix.lower() == ".inf":
        return path.parent
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path) as archive:
        for member in archive.namelist():
            target = (folder / member).resolve()
            if not target.is_relative_to(folder.resolve()):
                raise ActionFailed(f"the archive's entry {printable(member)} leaves its folder")
        archive.extractall(folder)
    return folder


def install_windows_driver(tools: Tools, path: Path, state_dir: Path) -> None:
    """Add a driver package to the store with pnputil; name the package it supersedes."""
    folder = unpack_driver(path, _store(state_dir) / "pnputil" / path.stem)
    infs = sorted(folder.rglob("*.inf")) if folder != path.parent else [path]
    if not infs:
        raise tools.failed(f"{path.name} holds no .inf file: not a driver package")
    inf = infs[0]
    _, before = tools.query(ENUM_DRIVERS)
    rc, out = tools.run(
        install_argv("pnputil", str(inf)), ok=(0, EXIT_REBOOT_REQUIRED, EXIT_NO_MATCHING_DEVICE)
    )
    published, failure = parse_add_driver(out)
    if published is None:
        raise tools.failed(f"pnputil named no published package: {failure or tail(out, 300)}")
    outcome = tools.outcome
    outcome.package = published
    outcome.reboot_required = rc == EXIT_REBOOT_REQUIRED
    outcome.previous = previous_driver(parse_enum_drivers(before), inf.name, published)
    _, after = tools.query(ENUM_DRIVERS)
    entry = parse_enum_drivers(after).get(published.lower())
    if entry is None:
        raise tools.failed(f"pnputil reported {published} but the driver store lacks it")
    outcome.version = entry.get("Driver Version", "")


def previous_driver(store: dict[str, dict[str, str]], original: str, published: str) -> str:
    """Return the published name of the store's other package of the same .inf, "" none."""
    for name, entry in sorted(store.items()):
        if name != published.lower() and entry.get("Original Name", "").lower() == original.lower():
            return entry.get("Published Name", name)
    return ""


def rollback_windows_driver(tools: Tools, published: str) -> None:
    """Remove the package an install added; Windows falls back to the previous one."""
    if not re.fullmatch(r"oem\d+\.inf", published, re.IGNORECASE):
        raise tools.failed(f"{printable(published)} is not a published driver name (oemNN.inf)")
    tools.outcome.package = published
    tools.run(pnputil_delete_argv(published), ok=(0, EXIT_REBOOT_REQUIRED))
    tools.outcome.reboot_required = tools.outcome.output.find("reboot") >= 0


# --- the action -------------------------------------------------------------------------------


def kind_of(file_name: str) -> str:
    """Return the kind of a package file by its suffix, ActionFailed for anything else."""
    kind = _SUFFIX_KIND.get(PurePath(file_name).suffix.lower())
    if kind is None:
        raise ActionFailed(
            f"{printable(file_name)}: a driver package is a .deb, .rpm, .cab, .zip or .inf file"
        )
    return kind


def _check_platform(kind: str, platform: str) -> None:
    wanted = _KIND_PLATFORM[kind]
    if not platform.startswith(wanted):
        where = "Windows" if wanted == "win" else "Linux"
        raise ActionFailed(f"a {kind} package installs on {where}, not on this {platform} host")


def _write_package(request: commands_pb2.DriverPackage, state_dir: Path, limit: int) -> Path:
    name = PurePath(request.file_name).name
    if not _SAFE_NAME.match(name):
        raise ActionFailed(f"{printable(request.file_name)} is not a plain file name")
    if len(request.data) > limit:
        raise ActionFailed(
            f"{name}: {len(request.data)} bytes is over this host's limit of {limit} bytes "
            "(max_file_bytes in the agent configuration)"
        )
    digest = hashlib.sha256(request.data).hexdigest()
    if request.sha256.lower() != digest:
        raise ActionFailed(
            f"{name}: the data's sha256 is {digest}, not {request.sha256 or 'given'}; "
            "damaged on the way, nothing installed"
        )
    folder = _store(state_dir) / "incoming"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(request.data)
    return path


def handle(
    request: commands_pb2.DriverPackage,
    context: ActionContext,
    runner: ProcessRunner,
    platform: str,
) -> commands_pb2.CommandResult:
    """Install or roll back one package with `runner` as on `platform` (tests pass theirs)."""
    if request.operation == INSTALL:
        kind = kind_of(request.file_name)
    elif request.operation == ROLLBACK:
        kind = request.kind
        if kind not in KINDS:
            raise ActionFailed(
                f"rollback kind {printable(kind)} is unknown: one of {', '.join(KINDS)}, as "
                "the install answered"
            )
    else:
        raise ActionFailed(f"operation {printable(request.operation)} is not install or rollback")
    _check_platform(kind, platform)
    outcome = Outcome(kind)
    tools = Tools(runner, outcome, context.deadline)
    if request.operation == ROLLBACK:
        if kind in ("deb", "rpm"):
            rollback_package(tools, kind, request.package, context.state_dir)
        elif kind == "fwupd":
            rollback_firmware(tools, request.package)
        else:
            rollback_windows_driver(tools, request.package)
        return succeeded(driver_package=outcome.result())
    path = _write_package(request, context.state_dir, context.config.max_file_bytes)
    try:
        if kind in ("deb", "rpm"):
            install_package(tools, kind, path, request.data, context.state_dir, context.clock())
        elif kind == "fwupd":
            install_firmware(tools, path, request.device)
        else:
            install_windows_driver(tools, path, context.state_dir)
    finally:
        if kind != "pnputil":  # pnputil's unpacked folder stays: the store refers to it
            path.unlink(missing_ok=True)
    return succeeded(driver_package=outcome.result())


@action
def run(request: commands_pb2.DriverPackage, context: ActionContext) -> commands_pb2.CommandResult:
    """Install an operator's driver package, or roll the last one back."""
    return handle(request, context, run_process, sys.platform)
