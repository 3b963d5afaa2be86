"""match_exports: fail-closed strict mode, idempotent reruns, worker processes, notifier."""

from __future__ import annotations

import functools
import hashlib

import pytest

from agent.clock import en_interval_number
from agent.config import RiskConfig
from agent.errors import SignatureError
from agent.export import PublicKeyRing, generate_signing_key, public_key_pem
from agent.matching import parallel
from agent.models import ReportType
from agent.pipeline import ExportInput, match_exports
from agent.store import Store
from tests.pipeline.conftest import (
    CONTACT,
    NOW,
    TODAY,
    Authority,
    Notifications,
    Radio,
    heard_key,
    new_key,
)


def _ring(authority: Authority) -> functools.partial[PublicKeyRing]:
    return functools.partial(
        PublicKeyRing.from_pem, public_key_pem(authority.signing_key), "310", "v1"
    )


async def test_strict_mode_rejects_everything_when_one_file_is_bad(
    store: Store, authority: Authority
) -> None:
    key = await heard_key(store, scans=3)
    good = ExportInput("good.zip", authority.export([key]))
    other = Authority(generate_signing_key(), authority.pem_file)
    bad = ExportInput("bad.zip", other.export([new_key()]))
    with pytest.raises(SignatureError, match=r"^bad\.zip: "):
        await match_exports(
            store, [good, bad], ring=_ring(authority), risk=RiskConfig(), now=NOW, strict=True
        )
    assert await store.exposure_windows() == []
    assert not await store.is_file_processed(hashlib.sha256(good.content).digest())


async def test_rerun_after_a_crash_before_marking_is_idempotent(
    store: Store, authority: Authority, notifications: Notifications
) -> None:
    """F6: the same file processed again finds the same windows and notifies nothing new."""
    key = await heard_key(store, scans=4)
    export = ExportInput("1.zip", authority.export([key, key]))  # a padding clone too
    for _ in range(2):
        report = await match_exports(
            store,
            [export],
            ring=_ring(authority),
            risk=RiskConfig(),
            now=NOW,
            skip_processed=False,
            notifier=notifications,
        )
        assert report.matched_keys == 1
    assert len(await store.exposure_windows()) == 1
    assert len(notifications.calls) == 1
    assert report.new_window_ids == []


async def test_failed_notifier_leaves_windows_for_the_next_cycle(
    store: Store, authority: Authority, notifications: Notifications
) -> None:
    key = await heard_key(store, scans=4)

    async def broken(exposures: object) -> None:
        raise OSError("no session bus")

    export = ExportInput("1.zip", authority.export([key]))
    with pytest.raises(OSError, match="no session bus"):
        await match_exports(
            store, [export], ring=_ring(authority), risk=RiskConfig(), now=NOW, notifier=broken
        )
    assert len(await store.unnotified_windows()) == 1
    later = await match_exports(
        store, [export], ring=_ring(authority), risk=RiskConfig(), now=NOW, notifier=notifications
    )
    assert later.files_skipped == ["1.zip"]
    assert [len(e.window_ids) for e in notifications.calls[0]] == [1]


