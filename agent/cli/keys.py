"""``contact-agent keys ...``: derive RPIs and AEMs; inspect and verify exports."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from agent import crypto
from agent.cli import CliContext, pass_cli
from agent.cli._common import parse_hex
from agent.clock import SystemClock, en_interval_number
from agent.constants import (
    EN_INTERVAL_SECONDS,
    METADATA_LENGTH,
    RETENTION_DAYS,
    TEK_LENGTH,
    TEK_ROLLING_PERIOD,
)
from agent.errors import AgentError, ExportFileError, MalformedInputError
from agent.jsonout import dumps
from agent.models import ReportType, TemporaryExposureKey

if TYPE_CHECKING:  # `keys derive` needs neither the export reader (numpy) nor the store
    from agent.export import KeyArrays, PublicKeyRing, ReadExport


@click.group()
def keys() -> None:
    """Work with Temporary Exposure Keys and diagnosis-key exports."""


def derive_table(tek: bytes, start: int, count: int, metadata: bytes | None) -> dict[str, object]:
    """The vector table for ``count`` intervals from ``start`` (same shape as the spec's)."""
    rpik = crypto.derive_rpik(tek)
    aemk = crypto.derive_aemk(tek)
    rows: list[dict[str, object]] = []
    for j, rpi in enumerate(crypto.rpis(rpik, start, count)):
        row: dict[str, object] = {"i": j, "rpi": rpi.hex()}
        if metadata is not None:
            row["aem"] = crypto.encrypt_aem(aemk, rpi, metadata).hex()
        rows.append(row)
    table: dict[str, object] = {
        "KEY_GENERATION_SECONDS": start * 600,
        "CTINTERVAL_NUMBER_OF_GENERATED_KEY": start,
        "TEK": tek.hex(),
        "RPIK": rpik.hex(),
        "AEMK": aemk.hex(),
    }
    if metadata is not None:
        table["BLE_METADATA"] = metadata.hex()
    table["advertised"] = rows
    return table


@keys.command("derive")
@click.option("--tek", required=True, help="Temporary Exposure Key, 32 hex digits.")
@click.option("--start", required=True, type=int, help="First ENIntervalNumber.")
@click.option(
    "--count",
    default=TEK_ROLLING_PERIOD,
    show_default=True,
    type=int,
    help="Number of intervals.",
)
@click.option("--metadata", default=None, help="4 metadata bytes in hex, e.g. 40080000.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the test-vector layout).")
def derive(tek: str, start: int, count: int, metadata: str | None, as_json: bool) -> None:
    """RPI (and AEM when metadata is given) for intervals START..START+COUNT-1."""
    tek_bytes = parse_hex("--tek", tek, TEK_LENGTH)
    meta = parse_hex("--metadata", metadata, METADATA_LENGTH) if metadata is not None else None
    if start < 0:
        raise click.BadParameter(f"must not be negative, got {start}", param_hint="--start")
    if start > 0xFFFFFFFF:
        raise click.BadParameter("interval number must be in 0..2^32-1", param_hint="--start")
    if not 1 <= count <= 10_000:
        raise click.BadParameter(f"must be in 1..10000, got {count}", param_hint="--count")
    table = derive_table(tek_bytes, start, count, meta)
    if as_json:
        click.echo(dumps(table, indent=1))
        return
    click.echo(f"RPIK {table['RPIK']}\nAEMK {table['AEMK']}")
    rows = table["advertised"]
    assert isinstance(rows, list)
    for row in rows:
        line = f"{row['i']:4d} {start + row['i']:9d} {row['rpi']}"
        if "aem" in row:
            line += f" {row['aem']}"
        click.echo(line)


# --- diagnosis-key exports -------------------------------------------------------------
def _read_file(path: Path, what: str, cap: int) -> bytes:
    try:
        size = path.stat().st_size
        if size > cap:
            raise MalformedInputError(f"{what} {path} is {size} bytes, over the cap of {cap}")
        return path.read_bytes()
    except OSError as exc:
        raise MalformedInputError(f"cannot read {what} {path}: {exc.strerror}") from None


def _ring(public_key: Path, key_id: str, key_version: str) -> PublicKeyRing:
    from agent.export import PublicKeyRing

    data = _read_file(public_key, "--public-key", 64 * 1024)
    try:
        return PublicKeyRing.from_pem(data, key_id, key_version)
    except MalformedInputError as exc:
        raise MalformedInputError(f"--public-key {public_key}: {exc}") from None


def _read_export(path: Path, ring: PublicKeyRing | None) -> ReadExport:
    """The export through the one reader, keys as columns; verified only with ``ring``."""
    from agent.export import MAX_EXPORT_BYTES, read_export

    data = _read_file(path, "export", MAX_EXPORT_BYTES)
    try:
        return read_export(data, ring)
    except ExportFileError as exc:
        raise type(exc)(f"{path}: {exc}") from None


def _key_json(key: TemporaryExposureKey) -> dict[str, Any]:
    return {
        "key_data": key.key_data.hex(),
        "rolling_start_interval_number": key.rolling_start_interval_number,
        "rolling_period": key.rolling_period,
        "transmission_risk_level": key.transmission_risk_level,
        "report_type": key.report_type.name,
        "days_since_onset_of_symptoms": key.days_since_onset_of_symptoms,
    }


ROWS_PER_WRITE = 10_000
"""Rows formatted and written together: one write per batch, not per key."""


def _echo_batched(chunks: Iterable[str]) -> None:
    batch: list[str] = []
    for chunk in chunks:
        batch.append(chunk)
        if len(batch) == ROWS_PER_WRITE:
            click.echo("".join(batch), nl=False)
            batch.clear()
    click.echo("".join(batch), nl=False)


def export_json(
    path: Path, read: ReadExport, marks: tuple[str, str] | None = None
) -> dict[str, Any]:
    """The ``keys show --json`` object; with ``marks`` its ``keys`` and ``revised_keys``
    lists are these strings, which :func:`_json_chunks` replaces by the rows."""
    from agent.export.parse import header_fields

    parsed = read.parsed
    header = header_fields(parsed.message)
    return {
        "file": str(path),
        "sha256": read.sha256.hex(),
        "verified": read.verified_by is not None,
        "verified_by": read.verified_by.label if read.verified_by else None,
        "region": header["region"],
        "batch_num": header["batch_num"],
        "batch_size": header["batch_size"],
        "start_timestamp": header["start_timestamp"],
        "end_timestamp": header["end_timestamp"],
        "signature_infos": [
            {"key_id": i.key_id, "key_version": i.key_version, "algorithm": i.algorithm}
            for i in header["signature_infos"]
        ],
        "signature_count": read.signature_count,
        "key_count": len(parsed.keys),
        "keys": marks[0] if marks else [_key_json(k) for k in parsed.keys],
        "revised_keys": marks[1] if marks else [_key_json(k) for k in parsed.revised_keys],
        "dropped": dict(parsed.dropped),
    }


def _json_chunks(path: Path, read: ReadExport) -> Iterator[str]:
    """``dumps(object, indent=1)`` of the whole object, the key lists streamed row by row
    (a million keys are never a million dicts nor one string)."""
    marks = (f"keys {secrets.token_hex(16)}", f"revised {secrets.token_hex(16)}")
    text = dumps(export_json(path, read, marks), indent=1)
    for mark, keys in zip(marks, (read.parsed.keys, read.parsed.revised_keys), strict=True):
        head, text = text.split(dumps(mark), 1)  # a header field cannot guess the mark
        yield head
        if not len(keys):
            yield "[]"
            continue
        yield "["
        for i in range(len(keys)):
            row = dumps(_key_json(keys[i]), indent=1).replace("\n", "\n  ")
            yield f"{',' if i else ''}\n  {row}"
        yield "\n ]"
    yield text + "\n"


def _utc(seconds: int) -> str:
    try:
        return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return "out of range"


def _print_keys(title: str, keys: KeyArrays) -> None:
    click.echo(f"{title}: {len(keys)}")
    if len(keys):
        click.echo("  key_data                          start    period tr report_type   dso")

    def lines() -> Iterator[str]:
        for i in range(len(keys)):  # one key object at a time
            k = keys[i]
            dso = "-" if k.days_since_onset_of_symptoms is None else k.days_since_onset_of_symptoms
            yield (
                f"  {k.key_data.hex()}  {k.rolling_start_interval_number:<8d} "
                f"{k.rolling_period:<6d} {k.transmission_risk_level:<2d} "
                f"{k.report_type.name.lower():<13s} {dso}\n"
            )

    _echo_batched(lines())


def _print_export(path: Path, read: ReadExport) -> None:
    from agent.export.parse import header_fields

    export = header_fields(read.parsed.message)
    if read.verified_by is not None:
        click.echo(f"{path}: VERIFIED (signature {read.verified_by.label})")
    else:
        click.echo(f"{path}: UNVERIFIED (not checked; give --public-key to verify)")
    click.echo(f"sha256: {read.sha256.hex()}")
    click.echo(
        f"region: {export['region'] or '-'}  batch {export['batch_num']}/{export['batch_size']}"
    )
    start, end = export["start_timestamp"], export["end_timestamp"]
    click.echo(f"window: {_utc(start)} .. {_utc(end)} ({start}..{end})")
    infos = ", ".join(
        f"{i.label} ({i.algorithm or 'no algorithm'})" for i in export["signature_infos"]
    )
    click.echo(f"signature infos: {infos or 'none'}")
    click.echo(f"signatures in export.sig: {read.signature_count}")
    if read.parsed.dropped:
        dropped = ", ".join(f"{reason} {n}" for reason, n in sorted(read.parsed.dropped.items()))
        click.echo(f"unreadable keys dropped: {dropped}")
    _print_keys("keys", read.parsed.keys)
    if len(read.parsed.revised_keys):
        _print_keys("revised keys", read.parsed.revised_keys)


_public_key_option = click.option(
    "--public-key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Signing public key: PEM, or base64 of the DER SubjectPublicKeyInfo.",
)
_key_id_option = click.option("--key-id", default="", help="Pin the key id (e.g. 310).")
_key_version_option = click.option("--key-version", default="", help="Pin the key version.")


@click.command("show")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@_public_key_option
@_key_id_option
@_key_version_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def show(file: Path, public_key: Path | None, key_id: str, key_version: str, as_json: bool) -> None:
    """Header, signature infos and keys of a diagnosis-key export.

    Without --public-key nothing is verified and the output says UNVERIFIED.
    """
    ring = _ring(public_key, key_id, key_version) if public_key else None
    read = _read_export(file, ring)
    if as_json:
        _echo_batched(_json_chunks(file, read))
    else:
        _print_export(file, read)


@click.command("verify")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--public-key",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Signing public key: PEM, or base64 of the DER SubjectPublicKeyInfo.",
)
@_key_id_option
@_key_version_option
def verify(file: Path, public_key: Path, key_id: str, key_version: str) -> None:
    """Verify an export's signature: exit 0 and the key count, or exit 1 and why."""
    read = _read_export(file, _ring(public_key, key_id, key_version))
    signer = read.verified_by.label if read.verified_by else "?"
    parsed = read.parsed
    extra = f", {len(parsed.revised_keys)} revised" if len(parsed.revised_keys) else ""
    click.echo(
        f"verified {len(parsed.keys)} keys{extra} (region {parsed.message.region or '-'}, "
        f"signature {signer}, sha256 {read.sha256.hex()[:16]}...)"
    )


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (mode 0600) via a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as stream:
        stream.write(data)
    os.replace(tmp, path)


