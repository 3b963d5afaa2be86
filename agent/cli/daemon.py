"""``contact-agent run | status | enable | disable``: the daemon and its consent switch."""

from __future__ import annotations

import asyncio
import re

import click

from agent.cli import CliContext, pass_cli
from agent.clock import SystemClock
from agent.control import DaemonNotRunningError, request, request_at
from agent.jsonout import dumps

_ADAPTER = re.compile(r"hci[0-9]{1,3}")


def _check_adapter(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not _ADAPTER.fullmatch(value):
        raise click.BadParameter(f"must look like hci0, got {value!r}")
    return value


@click.command("run")
@click.option(
    "--adapter",
    callback=_check_adapter,
    metavar="hciN",
    help="Bluetooth adapter (overrides radio.adapter).",
)
@pass_cli
def run(cli: CliContext, adapter: str | None) -> None:
    """Run the agent in the foreground (systemd runs this)."""
    from agent.daemon.service import AgentService

    config = cli.config
    service = AgentService(
        config,
        cli.data_dir,
        config_path=cli.config_path if cli.config_path.exists() else None,
        adapter=adapter,
    )
    asyncio.run(service.run())


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_cli
def status(cli: CliContext, as_json: bool) -> None:
    """State of the running daemon, or of the data directory when none runs."""
    from dataclasses import replace

    from agent.daemon.status import render
    from agent.daemon.status_json import status_from_json, status_json
    from agent.daemon.status_model import Where

    try:
        socket, answer = request_at(cli.socket_paths(), "status")
        result = status_from_json(answer)
        result = replace(
            result, data_dir=result.data_dir or str(cli.data_dir), where=Where(str(socket))
        )
    except DaemonNotRunningError:
        from agent.daemon.offline import offline_status

        result = asyncio.run(offline_status(cli.data_dir, cli.config, SystemClock()))
        where = Where(None, data_dir_exists=cli.data_dir.is_dir())
        result = replace(result, data_dir=str(cli.data_dir), where=where)
    if as_json:
        click.echo(dumps(status_json(result), indent=2, sort_keys=True))
    else:
        click.echo(render(result))


def _set_consent(cli: CliContext, enabled: bool) -> None:
    word = "enabled" if enabled else "disabled"
    try:
        request(cli.socket_paths(), "enable" if enabled else "disable")
    except DaemonNotRunningError:
        from agent.daemon.offline import set_consent_offline

        asyncio.run(set_consent_offline(cli.data_dir, enabled, SystemClock()))
        click.echo(f"contact detection {word}; the daemon is not running, it applies this at start")
        return
    click.echo(f"contact detection {word} (applied by the running daemon)")


@click.command("enable")
@pass_cli
def enable(cli: CliContext) -> None:
    """Consent to contact detection: advertise and scan."""
    _set_consent(cli, True)


@click.command("disable")
@pass_cli
def disable(cli: CliContext) -> None:
    """Withdraw consent: no advertising and no scanning within 2 s (data is kept)."""
    _set_consent(cli, False)


COMMANDS = [run, status, enable, disable]
