"""fetch end to end: signed exports over HTTP (both layouts), a real store with sightings."""

from __future__ import annotations

import datetime as dt
import hashlib
import os

import pytest

from agent.clock import ClockTrust, FakeClock, TrustDecision
from agent.config import KeySource
from agent.errors import ClockUntrustedError
from agent.export import generate_signing_key, write_export
from agent.keyschedule import OwnTek
from agent.models import ReportType, TemporaryExposureKey
from agent.pipeline import (
    LAST_FETCH_STATE_KEY,
    SOURCES_STATE_KEY,
    FetchReport,
    config_ring,
    fetch_and_match,
)
from agent.sources import make_session
from agent.store import Store
from tests.pipeline.conftest import (
    CONTACT,
    NOW,
    YESTERDAY,
    Authority,
    Notifications,
    Radio,
    new_key,
)
from tests.sources.conftest import KeyServer

TRUSTED = TrustDecision(ClockTrust.SYNCED, "test: synchronised")
INDEX = "/exposureKeyExport-ZZ/index.txt"
DAY = YESTERDAY * 600


async def _fetch(
    store: Store,
    authority: Authority,
    source: KeySource,
    clock: FakeClock,
    notifier: Notifications | None = None,
    trust: TrustDecision = TRUSTED,
) -> FetchReport:
    config = authority.config(source)
    async with make_session() as session:
        return await fetch_and_match(
            store,
            config,
            session,
            clock=clock,
            trust=trust,
            ring=config_ring(config, None),
            notifier=notifier,
            workers=1,
        )


def _publish_index(server: KeyServer, files: dict[str, bytes]) -> KeySource:
    for name, content in files.items():
        server.files[f"/exposureKeyExport-ZZ/{name}"] = content
    server.files[INDEX] = "".join(f"exposureKeyExport-ZZ/{n}\n" for n in files).encode()
    return KeySource(kind="index", url=server.url(INDEX))


@pytest.mark.slow
async def test_index_layout_match_revoke_and_no_repeated_work(
    store: Store,
    server: KeyServer,
    authority: Authority,
    clock: FakeClock,
    notifications: Notifications,
) -> None:
    exact, drift12, drift13, tx20, tx21 = (new_key() for _ in range(5))
    own = OwnTek(os.urandom(16), YESTERDAY, max_broadcast_interval=YESTERDAY + 90)
    radio = Radio()
    radio.heard(exact.key_data, CONTACT, scans=4)  # 10:00..10:15, -60 dBm, TX -8
    radio.heard(drift12.key_data, CONTACT + 3600, scans=1, drift=12)
    radio.heard(drift13.key_data, CONTACT + 2 * 3600, scans=1, drift=-13)
    radio.heard(tx20.key_data, CONTACT + 3 * 3600, scans=1, tx_power=20)
    radio.heard(tx21.key_data, CONTACT + 4 * 3600, scans=1, tx_power=21)
    radio.heard(own.key_data, CONTACT + 5 * 3600, scans=2)  # our own beacons, reflected
    await radio.store_into(store)
    await store.save_own_teks([own])
    own_as_diagnosis = TemporaryExposureKey(own.key_data, YESTERDAY)
    padding = [new_key() for _ in range(30)]
    first = authority.export([exact, drift12, drift13, tx20, tx21, own_as_diagnosis, *padding])
    source = _publish_index(server, {"1.zip": first})

    report = await _fetch(store, authority, source, clock, notifications)

    assert report.refused is None and not report.failed
    assert report.downloaded == ["exposureKeyExport-ZZ/1.zip"]
    cycle = report.cycle
    assert cycle is not None
    assert len(cycle.files_processed) == 1
    assert cycle.keys == 36
    assert cycle.matched_keys == 3  # exact, drift 12, TX +20
    by_key = {w.key_data: w for w in cycle.windows}
    assert set(by_key) == {exact.key_data, drift12.key_data, tx20.key_data}
    window = by_key[exact.key_data]
    assert window.start == CONTACT + 1
    assert window.duration_seconds == 4 * 300
    assert (window.min_attenuation_db, window.typical_attenuation_db) == (52, 52)
    assert window.report_type == ReportType.CONFIRMED_TEST
    assert window.score == 1200  # 4 x 300 s, every weight 1.0
    assert by_key[tx20.key_data].min_attenuation_db == 80  # 20 - (-60)
    assert by_key[tx20.key_data].score == 0  # attenuation bucket OTHER weighs 0
    assert cycle.counters["tx_power_rejected"] == 1
    assert cycle.counters["outside_time_window"] == 1
    assert cycle.counters["own_key_skipped"] == 1
    assert cycle.counters["own_rpi_scans_dropped"] == 2
    (call,) = notifications.calls
    (exposure,) = call
    assert exposure.day == DAY
    assert exposure.minutes == pytest.approx(25.0)  # 20 min exact + 5 min drift 12
    assert len(exposure.window_ids) == 3
    assert [s.day for s in await store.daily_summaries()] == [DAY]
    assert len(await store.exposure_windows()) == 3
    assert not await store.unnotified_windows()

    again = await _fetch(store, authority, source, clock, notifications)
    assert again.downloaded == [] and again.cycle is not None
    assert again.cycle.files_processed == [] and again.cycle.matched_keys == 0
    await store.set_state(SOURCES_STATE_KEY, "{}")  # lost state: offered again ...
    third = await _fetch(store, authority, source, clock, notifications)
    assert third.downloaded == ["exposureKeyExport-ZZ/1.zip"] and third.cycle is not None
    assert third.cycle.files_skipped == ["index:" + source.url + "|exposureKeyExport-ZZ/1.zip"]
    assert third.cycle.keys == 0  # ... but skipped by SHA-256: no work
    assert len(notifications.calls) == 1  # nothing notified twice

    revoked = TemporaryExposureKey(exact.key_data, YESTERDAY, report_type=ReportType.REVOKED)
    source = _publish_index(server, {"1.zip": first, "2.zip": authority.export([], [revoked])})
    fourth = await _fetch(store, authority, source, clock, notifications)
    assert fourth.cycle is not None
    assert fourth.cycle.revoked_windows_removed == 1
    assert {w.key_data for w in await store.exposure_windows()} == {
        drift12.key_data,
        tx20.key_data,
    }
    (summary,) = await store.daily_summaries()
    assert summary.weighted_duration_sum == 300  # only drift 12 still counts
    assert len(notifications.calls) == 1
    state = await store.get_state(LAST_FETCH_STATE_KEY)
    assert state is not None and '"ok": true' in state


