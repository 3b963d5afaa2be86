"""``contact-agent import|export|purge|forget``: data in, data out, and deletion.

Only ``export sightings`` prints identifiers (that is its job); own keys are never
exported. Files written by ``export -o`` are created 0600 and appear only when complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TextIO, TypeVar

import click

from agent.cli import CliContext, pass_cli
from agent.clock import SystemClock
from agent.clocksync import current_trust
from agent.constants import RETENTION_SECONDS, TEK_ROLLING_PERIOD
from agent.control import DaemonNotRunningError, request
from agent.errors import AgentError, MalformedInputError
from agent.interchange import (
    EXPOSURE_EXPORT_FIELDS,
    FORMATS,
    SIGHTING_FIELDS,
    RecordWriter,
    guess_format,
    parse_sightings,
    sighting_record,
    window_export_record,
)
from agent.keyschedule import KeySchedule
from agent.models import Sighting
from agent.store import PurgeResult, Store

T = TypeVar("T")

FORGET_TIMEOUT_SECONDS = 60.0
"""The daemon stops the radio and deletes with a checkpoint; that may take a while."""


def _with_store(data_dir: Path, work: Callable[[Store], Awaitable[T]]) -> T:
    async def run() -> T:
        async with await Store.open(data_dir) as store:
            return await work(store)

    return asyncio.run(run())


def parse_since(text: str | None) -> float:
    """``--since``: an ISO date or date-time, UTC unless an offset is given; 0 when absent."""
    if text is None:
        return 0.0
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.BadParameter(
            f"must be an ISO date like 2024-05-01 or 2024-05-01T12:00:00Z, got {text!r}",
            param_hint="--since",
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


# --- import ----------------------------------------------------------------------------
@click.group("import")
def import_group() -> None:
    """Load data from files."""


@import_group.command("sightings")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=None,
    help="File format (default: from the file name, else from its first character).",
)
@pass_cli
def import_sightings(cli: CliContext, file: Path, fmt: str | None) -> None:
    """Load sightings in the interchange format (all of FILE or, on any bad line, none)."""
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise AgentError(f"cannot read {file}: {exc.strerror or exc}") from None
    try:
        sightings = parse_sightings(data, fmt or guess_format(file.name, data))
    except MalformedInputError as exc:
        raise MalformedInputError(f"{file}: {exc}; nothing was imported") from None

    async def store_all(store: Store) -> None:
        await store.add_sightings(sightings)

    _with_store(cli.data_dir, store_all)
    click.echo(f"imported {len(sightings)} sightings from {file}")


# --- export ----------------------------------------------------------------------------
@click.group("export")
def export_group() -> None:
    """Write stored sightings or exposures as jsonl or csv (never own keys)."""


def _export_options(command: Callable[..., None]) -> Callable[..., None]:
    command = click.option(
        "-o",
        "--output",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Write to FILE (created 0600) instead of standard output.",
    )(command)
    command = click.option(
        "--since",
        default=None,
        metavar="ISO_DATE",
        help="Only records at or after this time (UTC unless an offset is given).",
    )(command)
    return click.option(
        "--format", "fmt", type=click.Choice(FORMATS), default="jsonl", show_default=True
    )(command)


@contextlib.contextmanager
def _output(path: Path | None) -> Iterator[TextIO]:
    """Standard output, or a private temporary file renamed to ``path`` on success."""
    if path is None:
        yield sys.stdout
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise AgentError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            yield out
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


async def _own_rpis(store: Store) -> frozenset[bytes]:
    """Every RPI our stored keys could have put on air (they never leave the device)."""
    teks = await store.load_own_teks()
    if not teks:
        return frozenset()
    newest = max(t.rolling_start_interval_number for t in teks)
    return KeySchedule(teks).own_rpis(newest + TEK_ROLLING_PERIOD)


@export_group.command("sightings")
@_export_options
@pass_cli
def export_sightings(cli: CliContext, fmt: str, since: str | None, output: Path | None) -> None:
    """Every stored sighting (time, rpi, aem, rssi), oldest first."""
    since_ts = parse_since(since)
    with _output(output) as out:
        writer = RecordWriter(out, fmt, SIGHTING_FIELDS)

        async def write_all(store: Store) -> None:
            own = await _own_rpis(store)  # reflections of our own beacons stay private
            sighting: Sighting
            async for sighting in store.iter_sightings(since_ts):
                if sighting.rpi not in own:
                    writer.write(sighting_record(sighting))

        _with_store(cli.data_dir, write_all)
    if output is not None:
        click.echo(f"exported {writer.count} sightings to {output}", err=True)


@export_group.command("exposures")
@_export_options
@pass_cli
def export_exposures(cli: CliContext, fmt: str, since: str | None, output: Path | None) -> None:
    """Stored exposure windows: start, duration, attenuations, report type, score, and
    the relay guard's reasons (possibly_relayed)."""
    since_ts = parse_since(since)
    windows = _with_store(cli.data_dir, lambda store: store.exposure_windows(since_ts))
    with _output(output) as out:
        writer = RecordWriter(out, fmt, EXPOSURE_EXPORT_FIELDS)
        for window in windows:
            writer.write(window_export_record(window))
    if output is not None:
        click.echo(f"exported {writer.count} exposure windows to {output}", err=True)


