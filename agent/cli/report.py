"""``contact-agent report`` (self-report) and ``contact-agent keyserver`` (local test server)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from agent import netlog
from agent.cli import CliContext, pass_cli
from agent.clock import SystemClock, en_interval_number
from agent.clocksync import marker_synchronized
from agent.errors import NetworkError
from agent.report.client import (
    Reporter,
    ReportResult,
    check_ready,
    check_report_config,
    normalize_code,
)
from agent.report.pending import clear_pending, load_pending
from agent.report.release import StoreKeyRelease
from agent.signals import wait_for_stop_signal
from agent.store import Store

if TYPE_CHECKING:  # the test key server is a lab tool: only `keyserver` loads it
    from agent.lab.keyserver import LocalKeyServer

PRIVACY_NOTICE = """\
Before you publish, please read what it reveals:
- Your device broadcast changing Bluetooth IDs for the last 14 days. Publishing your keys
  lets anyone who recorded those IDs recognise them as belonging to a person who reported
  a positive test.
- Someone who recorded the IDs together with who or what was there (a camera, an access
  log, a network of Bluetooth sniffers) may learn that it was you, and can follow your
  device's broadcasts through each published day.
- The verification and key servers see your IP address when you upload.
- The keys are ended first, so nothing published stays on air. You can withhold days with
  --withhold-day YYYY-MM-DD."""


def _parse_days(days: tuple[str, ...]) -> frozenset[int]:
    starts = set()
    for day in days:
        try:
            date = dt.date.fromisoformat(day)
        except ValueError:
            raise click.BadParameter(
                f"must be a date YYYY-MM-DD, got {day!r}", param_hint="--withhold-day"
            ) from None
        midnight = dt.datetime(date.year, date.month, date.day, tzinfo=dt.UTC)
        starts.add(en_interval_number(midnight.timestamp()))
    return frozenset(starts)


async def _check_ready(cli: CliContext, store: Store, clock: SystemClock) -> None:
    await check_ready(cli.config, store, clock, synchronized=marker_synchronized())


async def _prepare(cli: CliContext, code: str | None, withhold: frozenset[int]) -> tuple[bool, int]:
    """Check everything before asking: (an interrupted upload waits, keys available)."""
    clock = SystemClock()
    store = await Store.open(cli.data_dir)
    try:
        await _check_ready(cli, store, clock)
        if await load_pending(store) is not None:
            return True, 0
        if code is None:
            raise click.UsageError("give the verification code: report --code CODE")
        normalize_code(code)
        return False, await StoreKeyRelease(store, cli.data_dir, clock).available(withhold)
    finally:
        await store.close()


async def _wait_visibly(seconds: float) -> None:
    """The wait before a busy server is tried again, said on stdout (not an error)."""
    click.echo(f"the server is busy or out of reach; trying again in {seconds:.0f} s")
    await asyncio.sleep(seconds)


async def _run(cli: CliContext, code: str | None, withhold: frozenset[int]) -> ReportResult:
    clock = SystemClock()
    store = await Store.open(cli.data_dir)
    try:
        # checked again: time may have passed at the confirmation prompt
        await _check_ready(cli, store, clock)
        reporter = Reporter(cli.config.report, store, clock, sleep=_wait_visibly)
        keys = StoreKeyRelease(store, cli.data_dir, clock)
        network_log = netlog.install(store.add_network_contacts, clock)
        try:
            return await reporter.run(code, keys, withhold_days=withhold)
        finally:
            await network_log.close()
    finally:
        await store.close()


async def _discard(cli: CliContext) -> bool:
    store = await Store.open(cli.data_dir)
    try:
        had = await load_pending(store) is not None
        await clear_pending(store)
        return had
    finally:
        await store.close()


@click.command("report")
@click.option("--code", default=None, help="Verification code from the health authority.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--withhold-day",
    "withhold_days",
    multiple=True,
    metavar="YYYY-MM-DD",
    help="Do not publish the key of this UTC day (repeatable).",
)
@click.option(
    "--discard-pending",
    is_flag=True,
    help="Forget an interrupted upload instead of retrying it.",
)
@pass_cli
def report(
    cli: CliContext,
    code: str | None,
    yes: bool,
    withhold_days: tuple[str, ...],
    discard_pending: bool,
) -> None:
    """Self-report after a positive test: code -> certificate -> publish your keys."""
    if discard_pending:
        had = asyncio.run(_discard(cli))
        click.echo("interrupted upload discarded" if had else "no interrupted upload")
        return
    check_report_config(cli.config.report)
    withhold = _parse_days(withhold_days)
    resuming, available = asyncio.run(_prepare(cli, code, withhold))
    if resuming:
        click.echo(
            "An earlier upload was interrupted; it is retried now with the same keys and "
            "certificate" + (" (the code given is not used)." if code else ".")
        )
    elif not yes:
        click.echo(PRIVACY_NOTICE)
        question = f"Publish {available} key(s) of your last 14 days now?"
        if not click.confirm(question, default=False):
            click.echo("contact-agent: not confirmed; nothing was sent", err=True)
            sys.exit(1)
    result = asyncio.run(_run(cli, code, withhold))
    what = "finished the interrupted upload: " if result.resumed else ""
    if result.already_published:
        click.echo(
            f"{what}the key server already had these {result.keys_published} keys from the "
            "first attempt (only its answer was lost). Thank you for reporting."
        )
        return
    click.echo(
        f"{what}published {result.keys_published} keys (the server accepted "
        f"{result.inserted}). Thank you for reporting."
    )
    if result.partial:
        click.echo("The key server did not accept some keys; the others were published.")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _serve(server: LocalKeyServer, public_key_file: Path, issue: bool) -> None:
    try:
        url = await server.start()
    except OSError as exc:
        raise NetworkError(
            f"cannot listen on {server.host}:{server.port}: {exc.strerror or exc}"
        ) from None
    server.write_public_key(public_key_file)
    click.echo(f"test key server at {url}")
    click.echo(
        f"export-signing public key ({server.key_id}-{server.key_version}), "
        f"written to {public_key_file}:"
    )
    click.echo(server.public_key_pem.decode("ascii").rstrip())
    click.echo(f"admin API key (POST {url}/api/issue): {server.admin_key}")
    if server.api_key_kept_in is not None:
        click.echo(f"device API key: generated at first start, kept in {server.api_key_kept_in}")
    click.echo("config for agents:")
    shown = server.api_key_kept_in is None  # given, or generated now: printed this once
    click.echo(server.config_toml(public_key_file, show_api_key=shown).rstrip())
    if issue:
        click.echo(f"verification code: {server.issue_code()}")
    try:
        await wait_for_stop_signal()
    finally:
        await server.stop()


@click.command("keyserver")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8080, show_default=True, type=int, help="0 picks a free port.")
@click.option(
    "--data-dir-for-server",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the signing keys and published exports here across restarts.",
)
@click.option("--issue-code", is_flag=True, help="Issue one verification code and print it.")
@click.option(
    "--api-key",
    default=None,
    help="Device X-API-Key [generated at first start, printed once, kept 0600 in "
    "DIR/device-api-key].",
)
@click.option(
    "--health-authority-id", default="contact-agent-test", show_default=True, help="Expected ID."
)
@click.option("--no-embargo", is_flag=True, help="Publish still-valid keys at once (tests).")
@click.option(
    "--fake-keys",
    default=0,
    show_default=True,
    type=click.IntRange(0, 100),
    help="Random fake keys added per published key (padding that hides the real ones).",
)
@click.option(
    "--public-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the public key PEM "
    "[DIR/export-public-key.pem, else ./keyserver-public-key.pem].",
)
def keyserver(
    host: str,
    port: int,
    data_dir_for_server: Path | None,
    issue_code: bool,
    api_key: str | None,
    health_authority_id: str,
    no_embargo: bool,
    fake_keys: int,
    public_key_file: Path | None,
) -> None:
    """Run the local test key server (verification + publish + signed exports)."""
    from agent.lab.keyserver import LocalKeyServer

    if not _is_loopback(host):
        click.echo(
            f"contact-agent: warning: serving plain HTTP on {host}; agents accept http only "
            "for loopback addresses, so put a TLS proxy in front",
            err=True,
        )
    if public_key_file is None:
        public_key_file = (
            data_dir_for_server / "export-public-key.pem"
            if data_dir_for_server
            else Path("keyserver-public-key.pem")
        )
    server = LocalKeyServer(
        host=host,
        port=port,
        api_key=api_key,
        health_authority_id=health_authority_id,
        embargo=not no_embargo,
        fake_keys_per_key=fake_keys,
        data_dir=data_dir_for_server,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(server, public_key_file.resolve(), issue_code))


COMMANDS = [report, keyserver]
