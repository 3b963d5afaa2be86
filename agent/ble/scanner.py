"""The scanner port on bleak's BlueZ backend.

- Passive scanning with an ``or_patterns`` monitor on 0xFD6F service data when BlueZ
  offers ``AdvertisementMonitorManager1`` (needs bluetoothd ``-E`` before 5.77-ish);
  if RegisterMonitor is missing, fall back to active scanning for good.
- Active scanning always passes ``service_uuids=[FD6F]``: that makes BlueZ's discovery
  "filtered", without which an LE-only adapter creates no device for a non-connectable
  advert, and RSSI is re-announced on every report (BlueZ ``src/adapter.c``;
  ``docs/raspberry-pi.md``).
- The detection callback only validates, asks the relay guard (:mod:`agent.relayguard`)
  about the report's address, RPI and AEM, and enqueues (:mod:`agent.ble.detection`).
  The address goes to the guard and nowhere else: it is never stored or logged.
  A report whose RSSI BlueZ withdrew (``RSSI`` absent, bleak then says -127) is not a
  reception and is counted as bad RSSI.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from bleak import BleakScanner
from bleak.args.bluez import OrPattern
from bleak.assigned_numbers import AdvertisementDataType
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from agent.ble import ScanCounters, SightingSink
from agent.ble.detection import Verdict, parse_report
from agent.ble.errors import Action, classify, to_agent_error
from agent.clock import Clock
from agent.constants import DBUS_CALL_TIMEOUT_SECONDS, EN_SERVICE_UUID, EN_SERVICE_UUID16
from agent.relayguard import RelayGuard

_LOGGER = logging.getLogger(__name__)

EN_OR_PATTERN = OrPattern(
    0, AdvertisementDataType.SERVICE_DATA_UUID16, EN_SERVICE_UUID16.to_bytes(2, "little")
)
"""AD type 0x16 whose first two bytes are 6F FD: any EN service data."""

_COUNTER_OF = {
    Verdict.ACCEPTED: "accepted",
    Verdict.FOREIGN: "foreign",
    Verdict.BAD_LENGTH: "bad_length",
    Verdict.BAD_RSSI: "bad_rssi",
}


class BleakEnScanner:
    """EN scanner on one adapter; sightings go to ``queue``."""

    def __init__(
        self,
        adapter: str,
        clock: Clock,
        queue: SightingSink,
        *,
        rssi_correction: int = 0,
        passive: bool = True,
        passive_available: Callable[[], bool] = lambda: True,
        call_timeout: float = DBUS_CALL_TIMEOUT_SECONDS,
        relay_guard: RelayGuard | None = None,
    ) -> None:
        self.adapter = adapter
        self.counters = ScanCounters()
        self.relay_guard = relay_guard or RelayGuard(clock)
        self.scan_start: float | None = None
        self._clock = clock
        self._queue = queue
        self._rssi_correction = rssi_correction
        self._passive_wanted = passive
        self._passive_available = passive_available
        self._passive_failed = False
        self._timeout = call_timeout
        self._scanner: BleakScanner | None = None
        self._mode: str | None = None
        self._last_report: float | None = None
        self._lock = asyncio.Lock()

    @property
    def scanning(self) -> bool:
        return self._scanner is not None

    @property
    def mode(self) -> str | None:
        return self._mode

    @property
    def last_report(self) -> float | None:
        return self._last_report

    async def start(self) -> None:
        """Start scanning (passive if possible); raises a BluetoothError on failure."""
        async with self._lock:
            if self._scanner is not None:
                return
            if self._passive_wanted and not self._passive_failed and self._passive_available():
                try:
                    await self._start_with(self._new_scanner("passive"), "passive")
                    return
                except Exception as exc:
                    if classify(exc).action is not Action.FALLBACK:
                        raise to_agent_error(exc, "starting passive scan") from exc
                    self._passive_failed = True
                    _LOGGER.warning(
                        "passive scanning is not available on %s (BlueZ needs -E); "
                        "using active scanning",
                        self.adapter,
                    )
            try:
                await self._start_with(self._new_scanner("active"), "active")
            except Exception as exc:
                raise to_agent_error(exc, "starting scan") from exc

    async def stop(self) -> None:
        """Stop scanning; a scan bluetoothd already forgot is not an error."""
        async with self._lock:
            scanner, self._scanner, self._mode = self._scanner, None, None
            if scanner is None:
                return
            try:
                async with asyncio.timeout(self._timeout):
                    await scanner.stop()
            except Exception as exc:
                c = classify(exc)
                if c.action is Action.FATAL:
                    raise to_agent_error(exc, "stopping scan") from exc
                # bluetoothd restarted, the adapter went away, or it is off: nothing to stop
                _LOGGER.debug("stopping scan on %s: %s", self.adapter, c.summary())

    def _new_scanner(self, mode: str) -> BleakScanner:
        if mode == "passive":
            return BleakScanner(
                self._on_report,
                None,
                scanning_mode="passive",
                bluez={"adapter": self.adapter, "or_patterns": [EN_OR_PATTERN]},
            )
        return BleakScanner(
            self._on_report,
            [EN_SERVICE_UUID],
            scanning_mode="active",
            bluez={"adapter": self.adapter},
        )

    async def _start_with(self, scanner: BleakScanner, mode: str) -> None:
        async with asyncio.timeout(self._timeout):
            await scanner.start()
        self._scanner, self._mode = scanner, mode
        _LOGGER.info("scanning on %s (%s)", self.adapter, mode)

    def _on_report(self, device: BLEDevice, adv: AdvertisementData) -> None:
        """bleak's detection callback: validate and enqueue, nothing else."""
        self._last_report = self._clock.monotonic()
        self.counters.reports += 1
        verdict, sighting = parse_report(
            adv.service_data,
            _reported_rssi(adv),
            time=self._clock.wall(),
            scan_start=self.scan_start,
            rssi_correction=self._rssi_correction,
        )
        if sighting is None:
            name = _COUNTER_OF[verdict]
            setattr(self.counters, name, getattr(self.counters, name) + 1)
            return
        guard = self.relay_guard
        reasons = guard.observe(device.address, sighting.rpi, sighting.aem, sighting.time)
        if reasons:
            sighting = dataclasses.replace(sighting, relay=reasons)
        try:
            self._queue.put_nowait(sighting)
        except asyncio.QueueFull:
            self.counters.queue_full += 1
            return
        self.counters.accepted += 1
        self.counters.relay_flagged += 1 if reasons else 0


def _reported_rssi(adv: AdvertisementData) -> int | None:
    """The RSSI BlueZ reported, or None when its Device1 has no RSSI property."""
    platform: Any = adv.platform_data
    if isinstance(platform, tuple) and len(platform) == 2 and isinstance(platform[1], dict):
        raw = platform[1].get("RSSI")
        return raw if isinstance(raw, int) else None
    return adv.rssi