async def _own_keys(data_dir: Path, now_interval: int) -> list[TemporaryExposureKey]:
    from agent.store import DB_FILENAME, Store

    if not (data_dir / DB_FILENAME).exists():
        raise AgentError(f"no database in {data_dir}: no own keys to export")
    store = await Store.open(data_dir)
    try:
        teks = await store.load_own_teks()
    finally:
        await store.close()
    oldest = now_interval - RETENTION_DAYS * TEK_ROLLING_PERIOD
    return [
        TemporaryExposureKey(
            key_data=t.key_data,
            rolling_start_interval_number=t.rolling_start_interval_number,
            rolling_period=t.rolling_period,
            report_type=ReportType.CONFIRMED_TEST,
        )
        for t in teks
        if t.end_interval_number > oldest and t.rolling_start_interval_number <= now_interval
    ]


@click.command("export-own")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("own-keys.zip"),
    show_default=True,
    help="Export file to write.",
)
@click.option(
    "--signing-key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="P-256 private key (PEM); default: a throwaway key whose public PEM is written "
    "next to the export.",
)
@click.option("--key-id", default="310", show_default=True, help="Signature key id.")
@click.option("--key-version", default="v1", show_default=True, help="Signature key version.")
@click.option("--region", default="ZZ", show_default=True, help="Region written in the export.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_cli
def export_own(
    cli: CliContext,
    output: Path,
    signing_key: Path | None,
    key_id: str,
    key_version: str,
    region: str,
    yes: bool,
) -> None:
    """Own keys of the last 14 days as a signed GAEN export (FIELD TESTS ONLY)."""
    from agent.export import generate_signing_key, load_signing_key, public_key_pem, write_export

    if not yes:
        click.confirm(
            "This writes your own Temporary Exposure Keys of the last 14 days, including "
            "today's key that is still on air, to a file. Anyone holding it can recognise "
            "this device's broadcasts of those days. Only for field tests. Continue?",
            abort=True,
        )
    private = (
        load_signing_key(_read_file(signing_key, "--signing-key", 64 * 1024))
        if signing_key
        else generate_signing_key()
    )
    now = SystemClock().wall()
    own = asyncio.run(_own_keys(cli.data_dir, en_interval_number(now)))
    if not own:
        raise AgentError(f"no own keys of the last {RETENTION_DAYS} days in {cli.data_dir}")
    data = write_export(
        own,
        private,
        key_id=key_id,
        key_version=key_version,
        region=region,
        start_timestamp=min(k.rolling_start_interval_number for k in own) * EN_INTERVAL_SECONDS,
        end_timestamp=int(now),
    )
    try:
        _write_private(output, data)
        message = f"wrote {len(own)} own keys to {output} (signature {key_id}-{key_version})"
        if signing_key is None:
            pub = output.with_name(output.stem + ".pub.pem")
            pub.write_bytes(public_key_pem(private))
            message += f"; verify with: contact-agent keys verify {output} --public-key {pub}"
    except OSError as exc:
        raise AgentError(f"cannot write {exc.filename}: {exc.strerror}") from None
    click.echo(message)


keys.add_command(show)
keys.add_command(verify)
keys.add_command(export_own)

COMMANDS = [keys]
