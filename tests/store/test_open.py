"""Opening: migrations, file modes, refusing foreign or newer files, quarantine."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import pytest

from agent.clock import FakeClock
from agent.errors import StoreError
from agent.store import DB_FILENAME, QUARANTINE_STATE_KEY, Store, schema
from tests.store.conftest import T0, random_rpis, sighting

USER_VERSION_OFFSET, APPLICATION_ID_OFFSET = 60, 68  # SQLite file header fields


def header_int(path: Path, offset: int) -> int:
    return int.from_bytes(path.read_bytes()[offset : offset + 4], "big")


def patch_file(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


async def make_store_with_data(data_dir: Path, rows: int = 3000) -> None:
    async with await Store.open(data_dir) as store:
        for _ in range(rows // 500):
            await store.add_sightings([sighting(T0, r) for r in random_rpis(500)])
        await store.set_state("consent", "on")


async def test_a_new_database_gets_the_whole_schema(data_dir: Path) -> None:
    async with await Store.open(data_dir) as store:
        assert await store.schema_version() == schema.schema_version() == len(schema.MIGRATIONS)
        assert await store.integrity_ok()
        assert store.quarantined is None
    db = data_dir / DB_FILENAME
    assert header_int(db, USER_VERSION_OFFSET) == schema.schema_version()
    assert header_int(db, APPLICATION_ID_OFFSET) == schema.APPLICATION_ID


async def test_migration_from_the_previous_version_keeps_data(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await make_store_with_data(data_dir, rows=500)
    v2 = (
        "CREATE TABLE extra (x INTEGER)",
        "INSERT INTO state (key, value) VALUES ('migrated', 'v2')",
    )
    newest = len(schema.MIGRATIONS) + 1
    monkeypatch.setattr(schema, "MIGRATIONS", (*schema.MIGRATIONS, v2))
    for _ in range(2):  # the second open must not run the migration again
        async with await Store.open(data_dir) as store:
            assert await store.schema_version() == newest
            assert await store.get_state("migrated") == "v2"
            assert await store.get_state("consent") == "on"
            assert await store.sighting_counts(0) == 500


async def test_a_newer_or_foreign_database_is_refused_not_replaced(data_dir: Path) -> None:
    await make_store_with_data(data_dir, rows=500)
    db = data_dir / DB_FILENAME
    patch_file(db, USER_VERSION_OFFSET, (7).to_bytes(4, "big"))
    with pytest.raises(StoreError, match="newer than this contact-agent supports"):
        await Store.open(data_dir)
    patch_file(db, USER_VERSION_OFFSET, (1).to_bytes(4, "big"))
    patch_file(db, APPLICATION_ID_OFFSET, (0x12345678).to_bytes(4, "big"))
    with pytest.raises(StoreError, match="not a contact-agent database"):
        await Store.open(data_dir)
    assert sorted(p.name for p in data_dir.iterdir()) == [DB_FILENAME]  # nothing moved


async def test_files_are_private_whatever_the_umask(data_dir: Path) -> None:
    data_dir.mkdir(mode=0o755)
    old = os.umask(0)
    try:
        async with await Store.open(data_dir) as store:
            await store.add_sightings([sighting(T0, random_rpis(1)[0])])
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in data_dir.iterdir()}
    finally:
        os.umask(old)
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert modes == {DB_FILENAME: 0o600, DB_FILENAME + "-wal": 0o600, DB_FILENAME + "-shm": 0o600}


async def test_existing_loose_files_are_tightened(data_dir: Path) -> None:
    await make_store_with_data(data_dir, rows=500)
    os.chmod(data_dir / DB_FILENAME, 0o644)
    os.chmod(data_dir, 0o755)
    async with await Store.open(data_dir):
        assert stat.S_IMODE((data_dir / DB_FILENAME).stat().st_mode) == 0o600
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700


def truncate(db: Path) -> None:
    os.truncate(db, db.stat().st_size // 2 + 100)


def garbage_header(db: Path) -> None:
    patch_file(db, 0, os.urandom(100))


def garbage_page(db: Path) -> None:
    patch_file(db, 4096 * 3, os.urandom(4096))


@pytest.mark.parametrize("damage", [truncate, garbage_header, garbage_page])
async def test_a_damaged_database_is_quarantined_loudly(
    data_dir: Path, damage: object, caplog: pytest.LogCaptureFixture
) -> None:
    await make_store_with_data(data_dir)
    db = data_dir / DB_FILENAME
    assert callable(damage)
    damage(db)
    clock = FakeClock(wall=T0)
    with caplog.at_level(logging.ERROR, logger="agent.store"):
        store = await Store.open(data_dir, clock=clock)
    try:
        assert store.quarantined is not None
        assert store.quarantined.name == f"{DB_FILENAME}.corrupt-20231114T221320Z"
        assert store.quarantined.exists()
        assert stat.S_IMODE(store.quarantined.stat().st_mode) == 0o600
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and "damaged" in errors[0].getMessage()
        notice = json.loads(await store.get_state(QUARANTINE_STATE_KEY) or "{}")
        assert notice["path"] == str(store.quarantined) and notice["at"] == T0
        # a fresh, working database took its place
        assert await store.sighting_counts(0) == 0
        assert await store.get_state("consent") is None
        await store.add_sightings([sighting(T0, random_rpis(1)[0])])
        assert await store.integrity_ok()
    finally:
        await store.close()


async def test_quarantined_copies_go_with_retention_and_with_forget(data_dir: Path) -> None:
    await make_store_with_data(data_dir, rows=500)
    garbage_header(data_dir / DB_FILENAME)
    async with await Store.open(data_dir, clock=FakeClock(wall=T0)) as store:
        copy = store.quarantined
        assert copy is not None
        await store.purge(T0 - 1)  # quarantined at T0: not older than the cutoff
        assert copy.exists()
        result = await store.purge(T0 + 1)
        assert result.quarantined_copies == 1 and not copy.exists()
        assert await store.get_state(QUARANTINE_STATE_KEY) is None
    garbage_header(data_dir / DB_FILENAME)
    async with await Store.open(data_dir, clock=FakeClock(wall=T0 + 5)) as store:
        assert store.quarantined is not None and store.quarantined.exists()
        await store.forget()
        assert not store.quarantined.exists()
    assert sorted(p.name for p in data_dir.iterdir()) == [DB_FILENAME]


async def test_an_unusable_data_dir_is_a_clear_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="cannot open the database in"):
        await Store.open(blocker / "data")
    (tmp_path / "data" / DB_FILENAME).mkdir(parents=True)
    with pytest.raises(StoreError, match="cannot open the database in"):
        await Store.open(tmp_path / "data")