def _iso(day_interval: int) -> str:
    return dt.datetime.fromtimestamp(day_interval * 600, dt.UTC).date().isoformat()


async def test_cwa_layout_daily_and_hourly_files(
    store: Store,
    server: KeyServer,
    authority: Authority,
    clock: FakeClock,
    notifications: Notifications,
) -> None:
    daily_key, hourly_key = new_key(), new_key(ReportType.CONFIRMED_CLINICAL_DIAGNOSIS)
    radio = Radio()
    radio.heard(daily_key.key_data, CONTACT, scans=3, rssi=-65)
    radio.heard(hourly_key.key_data, CONTACT + 7200, scans=2, rssi=-50)
    await radio.store_into(store)
    root = "/version/v1/diagnosis-keys/country/DE/date"
    yesterday, today = _iso(YESTERDAY), _iso(YESTERDAY + 144)
    server.files[root] = f'["{yesterday}"]'.encode()
    server.files[f"{root}/{yesterday}"] = authority.export([daily_key, new_key()])
    server.files[f"{root}/{today}/hour"] = b"[0, 1]"
    server.files[f"{root}/{today}/hour/0"] = authority.export([new_key()])
    server.files[f"{root}/{today}/hour/1"] = authority.export([hourly_key])
    source = KeySource(kind="cwa", url=server.url("/"), country="DE")

    report = await _fetch(store, authority, source, clock, notifications)

    assert report.cycle is not None and not report.failed
    assert sorted(report.downloaded) == sorted(
        [f"DE/date/{yesterday}", f"DE/date/{today}/hour/0", f"DE/date/{today}/hour/1"]
    )
    assert len(report.cycle.files_processed) == 3
    windows = {w.key_data: w for w in report.cycle.windows}
    assert windows[daily_key.key_data].duration_seconds == 900
    assert windows[daily_key.key_data].typical_attenuation_db == 57
    assert windows[hourly_key.key_data].duration_seconds == 600
    assert windows[hourly_key.key_data].report_type == ReportType.CONFIRMED_CLINICAL_DIAGNOSIS
    (call,) = notifications.calls
    assert call[0].minutes == pytest.approx(25.0)


async def test_skewed_server_clock_is_reported_and_nothing_matched(
    store: Store, server: KeyServer, authority: Authority, clock: FakeClock
) -> None:
    key = new_key()
    radio = Radio()
    radio.heard(key.key_data, CONTACT, scans=3)
    await radio.store_into(store)
    source = _publish_index(server, {"1.zip": authority.export([key])})
    server.date = NOW + 11 * 60

    skewed = await _fetch(store, authority, source, clock)

    assert skewed.refused is not None and "differs from ours by 660 s" in skewed.refused
    assert skewed.cycle is None
    assert await store.exposure_windows() == []
    assert await store.get_state(SOURCES_STATE_KEY) is None  # offered again next time
    server.date = NOW + 9 * 60
    fine = await _fetch(store, authority, source, clock)
    assert fine.refused is None and fine.cycle is not None and fine.cycle.matched_keys == 1


async def test_untrusted_clock_refuses_before_any_download(
    store: Store, server: KeyServer, authority: Authority, clock: FakeClock
) -> None:
    source = _publish_index(server, {"1.zip": authority.export([new_key()])})
    untrusted = TrustDecision(ClockTrust.UNTRUSTED, "system clock not synchronised (NTP)")
    with pytest.raises(ClockUntrustedError, match="not synchronised"):
        await _fetch(store, authority, source, clock, trust=untrusted)
    assert server.log == []


async def test_forged_file_is_rejected_and_the_good_one_still_matched(
    store: Store,
    server: KeyServer,
    authority: Authority,
    clock: FakeClock,
) -> None:
    victim = new_key()
    honest = new_key()
    radio = Radio()
    radio.heard(victim.key_data, CONTACT, scans=3)
    radio.heard(honest.key_data, CONTACT + 3600, scans=3)
    await radio.store_into(store)
    forged = write_export(
        [victim],
        generate_signing_key(),
        key_id="310",
        key_version="v1",
        start_timestamp=int(NOW) - 3600,
        end_timestamp=int(NOW),
    )
    source = _publish_index(server, {"forged.zip": forged, "good.zip": authority.export([honest])})

    report = await _fetch(store, authority, source, clock)

    assert report.cycle is not None
    assert [name.rsplit("|", 1)[1] for name, _ in report.cycle.files_rejected] == [
        "exposureKeyExport-ZZ/forged.zip"
    ]
    assert "signature" in report.cycle.files_rejected[0][1]
    assert {w.key_data for w in report.cycle.windows} == {honest.key_data}
    assert not await store.is_file_processed(hashlib.sha256(forged).digest())
