"""``import``, ``export``, ``purge`` and ``forget`` through the real command line."""

from __future__ import annotations

import asyncio
import json
import stat
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from click.testing import CliRunner, Result

from agent.cli import main
from agent.consent import ConsentState
from agent.interchange import EXPOSURE_EXPORT_FIELDS
from agent.keyschedule import OwnTek
from agent.store import Store
from tests.store.conftest import T0, random_rpis, sighting
from tests.store.test_interchange import BAD_JSONL, GOOD, RPI, jsonl
from tests.store.test_records import window

T = TypeVar("T")
OWN_TEK = bytes.fromhex("0f1e2d3c4b5a69788796a5b4c3d2e1f0")


def in_store(data_dir: Path, work: Callable[[Store], Awaitable[T]]) -> T:
    async def run() -> T:
        async with await Store.open(data_dir) as store:
            return await work(store)

    return asyncio.run(run())


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    config = tmp_path / "config.toml"
    config.write_text("[clock]\nrequire_sync = true\n")
    monkeypatch.setenv("CONTACT_AGENT_SYNC_MARKER", str(tmp_path / "no-sync-marker"))
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/no-bus")

    def invoke(*args: str, data_dir: Path | None = None, stdin: str | None = None) -> Result:
        base = ["--data-dir", str(data_dir or tmp_path / "data"), "--config", str(config)]
        return CliRunner().invoke(main, [*base, *args], input=stdin)

    return invoke


def seed(data_dir: Path) -> None:
    async def work(store: Store) -> None:
        rpis = random_rpis(5)
        await store.add_sightings([sighting(T0 + i, rpi, -50 - i) for i, rpi in enumerate(rpis)])
        await store.save_own_teks([OwnTek(OWN_TEK, 2_833_344)])
        await store.save_exposure_windows([window(b"\xaa" * 16, int(T0))])
        await store.set_state("consent", "on")

    in_store(data_dir, work)


def test_export_then_import_round_trips_and_never_shows_own_keys(
    cli: Callable[..., Result], tmp_path: Path
) -> None:
    seed(tmp_path / "data")
    for fmt in ("jsonl", "csv"):
        exported = cli("export", "sightings", "--format", fmt)
        assert exported.exit_code == 0, exported.output
        assert OWN_TEK.hex() not in exported.stdout
        log = tmp_path / f"log.{fmt}"
        log.write_text(exported.stdout)
        other = tmp_path / f"other-{fmt}"
        imported = cli("import", "sightings", str(log), data_dir=other)
        assert imported.exit_code == 0, imported.output
        assert imported.stdout.strip() == f"imported 5 sightings from {log}"
        again = cli("export", "sightings", "--format", fmt, data_dir=other)
        assert again.stdout == exported.stdout
    exposures = cli("export", "exposures")
    assert OWN_TEK.hex() not in exposures.stdout
    assert json.loads(exposures.stdout) == {  # `match --json` fields + possibly_relayed
        "start": int(T0),
        "duration_seconds": 900,
        "min_attenuation_db": 50,
        "typical_attenuation_db": 58,
        "report_type": 1,
        "score": 12.5,
        "possibly_relayed": "",
    }
    csv_exposures = cli("export", "exposures", "--format", "csv")
    assert csv_exposures.stdout.splitlines() == [
        ",".join(EXPOSURE_EXPORT_FIELDS),
        f"{int(T0)},900,50,58,1,12.5,",
    ]


def test_export_to_a_private_file_with_since(cli: Callable[..., Result], tmp_path: Path) -> None:
    seed(tmp_path / "data")
    out = tmp_path / "sightings.csv"
    since = "2023-11-14T22:13:22Z"  # T0 + 2
    result = cli("export", "sightings", "--format", "csv", "--since", since, "-o", str(out))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    lines = out.read_text().splitlines()
    assert lines[0] == "time,rpi,aem,rssi"
    assert [line.split(",")[0] for line in lines[1:]] == [str(int(T0) + i) for i in (2, 3, 4)]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    bad = cli("export", "exposures", "--since", "yesterday")
    assert bad.exit_code == 2  # a bad option value is a usage error
    assert "--since: must be an ISO date" in bad.stderr


