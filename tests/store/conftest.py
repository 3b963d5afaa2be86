"""Fixtures for the store tests: a real database in a temporary data directory."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest

from agent.models import Sighting
from agent.store import DB_FILENAME, Store

T0 = 1_700_000_000.0
"""A fixed 'now' (2023-11-14 22:13:20 UTC)."""
AEM = b"\x40\x08\x00\x00"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
async def store(data_dir: Path) -> AsyncIterator[Store]:
    opened = await Store.open(data_dir)
    try:
        yield opened
    finally:
        await opened.close()


def sighting(
    t: float, rpi: bytes, rssi: int = -60, scan_start: float | None = None, aem: bytes = AEM
) -> Sighting:
    return Sighting(time=t, rpi=rpi, aem=aem, rssi=rssi, scan_start=scan_start)


def random_rpis(n: int) -> list[bytes]:
    return [os.urandom(16) for _ in range(n)]


def db_file_bytes(data_dir: Path) -> dict[str, bytes]:
    """Raw bytes of the database, -wal and -shm files (those that exist)."""
    result = {}
    for suffix in ("", "-wal", "-shm"):
        path = data_dir / (DB_FILENAME + suffix)
        if path.exists():
            result[path.name] = path.read_bytes()
    return result


def found_in_files(data_dir: Path, needles: Iterable[bytes]) -> list[tuple[str, int]]:
    """(file name, needle index) for every needle present in any database file."""
    files = db_file_bytes(data_dir)
    return [
        (name, i)
        for i, needle in enumerate(needles)
        for name, raw in files.items()
        if needle in raw
    ]
