"""``contact-agent keys ...``: derive RPIs and AEMs; inspect and verify exports."""

from __future__ import annotations

import json

import click

from agent import crypto
from agent.cli._common import parse_hex
from agent.constants import METADATA_LENGTH, TEK_LENGTH, TEK_ROLLING_PERIOD
from agent.errors import MalformedInputError


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
        raise MalformedInputError(f"--start must not be negative, got {start}")
    if not 1 <= count <= 10_000:
        raise MalformedInputError(f"--count must be in 1..10000, got {count}")
    table = derive_table(tek_bytes, start, count, meta)
    if as_json:
        click.echo(json.dumps(table, indent=1))
        return
    click.echo(f"RPIK {table['RPIK']}\nAEMK {table['AEMK']}")
    rows = table["advertised"]
    assert isinstance(rows, list)
    for row in rows:
        line = f"{row['i']:4d} {start + row['i']:9d} {row['rpi']}"
        if "aem" in row:
            line += f" {row['aem']}"
        click.echo(line)


COMMANDS = [keys]
