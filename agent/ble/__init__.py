"""Bluetooth LE edge of the agent: the ports, and their BlueZ adapters.

This package is the only place that imports bleak, bless, dbus_next and (for Bluetooth)
dbus_fast. The rest of the agent sees two small ports:

- :class:`Advertiser`: ``start(payload)``, ``rotate(payload)``, ``stop()``; a rotation
  changes the address and the RPI together (or the address links two RPIs).
- :class:`Scanner`: ``start()``, ``stop()``; validated :class:`~agent.models.Sighting`
  objects go to a queue, everything else is counted in :class:`ScanCounters`.

The daemon holds one :class:`agent.ble.radio.Radio` (its radio port), which supervises
both and recovers from bluetoothd restarts, adapter loss and a lost D-Bus connection.
Importing this module does not import bleak or bless.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Protocol

from agent.models import ScanPeriod, Sighting

Sleep = Callable[[float], Awaitable[None]]
"""``asyncio.sleep`` or a test's / simulator's replacement driving a fake clock."""


class SightingSink(Protocol):
    """Where sightings go: an ``asyncio.Queue`` (may also carry other items)."""

    def put_nowait(self, item: Sighting, /) -> None:
        """Raises ``asyncio.QueueFull`` when the consumer fell behind."""
        ...


class ScanPeriodSink(Protocol):
    """Where finished scan instances go: an ``asyncio.Queue`` (may be the sighting queue)."""

    def put_nowait(self, item: ScanPeriod, /) -> None: ...


class Advertiser(Protocol):
    """Puts one EN advertisement (service data ``RPI || AEM``) on air."""

    @property
    def advertising(self) -> bool:
        """True while bluetoothd holds our advertisement."""
        ...

    async def start(self, payload: bytes) -> None:
        """Register an advertisement carrying ``payload`` (20 bytes of service data)."""
        ...

    async def rotate(self, payload: bytes) -> None:
        """Replace the advertisement: off air, a short gap, new address and payload."""
        ...

    async def stop(self) -> None:
        """Take the advertisement off air (no error if it is not there)."""
        ...


@dataclass(slots=True)
class ScanCounters:
    """What the scanner saw; no identifiers."""

    reports: int = 0
    """Every advertisement report delivered by BlueZ."""
    accepted: int = 0
    """Valid EN reports queued as sightings."""
    foreign: int = 0
    """Reports without 0xFD6F service data (other devices, FD6F without data)."""
    bad_length: int = 0
    """0xFD6F service data not exactly 20 bytes."""
    bad_rssi: int = 0
    """RSSI missing, 127 (not available) or outside -127..20 dBm."""
    queue_full: int = 0
    """Valid sightings dropped because the consumer fell behind."""
    relay_flagged: int = 0
    """Queued sightings the relay guard gave a reason (:mod:`agent.relayguard`)."""

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class Scanner(Protocol):
    """Listens for EN advertisements and queues sightings."""

    counters: ScanCounters
    scan_start: float | None
    """Wall time of the current scan instance's start; stamped on each sighting."""

    @property
    def scanning(self) -> bool: ...

    @property
    def mode(self) -> str | None:
        """``passive`` or ``active`` while scanning, else None."""
        ...

    @property
    def last_report(self) -> float | None:
        """Monotonic time of the latest report of any kind (for the watchdog)."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


__all__ = ["Advertiser", "ScanCounters", "ScanPeriodSink", "Scanner", "SightingSink", "Sleep"]
