"""`rmm drivers`: driver and firmware updates across the fleet; push a package; roll it back.

`list` is the fleet's patch view (`rmm patches list`) narrowed to the driver and firmware
classifications. `install` and `rollback` send the signed driver_package action through
`targets.act()`: the same selection, consent, audit entry, outcome table and exit status as
every remote action (docs/patching.md, "Drivers").
"""

from __future__ import annotations

import hashlib
from pathlib import Path, PurePath

import click
from rich.table import Table

from rmm_cli.actions import read_push_file
from rmm_cli.client import EXIT_USAGE, CliError, Connection
from rmm_cli.output import OUTPUT_OPTION, emit_json, print_plain_table, shown
from rmm_cli.patches import fleet_row
from rmm_cli.targets import (
    TARGET,
    Outcome,
    RunOptions,
    Target,
    act,
    run_options,
)
from rmm_common.logs import agent_text
from rmm_proto import commands_pb2, operator_pb2

DEVICE_CLASSES = ("driver", "firmware")
SUFFIXES = (".deb", ".rpm", ".cab", ".zip", ".inf")
KINDS = ("deb", "rpm", "fwupd", "pnputil")


@click.group()
def drivers() -> None:
    """Drivers and firmware: the fleet's pending ones; push a package; roll it back."""


@drivers.command("list")
@click.option("--target", "-t", type=TARGET, default=None, help="Only these agents (a TARGET).")
@OUTPUT_OPTION
@click.pass_obj
def drivers_list(conn: Connection, target: Target | None, output: str) -> None:
    """List pending driver and firmware updates: one line each, with how many agents need it."""
    request = operator_pb2.ListPatchesRequest()
    if target is not None:
        request.target.CopyFrom(target.selector)
    response = conn.call(conn.stub().ListPatches, request)
    updates = [u for u in response.updates if u.classification in DEVICE_CLASSES]
    if output == "json":
        emit_json({"agents": response.agents, "updates": [fleet_row(u) for u in updates]})
        return
    rows = [
        [
            u.update_id,
            agent_text(u.name),
            u.classification,
            agent_text(u.available),
            str(u.agents),
            str(u.pending),
            str(u.approved),
            str(u.declined),
            str(u.failed),
            str(u.installed),
        ]
        for u in updates
    ]
    print_plain_table(
        [
            "UPDATE",
            "NAME",
            "CLASS",
            "AVAILABLE",
            "AGENTS",
            "PENDING",
            "APPROVED",
            "DECLINED",
            "FAILED",
            "INSTALLED",
        ],
        rows,
    )


def driver_section(outcome: Outcome) -> Table | None:
    """Return what one agent's install or rollback did, or None when it answered nothing."""
    result = outcome.info.result
    if not result.HasField("driver_package"):
        return None
    done = result.driver_package
    table = Table("KIND", "PACKAGE", "NOW", "BEFORE", "REBOOT", "COMMANDS")
    table.add_row(
        shown(done.kind),
        shown(done.package) or "-",
        shown(done.version) or "(none)",
        shown(done.previous) or "(none)",
        "needed" if done.reboot_required else "-",
        "\n".join(shown(c) for c in done.commands),
    )
    return table


def _check_file(package: Path) -> None:
    if PurePath(package.name).suffix.lower() not in SUFFIXES:
        raise CliError(
            f"{package}: a driver package is a .deb or .rpm (Linux package manager), a .cab "
            "(fwupd firmware) or a .zip/.inf (Windows pnputil)",
            EXIT_USAGE,
        )


@drivers.command("install")
@click.option("--target", "-t", type=TARGET, required=True, help="Which agents (a TARGET).")
@click.argument("package", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--device", default="", help="A .cab's fwupd device id (fwupdmgr get-devices).")
@run_options()
@OUTPUT_OPTION
@click.pass_obj
def drivers_install(
    conn: Connection,
    target: Target,
    package: Path,
    device: str,
    options: RunOptions,
    output: str,
) -> None:
    """Install PACKAGE, a driver or firmware package, on the agents TARGET selects.

    The agent keeps what it replaced: `rmm drivers rollback` puts it back where the platform
    can. Every install is in the audit log.
    """
    _check_file(package)
    data = read_push_file(package)
    message = commands_pb2.DriverPackage(
        operation="install",
        file_name=package.name,
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        device=device,
    )
    act(conn, target, "driver_package", message, options, output, sections=driver_section)


@drivers.command("rollback")
@click.option("--target", "-t", type=TARGET, required=True, help="Which agents (a TARGET).")
@click.option(
    "--kind", type=click.Choice(KINDS), required=True, help="As the install answered (KIND)."
)
@click.argument("package")
@run_options()
@OUTPUT_OPTION
@click.pass_obj
def drivers_rollback(
    conn: Connection,
    target: Target,
    kind: str,
    package: str,
    options: RunOptions,
    output: str,
) -> None:
    """Roll back the last install of PACKAGE (as the install answered it) on TARGET's agents.

    deb/rpm: the package name (the version it replaced comes back, or the package goes when it
    replaced none); fwupd: the device id; pnputil: the published oemNN.inf.
    """
    message = commands_pb2.DriverPackage(operation="rollback", kind=kind, package=package)
    act(conn, target, "driver_package", message, options, output, sections=driver_section)
