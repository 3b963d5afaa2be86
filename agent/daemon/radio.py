"""The daemon's view of the radio: a small port, and the factory of the real one.

The service drives whatever :class:`RadioPort` the factory returns: the BlueZ facade
(:class:`agent.ble.radio.RadioService`) in production and in the demo (there against the
fake bluetoothd); a fake port in some tests. A new radio starts with advertising and
scanning *off*; the service switches them on by policy (consent, clock trust) right after
creating it, so nothing goes on air before consent was read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol, cast

from agent.clock import Clock
from agent.config import RadioConfig
from agent.keyschedule import KeySchedule, OwnTek
from agent.models import ScanPeriod, Sighting
from agent.payload import Metadata

Sleep = Callable[[float], Awaitable[None]]
SightingQueue = asyncio.Queue[Sighting | ScanPeriod]


class RadioPort(Protocol):
    """Advertising and scanning on one adapter, switched on and off by policy."""

    async def run(self) -> None:
        """Work until cancelled; recover from bluetoothd restarts on its own.

        Raises BluetoothAccessDeniedError (exit 78) when D-Bus refuses access to BlueZ.
        """
        ...

    def set_advertising_allowed(self, allowed: bool) -> None:
        """Put our EN advertisement on or off air (within 2 s)."""
        ...

    def set_scanning_allowed(self, allowed: bool) -> None:
        """Start or stop scanning (within 2 s)."""
        ...

    def rotate_now(self) -> None:
        """Rotate address and RPI now (a wall-clock step)."""
        ...

    @property
    def ready(self) -> bool:
        """BlueZ answered and the adapter exists and is powered."""
        ...

    @property
    def heartbeat(self) -> float | None:
        """Monotonic time of the radio's latest supervision round (None: not started)."""
        ...

    def status(self) -> Mapping[str, Any]:
        """``advertising``, ``scanning``, ``adapter``, ``rotations``, ``counters``."""
        ...


@dataclass(frozen=True, slots=True)
class RadioRequest:
    """Everything a radio needs from the daemon."""

    config: RadioConfig
    """``[radio]`` with the adapter already chosen (``run --adapter`` wins)."""
    clock: Clock
    schedule: KeySchedule
    metadata: Metadata
    queue: SightingQueue
    """Sightings and scan periods for the store's writer."""
    sleep: Sleep
    persist: Callable[[list[OwnTek]], Awaitable[None]]
    """Save keys the schedule created or changed before their RPI goes on air."""


RadioFactory = Callable[[RadioRequest], RadioPort]


class _BluezRadio:
    """Adapts :class:`agent.ble.radio.RadioService` to :class:`RadioPort`."""

    def __init__(self, request: RadioRequest) -> None:
        from agent.ble.radio import RadioService  # bleak and bless load only for `run`

        # one queue for both item kinds: the writer takes sightings and scan periods
        self.service = RadioService(
            request.config,
            request.clock,
            request.schedule,
            request.metadata,
            cast("asyncio.Queue[Sighting]", request.queue),
            scan_periods=cast("asyncio.Queue[ScanPeriod]", request.queue),
            persist_teks=request.persist,
            sleep=request.sleep,
            advertise=False,
            scan=False,
        )

    async def run(self) -> None:
        await self.service.run()

    def set_advertising_allowed(self, allowed: bool) -> None:
        self.service.set_advertising_allowed(allowed)

    def set_scanning_allowed(self, allowed: bool) -> None:
        self.service.set_scanning_allowed(allowed)

    def rotate_now(self) -> None:
        self.service.request_rotation()

    @property
    def ready(self) -> bool:
        return self.service.health.ready

    @property
    def heartbeat(self) -> float | None:
        return self.service.heartbeat

    def status(self) -> Mapping[str, Any]:
        return self.service.status()


def bluez_radio(request: RadioRequest) -> RadioPort:
    """The production radio: BlueZ over the system D-Bus (``DBUS_SYSTEM_BUS_ADDRESS``)."""
    return _BluezRadio(request)


def with_adapter(config: RadioConfig, adapter: str | None) -> RadioConfig:
    return config if not adapter else replace(config, adapter=adapter)


def is_scanning(status: Mapping[str, Any]) -> bool:
    """Scanning now, or duty-cycled scanning that is switched on (between two scans)."""
    if status.get("scanning"):
        return True
    duty = status.get("scan_schedule") == "duty"
    return bool(duty and status.get("scanning_allowed") and status.get("bluetoothd"))