@pytest.mark.parametrize(("record", "message"), BAD_JSONL[:6])
def test_a_malformed_import_reports_the_line_and_stores_nothing(
    cli: Callable[..., Result], tmp_path: Path, record: object, message: str
) -> None:
    seed(tmp_path / "data")
    before = in_store(tmp_path / "data", lambda s: s.sighting_counts(0))
    log = tmp_path / "bad.jsonl"
    log.write_bytes(jsonl(GOOD, record, GOOD))
    result = cli("import", "sightings", str(log))
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()[-1:]
    assert line.startswith(f"contact-agent: {log}: line 2: ")
    assert message in line and line.endswith("nothing was imported")
    assert RPI not in result.stderr
    assert in_store(tmp_path / "data", lambda s: s.sighting_counts(0)) == before


def test_import_of_a_missing_file_or_bad_csv(cli: Callable[..., Result], tmp_path: Path) -> None:
    result = cli("import", "sightings", str(tmp_path / "nope.csv"))
    assert result.exit_code == 1 and "cannot read" in result.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text(f"time,rpi,aem\n1700000000,{RPI},40080000\n")
    result = cli("import", "sightings", str(bad))
    assert result.exit_code == 1 and "line 1: bad CSV header: header lacks rssi" in result.stderr


def test_forget_needs_yes_then_deletes_everything(
    cli: Callable[..., Result], tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    seed(data_dir)
    refused = cli("forget")
    assert refused.exit_code == 1
    assert "--yes" in refused.stderr
    assert in_store(data_dir, lambda s: s.sighting_counts(0)) == 5
    done = cli("forget", "--yes")
    assert done.exit_code == 0, done.output
    assert "consent is off" in done.stdout

    async def after(store: Store) -> tuple[int, list[OwnTek], int, ConsentState]:
        return (
            await store.sighting_counts(0),
            await store.load_own_teks(),
            len(await store.exposure_windows()),
            await store.consent(),
        )

    assert in_store(data_dir, after) == (0, [], 0, ConsentState.DISABLED)


def test_purge_with_a_trusted_clock(cli: Callable[..., Result], tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[clock]\nrequire_sync = false\n")  # the fixture's
    data_dir = tmp_path / "data"
    now = time.time()
    old, recent = random_rpis(2)
    rows = [sighting(now - 15 * 86_400, old), sighting(now - 86_400, recent)]
    in_store(data_dir, lambda s: s.add_sightings(rows))
    result = cli("purge")
    assert result.exit_code == 0, result.output
    assert "deleted everything older than" in result.stdout
    assert "1 sightings" in result.stdout
    assert [e.rpi for e in in_store(data_dir, lambda s: s.encounters(0))] == [recent]


def test_purge_with_an_untrusted_clock_uses_the_lower_bound(
    cli: Callable[..., Result], tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    now = time.time()
    rpis = random_rpis(3)
    ages = (20, 15, 10)  # days before the lower bound
    lower_bound = now - 3 * 86_400  # true time is at least this

    rows = [sighting(lower_bound - a * 86_400, r) for a, r in zip(ages, rpis, strict=True)]
    in_store(data_dir, lambda s: s.add_sightings(rows))
    nothing = cli("purge")
    assert nothing.exit_code == 0
    assert "nothing deleted: system clock not synchronised" in nothing.stdout
    assert in_store(data_dir, lambda s: s.sighting_counts(0)) == 3

    in_store(data_dir, lambda s: s.set_state("clock.lower_bound", str(lower_bound)))
    result = cli("purge")
    assert result.exit_code == 0, result.output
    assert "2 sightings" in result.stdout  # 20 and 15 days before the bound; 10 stays
    assert [e.rpi for e in in_store(data_dir, lambda s: s.encounters(0))] == [rpis[2]]
