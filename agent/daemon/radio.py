"""The daemon's view of the radio: a small port, and the factory of the real one.

The service builds one :class:`RadioPort` with the factory and holds it until it stops:
:class:`agent.ble.radio.Radio` in production (the demo's agents too, on the fake
bluetoothd), a fake in the daemon's tests. The radio restarts itself (its parts, its
D-Bus connection, and on :meth:`RadioPort.restart`); the service never rebuilds it. A new
radio starts with advertising and scanning *off*; the service switches them on by policy
(consent, clock trust) right after creating it, so nothing goes on air before consent was
read.
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
        """Work until cancelled; recover from bluetoothd restarts and failures on its own.

        Raises only BluetoothAccessDeniedError (exit 78), when D-Bus refuses access to BlueZ.
        """
        ...

    def restart(self, config: RadioConfig, schedule: KeySchedule, metadata: Metadata) -> None:
        """Start over on new ``[radio]`` settings or a new key schedule (after ``forget``);
        what is allowed on air stays as it was."""
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
        """Monotonic time of the radio's latest supervision round (None: connecting)."""
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


def bluez_radio(request: RadioRequest) -> RadioPort:
    """The production radio: BlueZ over the system D-Bus (``DBUS_SYSTEM_BUS_ADDRESS``)."""
    from agent.ble.radio import Radio  # bleak and bless load only for `run`

    # one queue for both item kinds: the writer takes sightings and scan periods
    return Radio(
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


def with_adapter(config: RadioConfig, adapter: str | None) -> RadioConfig:
    return config if not adapter else replace(config, adapter=adapter)


def is_scanning(status: Mapping[str, Any]) -> bool:
    """Scanning now, or duty-cycled scanning that is switched on (between two scans)."""
    if status.get("scanning"):
        return True
    duty = status.get("scan_schedule") == "duty"
    return bool(duty and status.get("scanning_allowed") and status.get("bluetoothd"))
