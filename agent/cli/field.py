"""``contact-agent mark`` and ``contact-agent field ...``: the two-device field-test kit."""

from __future__ import annotations

import contextlib
import functools
import math
import sys
from collections.abc import Callable
from pathlib import Path

import click

from agent.cli import CliContext, pass_cli
from agent.clock import SystemClock
from agent.config import Config
from agent.errors import ConfigError, MalformedInputError
from agent.field import preflight as pf
from agent.field.marks import (
    MARKS_FILE_NAME,
    append_mark,
    format_time,
    load_marks,
    new_mark,
    parse_time,
)
from agent.field.report import ReportSettings, analyse
from agent.field.timeoffset import (
    DEFAULT_PORT,
    OffsetEstimate,
    TimeServer,
    measure_offset,
    parse_peer,
)
from agent.jsonout import dumps
from agent.paths import ensure_private_dir


def _parse_distance(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise click.BadParameter(
            f"must be a number of metres, got {text!r}", param_hint="--distance"
        ) from None
    if not math.isfinite(value):
        raise click.BadParameter("must be a finite number of metres", param_hint="--distance")
    return value


@click.command("mark")
@click.option("--distance", "distance_text", default=None, help="Metres between the devices.")
@click.option("--note", default="", help="What the place is like (one line).")
@click.option("--wall", is_flag=True, help="A wall or another obstacle is between them.")
@click.option("--at", "at_text", default=None, help="Unix seconds or ISO 8601 (default: now).")
@click.option("--end", is_flag=True, help="The test is over: nothing after this counts.")
@pass_cli
def mark(
    cli: CliContext,
    distance_text: str | None,
    note: str,
    wall: bool,
    at_text: str | None,
    end: bool,
) -> None:
    """Append a ground-truth mark ("from now on the devices are D m apart")."""
    if end == (distance_text is not None):
        raise click.UsageError("give either --distance METRES or --end")
    distance = None if end else _parse_distance(str(distance_text))
    try:  # every input here is an option value: a bad one is a usage error (exit 2)
        when = parse_time(at_text) if at_text is not None else SystemClock().wall()
        entry = new_mark(distance_m=distance, time=when, note=note, wall=wall)
    except MalformedInputError as exc:
        raise click.UsageError(str(exc)) from None
    path = ensure_private_dir(cli.data_dir) / MARKS_FILE_NAME  # no planted link followed
    number = append_mark(path, entry)
    where = f" ({entry.note})" if entry.note else ""
    click.echo(f"mark {number}: {entry.label} at {format_time(entry.time)}{where} -> {path}")


@click.group("field")
def field() -> None:
    """Field tests between two devices: preflight, time server, report."""


def _config_or_error(cli: CliContext) -> tuple[Config | None, str | None]:
    try:
        return cli.config, None
    except ConfigError as exc:
        return None, str(exc)


@field.command("preflight")
@click.option("--adapter", default=None, help="Adapter to check (default: radio.adapter).")
@click.option("--peer", default=None, help="HOST[:PORT] of the other device's time server.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_cli
def preflight(cli: CliContext, adapter: str | None, peer: str | None, as_json: bool) -> None:
    """Check adapter, BlueZ, -E, clock and the offset to the peer; exit 1 on any fail."""
    config, config_error = _config_or_error(cli)
    measure: Callable[[], OffsetEstimate] | None = None
    if peer is not None:
        host, port = parse_peer(peer)
        measure = functools.partial(measure_offset, host, port)

    inputs = pf.PreflightInputs(
        adapter=adapter or (config.radio.adapter if config else "hci0"),
        data_dir=cli.data_dir,
        config=config,
        config_error=config_error,
        measure=measure,
    )
    checks = pf.run_preflight(inputs)
    ok = pf.overall_ok(checks)
    if as_json:
        click.echo(dumps({"ok": ok, "checks": [c.to_json() for c in checks]}, indent=1))
    else:
        for check in checks:
            click.echo(f"{check.status}: {check.summary}  [{check.name}]")
            if check.fix and check.status is not pf.Status.OK:
                click.echo(f"      fix: {check.fix}")
    if not ok:
        sys.exit(1)


@field.command("time-server")
@click.option("--bind", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(0, 65535))
@click.option("--duration", default=None, type=float, help="Stop after this many seconds.")
def time_server(bind: str, port: int, duration: float | None) -> None:
    """Answer the peer's clock-offset requests (UDP) until Ctrl-C."""
    with TimeServer(bind, port) as server:
        host, real_port = server.address
        click.echo(f"time server on {host} port {real_port} (UDP); Ctrl-C stops it", err=True)
        with contextlib.suppress(KeyboardInterrupt):
            server.serve(duration)
        click.echo(f"answered {server.answered} request(s)", err=True)


@field.command("report")
@click.argument("log_a", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("log_b", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--marks", "marks_path", required=True, type=click.Path(dir_okay=False,
              path_type=Path), help="marks.jsonl (taken on device A's clock).")
@click.option("--out", "out_dir", default=Path("field-report"), show_default=True,
              type=click.Path(file_okay=False, path_type=Path))
@click.option("--tx-power", type=int, default=None,
              help="Assumed TX power (dBm) without peer keys (default: radio.tx_power_dbm).")
@click.option("--keys", "key_files", multiple=True, type=click.Path(dir_okay=False,
              path_type=Path), help="A peer's `keys export-own` ZIP (repeatable).")
@click.option("--public-key", "public_keys", multiple=True, type=click.Path(dir_okay=False,
              path_type=Path), help="PEM that verifies a --keys file (repeatable).")
@click.option("--offset-b", default=0.0, type=float, show_default=True,
              help="B's clock minus A's, in seconds (from `field preflight --peer`).")
@click.option("--gap-seconds", default=60.0, type=float, show_default=True)
@click.option("--bin-db", default=5, type=click.IntRange(1, 50), show_default=True)
@click.option("--scan-period", default=60.0, type=float, show_default=True,
              help="Seconds per scan instance when the log does not say.")
@click.option("--name-a", default="A", show_default=True)
@click.option("--name-b", default="B", show_default=True)
@click.option("--no-plots", is_flag=True, help="Markdown/HTML only.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_cli
def report(
    cli: CliContext,
    log_a: Path,
    log_b: Path,
    marks_path: Path,
    out_dir: Path,
    tx_power: int | None,
    key_files: tuple[Path, ...],
    public_keys: tuple[Path, ...],
    offset_b: float,
    gap_seconds: float,
    bin_db: int,
    scan_period: float,
    name_a: str,
    name_b: str,
    no_plots: bool,
    as_json: bool,
) -> None:
    """Report from two exported logs (LOG_A heard by A, LOG_B heard by B) and the marks."""
    from agent.field.files import load_keys, load_log, write_report

    if tx_power is not None and not -127 <= tx_power <= 127:
        raise click.BadParameter(
            f"must be in -127..127 dBm, got {tx_power}", param_hint="--tx-power"
        )
    if not gap_seconds > 0 or not scan_period > 0 or not math.isfinite(offset_b):
        raise click.UsageError("--gap-seconds and --scan-period must be > 0")
    if name_a == name_b:
        raise click.UsageError("--name-a and --name-b must differ")
    config = cli.config
    settings = ReportSettings(
        tx_power_dbm=config.radio.tx_power_dbm if tx_power is None else tx_power,
        gap_seconds=gap_seconds,
        bin_db=bin_db,
        scan_period_seconds=scan_period,
        offset_b_seconds=offset_b,
        names=(name_a, name_b),
        risk=config.risk,
    )
    keys = load_keys(key_files, public_keys)
    result = analyse(load_log(log_a), load_log(log_b), load_marks(marks_path), settings, keys)
    files = write_report(result, out_dir, with_plots=not no_plots)
    if as_json:
        click.echo(files.json.read_text(encoding="utf-8"), nl=False)
        return
    for direction in result.directions:
        latencies = ", ".join(
            f"{s.segment.mark.label}: "
            + ("not seen" if s.latency_seconds is None else f"{s.latency_seconds:.1f} s")
            for s in direction.segments
        )
        click.echo(f"{direction.label}: {direction.total_sightings} sightings; latency {latencies}")
    for note in files.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(f"report: {files.markdown} and {files.html}")


COMMANDS = [mark, field]
