"""``contact-agent match FILE.zip...`` and ``contact-agent fetch``: verify, match, report.

``fetch`` contacts no server while consent is off (exit 1, one line); ``match`` of local
files needs no consent. Both refuse to match while the clock is untrusted
(``[clock] require_sync``; the systemd time-sync marker and the stored lower bound of true
time). Exports are verified before anything else happens: one bad file fails ``match``
as a whole (exit 1, nothing stored).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
from collections.abc import Sequence
from pathlib import Path

import click

from agent import netlog
from agent.cli import CliContext, pass_cli
from agent.cli._common import TerminalProgress
from agent.clock import Clock, SystemClock, TrustDecision
from agent.clocksync import current_trust, marker_synchronized
from agent.constants import RETENTION_SECONDS
from agent.control import DaemonNotRunningError, request
from agent.errors import (
    AgentError,
    ClockUntrustedError,
    ConfigError,
    ConsentError,
    ExportFileError,
    MalformedInputError,
)
from agent.export import MAX_EXPORT_BYTES, PublicKeyRing
from agent.export.container import open_export_zip
from agent.interchange import window_json
from agent.jsonout import dumps
from agent.models import ExposureWindow, ReportType
from agent.pipeline import (
    CycleReport,
    ExportInput,
    FetchReport,
    config_ring,
    fetch_and_match,
    match_exports,
)
from agent.sources import make_session
from agent.store import Store

DAEMON_FETCH_TIMEOUT = 900.0
"""A daemon's fetch of millions of keys on a Pi takes minutes."""


class FetchFailedError(AgentError):
    """Some sources or files failed, or the key server's clock disagrees with ours."""


def _window_line(window: ExposureWindow) -> str:
    when = dt.datetime.fromtimestamp(window.start, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"  {when}  {window.duration_seconds // 60:3d} min  "
        f"min {window.min_attenuation_db} dB  typical {window.typical_attenuation_db} dB  "
        f"{ReportType(window.report_type).name.lower()}  score {window.score:g}"
    )


def _print_cycle(cycle: CycleReport) -> None:
    click.echo(
        f"files: {len(cycle.files_processed)} processed, {len(cycle.files_skipped)} already "
        f"processed, {len(cycle.files_rejected)} rejected"
    )
    for name, reason in cycle.files_rejected:
        click.echo(f"  rejected {name}: {reason}")
    click.echo(f"keys: {cycle.keys} checked, {cycle.matched_keys} matched")
    if cycle.revoked_windows_removed:
        click.echo(f"revoked: {cycle.revoked_windows_removed} earlier exposure windows removed")
    click.echo(f"exposure windows: {len(cycle.windows)} ({len(cycle.new_window_ids)} new)")
    for window in cycle.windows:
        click.echo(_window_line(window))
    for exposure in cycle.new_exposures:
        day = dt.datetime.fromtimestamp(exposure.day, dt.UTC).strftime("%Y-%m-%d")
        click.echo(f"possible exposure on {day}: about {exposure.minutes:.0f} weighted minutes")


_WHY_NOT_MATCHED = {
    "rolling_start_too_old": "keys dropped by the rules: rolling start older than 15 days",
    "rolling_start_in_future": "keys dropped by the rules: rolling start in the future",
    "days_since_onset": "keys dropped by the rules: days since onset outside -14..14",
    "duplicate": "keys dropped by the rules: duplicates within a file",
    "key_length": "keys dropped by the rules: not 16 bytes long",
    "rolling_period": "keys dropped by the rules: invalid rolling period",
    "rolling_start_negative": "keys dropped by the rules: negative rolling start",
    "duplicate_keys": "keys counted once: the same key in several files",
    "unsighted_key_skipped": "keys checked but outside the time window of every sighting",
    "own_key_skipped": "keys skipped: our own",
    "recursive_key_skipped": "keys skipped: recursive reports",
    "revoked_key": "keys are revocations",
}
"""The pipeline's counters of keys not matched, as a person reads them; other counters
(sightings dropped by the matching rules) are shown with their own names."""
_SKIPPED_AT_SEARCH = ("unsighted_key_skipped", "own_key_skipped", "recursive_key_skipped")
"""Counted among the keys checked, but left out of the search."""


def explain_count(cycle: CycleReport, sightings: tuple[float, float] | None) -> list[str]:
    """Why ``keys: N checked, M matched`` says what it says: the keys dropped or skipped
    and why, and the time range of the stored sightings that keys can match."""
    lines = []
    for name, count in sorted(cycle.counters.items(), key=lambda item: -item[1]):
        what = _WHY_NOT_MATCHED.get(name, name.replace("_", " "))
        lines.append(f"  {count} {what}")
    skipped = sum(cycle.counters[name] for name in _SKIPPED_AT_SEARCH)
    unheard = cycle.keys - cycle.matched_keys - skipped
    if unheard > 0:
        lines.append(f"  {unheard} keys checked: none of their identifiers was heard")
    if sightings is None:
        lines.append("sightings: none stored in the last 14 days, so no key can match")
    else:
        first, last = (
            dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M") for t in sightings
        )
        lines.append(f"sightings: from {first} to {last} UTC (keys match only inside it)")
    return lines


async def _trust(store: Store, clock: Clock, require_sync: bool) -> TrustDecision:
    trust = await current_trust(
        store, clock.wall(), require_sync=require_sync, synchronized=marker_synchronized()
    )
    return trust.decision


def _untrusted(trust: TrustDecision) -> ClockUntrustedError:
    return ClockUntrustedError(
        f"not matching: {trust.reason} (wait for time synchronisation, or set "
        "[clock] require_sync = false on a device with a trusted clock)"
    )