# --- purge and forget ------------------------------------------------------------------
async def purge_cutoff(cli: CliContext, store: Store, wall: float) -> tuple[float | None, str]:
    """The retention cutoff of the clock-trust rules and why: None when nothing is provably old."""
    trust = await current_trust(store, wall, require_sync=cli.config.clock.require_sync)
    decision, lower_bound = trust.decision, trust.lower_bound
    if decision.state.trusted:
        return wall - RETENTION_SECONDS, decision.reason
    if lower_bound is None:
        return None, f"{decision.reason} and no earlier good time is known"
    return lower_bound - RETENTION_SECONDS, f"{decision.reason}: using the last known good time"


def _describe(result: PurgeResult) -> str:
    when = dt.datetime.fromtimestamp(result.cutoff, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        f"{result.sightings} sightings",
        f"{result.own_teks} own keys",
        f"{result.exposure_windows} exposure windows",
        f"{result.daily_summaries} daily summaries",
        f"{result.scans} scans",
        f"{result.processed_files} key-file records",
        f"{result.network_contacts} network-log entries",
    ]
    if result.quarantined_copies:
        parts.append(f"{result.quarantined_copies} quarantined database copies")
    return f"deleted everything older than {when}: " + ", ".join(parts)


@click.command("purge")
@pass_cli
def purge(cli: CliContext) -> None:
    """Apply the 14-day retention now (the daemon also does it daily)."""

    async def run(store: Store) -> tuple[PurgeResult | None, str]:
        cutoff, reason = await purge_cutoff(cli, store, SystemClock().wall())
        return (None if cutoff is None else await store.purge(cutoff)), reason

    result, reason = _with_store(cli.data_dir, run)
    if result is None:
        click.echo(f"nothing deleted: {reason}, so no data is provably older than 14 days")
        return
    click.echo(_describe(result))
    if not result.checkpointed:
        click.echo(
            "warning: another process holds the database open; the deleted data leaves the "
            "write-ahead log at its next checkpoint",
            err=True,
        )


@click.command("forget")
@click.option("--yes", is_flag=True, help="Confirm that everything is to be deleted.")
@pass_cli
def forget(cli: CliContext, yes: bool) -> None:
    """Delete every own key, sighting, downloaded-key record and result, provably."""
    if not yes:
        if not sys.stdin.isatty():
            raise AgentError("forget deletes all data for good; run `contact-agent forget --yes`")
        click.confirm(
            "Delete all own keys, sightings and results for good? A later self-report "
            "will not be possible",
            abort=True,
        )

    async def run(store: Store) -> None:
        await store.forget()
        await store.set_consent(False, SystemClock().wall())

    try:  # a running daemon deletes (radio off first, nothing in memory written later)
        request(cli.socket_paths(), "forget", timeout=FORGET_TIMEOUT_SECONDS)
        by = " by the running daemon"
    except DaemonNotRunningError:
        _with_store(cli.data_dir, run)
        by = ""
    click.echo(f"all data deleted{by}; consent is off (`contact-agent enable` starts again)")


COMMANDS = [import_group, export_group, purge, forget]