async def test_below_threshold_is_stored_but_not_notified(
    store: Store, authority: Authority, notifications: Notifications
) -> None:
    key = await heard_key(store, scans=2)  # 10 minutes < 15
    report = await match_exports(
        store,
        [ExportInput("1.zip", authority.export([key]))],
        ring=_ring(authority),
        risk=RiskConfig(),
        now=NOW,
        notifier=notifications,
    )
    assert len(report.windows) == 1 and report.new_exposures == []
    assert notifications.calls == []
    assert len(await store.unnotified_windows()) == 1


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["auto", "pure"])
async def test_big_inputs_are_split_over_workers_with_the_same_result(
    store: Store, authority: Authority, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    monkeypatch.setattr(parallel, "TASK_KEYS", 64)
    monkeypatch.setenv("CONTACT_AGENT_CRYPTO", backend)
    keys = [new_key() for _ in range(300)]
    radio = Radio()
    for i in (5, 150, 299):
        radio.heard(keys[i].key_data, CONTACT + 3600 * (i % 7), scans=2)
    await radio.store_into(store)
    exports = [ExportInput(f"{n}.zip", authority.export(keys[n::2])) for n in range(2)]
    progress: list[tuple[str, int, int]] = []
    report = await match_exports(
        store,
        exports,
        ring=_ring(authority),
        risk=RiskConfig(),
        now=NOW,
        workers=2,
        progress=lambda *step: progress.append(step),
    )
    assert report.keys == 300
    assert {w.key_data for w in report.windows} == {keys[i].key_data for i in (5, 150, 299)}
    assert ("verify", 2, 2) in progress
    assert [p for p in progress if p[0] == "match"] == [
        ("match", done, 300) for done in (64, 128, 192, 256, 300)
    ]


async def test_consumed_exports_are_released_and_match_the_same(
    store: Store, authority: Authority
) -> None:
    """consume=True empties the caller's list (the bytes can be freed); nothing else changes."""
    key_a = await heard_key(store, scans=4)
    key_b = await heard_key(store, scans=3)
    files = [
        ExportInput("a.zip", authority.export([key_a, new_key()])),
        ExportInput("b.zip", authority.export([key_b, key_a])),  # a duplicate across files
    ]
    handed_over = list(files)
    report = await match_exports(
        store, handed_over, ring=_ring(authority), risk=RiskConfig(), now=NOW, consume=True
    )
    assert handed_over == []
    assert report.files_processed == ["a.zip", "b.zip"]
    assert report.matched_keys == 2
    assert report.counters["duplicate_keys"] == 1
    for export in files:
        assert await store.is_file_processed(hashlib.sha256(export.content).digest())
    with pytest.raises(TypeError, match="as a list"):
        await match_exports(
            store, tuple(files), ring=_ring(authority), risk=RiskConfig(), now=NOW, consume=True
        )


async def test_the_cycle_reads_a_few_rpis_and_finds_what_the_reference_finds_in_all(
    store: Store, authority: Authority
) -> None:
    """The cycle reads the sightings of the RPIs its search found (and of our own RPIs)
    only; its windows and counters are those of the reference matcher over every
    sighting, among many strangers, replays, drifted clocks and our own reflections."""
    from agent.keyschedule import KeySchedule, OwnTek
    from agent.matching.core import SightingIndex, match_keys
    from agent.risk import exposure_windows

    ours = OwnTek(new_key(day=TODAY).key_data, TODAY, 144)
    await store.save_own_teks([ours])
    radio = Radio()
    reported = [new_key() for _ in range(6)]
    for i, key in enumerate(reported[:4]):
        radio.heard(key.key_data, CONTACT + 1800 * i, scans=3 + i, drift=(0, 3, -13, 12)[i])
    for _ in range(40):  # strangers, never reported
        radio.heard(new_key().key_data, CONTACT + 600, scans=2)
    radio.heard(ours.key_data, TODAY * 600 + 60, scans=2)  # reflections of our own RPIs
    replayed = radio.sightings[0]  # a reported RPI heard again an hour later
    radio.sightings.append(
        replayed.__class__(
            time=replayed.time + 3600, rpi=replayed.rpi, aem=replayed.aem, rssi=-50
        )
    )
    await radio.store_into(store)
    keys = [*reported, new_key(ReportType.RECURSIVE), new_key(ReportType.REVOKED)]
    own_rpis = KeySchedule([ours]).own_rpis(en_interval_number(NOW))
    reference = match_keys(keys, SightingIndex(await store.observed_scans(0), own_rpis))

    report = await match_exports(
        store,
        [ExportInput("day.zip", authority.export(keys))],
        ring=_ring(authority),
        risk=RiskConfig(),
        now=NOW,
    )
    expected = sorted(
        (w for m in reference.matches for w in exposure_windows(m.key, m.scans, RiskConfig())),
        key=lambda w: w.start,
    )
    assert report.matched_keys == reference.matched_keys == 3  # the drift of -13 misses
    assert report.windows == expected
    assert report.counters["own_rpi_scans_dropped"] == 2
    assert report.counters["replay_dropped"] == 1
    for name, count in reference.counters.items():
        assert report.counters[name] == count, name
