"""What the agent would have computed from a field log: TX powers, scans, exposure windows.

Pure functions over one receiver's sightings (:class:`agent.models.Sighting`).

- With the peer's diagnosis keys (its ``keys export-own``, verified by the caller), each
  sighting of a peer RPI gets the TX power decrypted from its AEM, and windows come from
  the agent's own matcher (:func:`agent.matching.core.match_keys`) and risk model
  (:func:`agent.risk.exposure_windows`).
- Without keys, every sighting in the log is taken to be the peer's, with an assumed TX
  power; the scans are scored by the same risk model under one stand-in key.

Scan instances: a sighting that carries ``scan_start`` keeps it; otherwise the receiver is
taken to scan continuously in slots of ``scan_period`` seconds aligned to the UTC minute
(the radio's continuous mode rolls an instance every 60 s), and the previous scan of a slot
is the slot before it, so a scanned minute counts 60 s (Google's ExposureWindowUtils).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from agent import crypto
from agent.clock import en_interval_number, rolling_start_interval_number
from agent.config import RiskConfig
from agent.constants import TEK_LENGTH, TEK_ROLLING_PERIOD
from agent.matching.core import MatchedScan, SightingIndex, match_keys, typical_attenuation
from agent.models import (
    DailySummary,
    ExposureWindow,
    ObservedScan,
    ReportType,
    Sighting,
    TemporaryExposureKey,
)
from agent.payload import Metadata
from agent.risk import daily_summaries, exposure_windows, matched_windows, qualifying_days

STAND_IN_KEY_DATA = bytes(TEK_LENGTH)
"""key_data of the stand-in key that scores logs without the peer's keys."""


@dataclass(frozen=True, slots=True)
class PeerTx:
    """What the peer's key reveals about one of its RPIs."""

    tx_power_dbm: int
    calibration_confidence: int


@dataclass(frozen=True, slots=True)
class ExposureSummary:
    """Windows, daily summaries and the notification verdict for one direction."""

    windows: tuple[ExposureWindow, ...]
    daily: tuple[DailySummary, ...]
    notify_days: tuple[int, ...]
    matched_keys: int
    """Peer keys that matched (0 when scored with the stand-in key)."""
    scan_instances: int
    seen_minutes: int
    """Distinct UTC minutes with a sighting: the ground truth the windows should track."""

    @property
    def would_notify(self) -> bool:
        return bool(self.notify_days)


def attenuation(tx_power_dbm: int, rssi: int) -> int:
    """GAEN attenuation: TX power - calibrated RSSI, at least 0 (Google's matching)."""
    return max(tx_power_dbm - rssi, 0)


def sighting_tx(
    keys: Sequence[TemporaryExposureKey], sightings: Sequence[Sighting]
) -> list[PeerTx | None]:
    """Per sighting: the TX power decrypted from its own AEM, or None for a foreign RPI.

    Each key covers the 144 intervals of its day; a tampered AEM shows up as an
    implausible TX power.
    """
    wanted = {s.rpi for s in sightings}
    aemk_by_rpi: dict[bytes, bytes] = {}
    for key in keys:
        rpik = crypto.derive_rpik(key.key_data)
        aemk = crypto.derive_aemk(key.key_data)
        for value in crypto.rpis(rpik, key.rolling_start_interval_number, TEK_ROLLING_PERIOD):
            if value in wanted:
                aemk_by_rpi[value] = aemk
    result: list[PeerTx | None] = []
    for sighting in sightings:
        found = aemk_by_rpi.get(sighting.rpi)
        if found is None:
            result.append(None)
            continue
        metadata = Metadata.from_bytes(crypto.decrypt_aem(found, sighting.rpi, sighting.aem))
        result.append(PeerTx(metadata.tx_power_dbm, metadata.calibration_confidence))
    return result


def observed_scans(
    sightings: Sequence[Sighting], scan_period: float = 60.0
) -> list[ObservedScan]:
    """Aggregate sightings per (RPI, scan) the way the store does for the matcher."""
    groups: dict[tuple[bytes, float], list[Sighting]] = {}
    for sighting in sorted(sightings, key=lambda s: s.time):
        start = (
            sighting.scan_start
            if sighting.scan_start is not None
            else math.floor(sighting.time / scan_period) * scan_period
        )
        groups.setdefault((sighting.rpi, start), []).append(sighting)
    scans = []
    for (rpi, start), found in groups.items():
        rssis = [s.rssi for s in found]
        scans.append(
            ObservedScan(
                rpi=rpi,
                aem=found[0].aem,
                first_seen=found[0].time,
                last_seen=found[-1].time,
                count=len(found),
                rssi_min=min(rssis),
                rssi_max=max(rssis),
                rssi_mean=sum(rssis) / len(rssis),
                previous_scan_end=start - scan_period,
                scan_start=start,
                previous_scan_start=start - scan_period,
            )
        )
    scans.sort(key=lambda s: s.first_seen)
    return scans


def _stand_in_scans(scans: Sequence[ObservedScan], tx_power_dbm: int) -> list[MatchedScan]:
    result = []
    for scan in scans:
        mean = tx_power_dbm - scan.rssi_mean
        result.append(
            MatchedScan(
                en_interval=en_interval_number(scan.first_seen),
                first_seen=scan.first_seen,
                last_seen=scan.last_seen,
                count=scan.count,
                typical_attenuation_db=typical_attenuation(mean),
                min_attenuation_db=attenuation(tx_power_dbm, scan.rssi_max),
                mean_attenuation_db=mean,
                tx_power_dbm=tx_power_dbm,
                calibration_confidence=0,
                previous_scan_end=scan.previous_scan_end,
                scan_start=scan.scan_start,
                previous_scan_start=scan.previous_scan_start,
            )
        )
    return result


def summarise_exposure(
    sightings: Sequence[Sighting],
    *,
    keys: Sequence[TemporaryExposureKey],
    tx_power_dbm: int,
    risk: RiskConfig,
    scan_period: float = 60.0,
) -> ExposureSummary:
    """Exposure windows of one receiver's log, as the agent's matcher and risk model see it.

    ``keys`` are the peer's verified keys; when none of them matches, ``sightings`` are
    scored under a stand-in key (report type CONFIRMED_TEST, no days since onset) with
    ``tx_power_dbm`` as every advert's TX power.
    """
    scans = observed_scans(sightings, scan_period)
    windows: list[ExposureWindow] = []
    matched_keys = 0
    if keys and scans:
        result = match_keys(list(keys), SightingIndex(scans))
        matched_keys = result.matched_keys
        windows = matched_windows(result.matches, risk)
    if not matched_keys and scans:
        first = en_interval_number(scans[0].first_seen)
        stand_in = TemporaryExposureKey(
            key_data=STAND_IN_KEY_DATA,
            rolling_start_interval_number=rolling_start_interval_number(first),
            report_type=ReportType.CONFIRMED_TEST,
        )
        windows = exposure_windows(stand_in, _stand_in_scans(scans, tx_power_dbm), risk)
        windows.sort(key=lambda w: w.start)
    return ExposureSummary(
        windows=tuple(windows),
        daily=tuple(daily_summaries(windows, risk)),
        notify_days=tuple(qualifying_days(windows, risk)),
        matched_keys=matched_keys,
        scan_instances=sum(len(w.scan_instances) for w in windows),
        seen_minutes=len({math.floor(s.time / 60) for s in sightings}),
    )