async def _match(
    cli: CliContext, files: Sequence[Path], ring: functools.partial[PublicKeyRing]
) -> tuple[CycleReport, tuple[float, float] | None]:
    exports = []
    for path in files:
        try:
            exports.append(ExportInput(path.name, path.read_bytes()))
        except OSError as exc:
            raise MalformedInputError(f"cannot read {path}: {exc.strerror}") from None
        try:  # the file first: "not a ZIP" says more than "the clock is not trusted"
            open_export_zip(exports[-1].content, max_bytes=MAX_EXPORT_BYTES)
        except ExportFileError as exc:
            raise ExportFileError(f"{path.name}: {exc}") from None
    clock = SystemClock()
    async with await Store.open(cli.data_dir) as store:
        trust = await _trust(store, clock, cli.config.clock.require_sync)
        if not trust.state.trusted:
            raise _untrusted(trust)
        now = clock.wall()
        cycle = await match_exports(
            store,
            exports,
            ring=ring,
            risk=cli.config.risk,
            now=now,
            skip_processed=False,
            strict=True,
            source="match",
            consume=True,
        )
        sightings = await store.sighting_time_range(now - RETENTION_SECONDS)
    return cycle, sightings


@click.command("match")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--public-key",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The signer's P-256 public key (PEM, or base64 of the DER key).",
)
@click.option("--key-id", default="", help="Accept only signatures with this key id.")
@click.option("--key-version", default="", help="Accept only signatures with this version.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_cli
def match(
    cli: CliContext,
    files: tuple[Path, ...],
    public_key: Path,
    key_id: str,
    key_version: str,
    as_json: bool,
) -> None:
    """Verify diagnosis-key exports, then match them against the local sightings."""
    try:
        pem = public_key.read_bytes()
    except OSError as exc:
        raise MalformedInputError(f"cannot read {public_key}: {exc.strerror}") from None
    PublicKeyRing.from_pem(pem, key_id, key_version)  # a bad key fails here, clearly
    ring = functools.partial(PublicKeyRing.from_pem, pem, key_id, key_version)
    cycle, sightings = asyncio.run(_match(cli, files, ring))
    if as_json:
        payload = {
            "matched_keys": cycle.matched_keys,
            "exposure_windows": [window_json(w) for w in cycle.windows],
        }
        click.echo(dumps(payload))
    else:
        _print_cycle(cycle)
        for line in explain_count(cycle, sightings):
            click.echo(line)


async def _fetch(cli: CliContext, show_progress: bool) -> FetchReport:
    config = cli.config
    if not config.keys.sources:
        raise ConfigError("config: [keys] sources is empty: there is nothing to fetch from")
    ring = config_ring(config, cli.config_path.parent)
    clock = SystemClock()
    progress = TerminalProgress() if show_progress else None
    async with await Store.open(cli.data_dir) as store:
        if not (await store.consent()).enabled:
            raise ConsentError(
                "not fetching: consent is off, so the agent contacts no server "
                "(run `contact-agent enable`; `match FILE` works without it)"
            )
        trust = await _trust(store, clock, config.clock.require_sync)
        if not trust.state.trusted:
            raise _untrusted(trust)
        network_log = netlog.install(store.add_network_contacts, clock)
        try:
            async with make_session() as session:
                return await fetch_and_match(
                    store, config, session, clock=clock, trust=trust, ring=ring, progress=progress
                )
        finally:
            await network_log.close()
            if progress is not None:
                progress.close()


def _fetch_by_daemon(cli: CliContext, as_json: bool) -> bool:
    """Ask a running daemon to fetch (its notifier, no concurrent cycle); False: none runs."""
    try:
        result = request(cli.socket_paths(), "fetch", timeout=DAEMON_FETCH_TIMEOUT)
    except DaemonNotRunningError:
        return False
    if as_json:
        click.echo(dumps(result))
    else:
        click.echo("the running daemon fetched:")
        for name, value in result.items():
            click.echo(f"  {name}: {value}")
    if "skipped" in result:
        raise FetchFailedError(f"the daemon skipped the fetch: {result['skipped']}")
    if not result.get("ok", False):
        raise FetchFailedError(
            str(result.get("error") or result.get("refused") or "the fetch had problems")
        )
    return True


@click.command("fetch")
@click.option("--json", "as_json", is_flag=True, help="Print the fetch summary as JSON.")
@pass_cli
def fetch(cli: CliContext, as_json: bool) -> None:
    """Download new diagnosis keys from the configured sources, verify and match them now.

    When the daemon runs, it does the cycle (and notifies); otherwise this process does.
    """
    if _fetch_by_daemon(cli, as_json):
        return
    report = asyncio.run(_fetch(cli, show_progress=TerminalProgress.wanted() and not as_json))
    if as_json:
        summary = report.summary(0)
        summary.pop("at")
        if report.cycle is not None:
            summary["exposure_windows"] = [window_json(w) for w in report.cycle.windows]
            summary["new_exposures"] = [
                {"day": e.day, "minutes": e.minutes, "windows": len(e.window_ids)}
                for e in report.cycle.new_exposures
            ]
        click.echo(dumps(summary))
    else:
        click.echo(f"downloaded {len(report.downloaded)} files")
        for name, reason in report.failed:
            click.echo(f"  failed {name}: {reason}")
        if report.cycle is not None:
            _print_cycle(report.cycle)
    if report.refused is not None:
        raise FetchFailedError(report.refused)
    problems = len(report.failed) + (len(report.cycle.files_rejected) if report.cycle else 0)
    if problems:
        raise FetchFailedError(f"{problems} source(s) or file(s) failed; see above")


COMMANDS = [match, fetch]
