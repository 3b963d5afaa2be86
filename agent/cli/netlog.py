"""``contact-agent network-log``: every network contact the agent made, for the owner."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import click

from agent.cli import CliContext, pass_cli
from agent.clock import SystemClock
from agent.control import DaemonNotRunningError, request
from agent.daemon.offline import offline_network_log
from agent.jsonout import dumps


def _size(count: Any) -> str:
    value = float(count) if isinstance(count, int | float) else 0.0
    if value < 1000:
        return f"{value:.0f} B"
    return f"{value / 1000:.1f} kB" if value < 1_000_000 else f"{value / 1e6:.1f} MB"


def _line(contact: Mapping[str, Any]) -> str:
    when = datetime.fromtimestamp(float(contact.get("time", 0)), UTC)
    return (
        f"{when:%Y-%m-%d %H:%M:%S} UTC  {contact.get('purpose', '?'):<12}  "
        f"{contact.get('host', '?')}  sent {_size(contact.get('bytes_sent'))}, "
        f"received {_size(contact.get('bytes_received'))}  {contact.get('result', '?')}"
    )


@click.command("network-log")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--days",
    type=click.IntRange(1, 14),
    default=14,
    show_default=True,
    help="Show this many days back (the log keeps 14).",
)
@pass_cli
def network_log(cli: CliContext, as_json: bool, days: int) -> None:
    """What left this device: every network contact (time, host, purpose, bytes, result).

    Key downloads, the verification and upload steps of a report, and decoy uploads;
    never an identifier, key or code. From the running daemon, or the data directory.
    """
    since = SystemClock().wall() - days * 86_400
    try:
        answer = request(cli.socket_paths(), "network_log")
        contacts = [c for c in answer.get("contacts", []) if isinstance(c, dict)]
    except DaemonNotRunningError:
        contacts = asyncio.run(offline_network_log(cli.data_dir, since, SystemClock()))
    contacts = [c for c in contacts if float(c.get("time", 0)) >= since]
    if as_json:
        click.echo(dumps({"days": days, "contacts": contacts}, indent=2, sort_keys=True))
    elif not contacts:
        click.echo(f"no network contact in the last {days} days")
    else:
        for contact in contacts:
            click.echo(_line(contact))


COMMANDS = [network_log]
