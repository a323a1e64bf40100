"""`rmm notifications`: notifications that could not be delivered."""

from __future__ import annotations

import click
from rich.table import Table

from rmm_cli.client import Connection
from rmm_cli.output import OUTPUT_OPTION, emit_json, print_table, shown, when
from rmm_proto import operator_pb2


@click.group()
def notifications() -> None:
    """Notification delivery."""


@notifications.command("failed")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@OUTPUT_OPTION
@click.pass_obj
def notifications_failed(conn: Connection, limit: int, output: str) -> None:
    """List notifications that could not be delivered after their retries."""
    response = conn.call(
        conn.stub().ListFailedNotifications,
        operator_pb2.ListFailedNotificationsRequest(limit=limit),
    )
    rows = [
        {
            "at": f.at,
            "receiver": f.receiver,
            "notifier": f.notifier,
            "status": f.status,
            "error": f.error,
            "alert_ids": list(f.alert_ids),
            "group_key": f.group_key,
        }
        for f in response.failures
    ]
    if output == "json":
        emit_json(rows)
        return
    table = Table("WHEN", "RECEIVER", "NOTIFIER", "STATUS", "ALERTS", "ERROR")
    for row in rows:
        table.add_row(
            when(row["at"]),
            shown(row["receiver"]),
            shown(row["notifier"]),
            shown(row["status"]),
            str(len(row["alert_ids"])),
            shown(row["error"]),  # a receiver's answer, quoted
        )
    print_table(table)
