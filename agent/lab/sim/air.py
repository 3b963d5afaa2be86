"""The simulated air: who hears which transmitter at what RSSI, and what went on air.

Transmitters are advertisements registered on the fake's adapters and outside beacons
(phones, wearables, broken devices) injected by a test. Every registration broadcasts
from a fresh random non-resolvable private address, as the kernel gives a
non-connectable advertising instance (what the kernel does here is assumed, not verified against
hardware).
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

from dbus_fast import Variant

from agent.constants import EN_SERVICE_UUID
from agent.lab.sim.addata import ParsedAdvertisement
from agent.lab.sim.pathloss import Link, PathLossModel


def random_nrpa(rng: random.Random) -> str:
    """A random non-resolvable private address: top two bits 00, not all 0s or all 1s."""
    while True:
        raw = bytearray(rng.randbytes(6))
        raw[0] &= 0x3F
        rest = int.from_bytes(raw, "big") & ((1 << 46) - 1)
        if 0 < rest < (1 << 46) - 1:
            return ":".join(f"{b:02X}" for b in raw)


@dataclass(frozen=True, slots=True)
class Frame:
    """One advertisement seen on air (logged at registration, every tick and removal)."""

    time: float
    """Wall time of the fake's clock."""
    address: str
    service_data: bytes | None
    """The 0xFD6F service data, if any."""


@dataclass(slots=True)
class Transmitter:
    """Something on air: a registered advertisement or an outside beacon."""

    address: str
    advert: ParsedAdvertisement | None
    """None until bluetoothd has read the client's object."""
    adapter: str | None = None
    """Name of the adapter it is registered on (None: an outside beacon)."""
    owner: str = ""
    """Unique bus name of the client that registered it."""
    path: str = ""
    """Client object path, or the beacon id."""
    registered_at: float = 0.0
    updates: int = 0
    """How often bluetoothd (re)read the object."""
    raw_service_data: Variant | None = None
    """Beacons only: a ServiceData variant sent as is (malformed-input tests)."""
    extra: dict[str, Variant] = field(default_factory=dict)

    @property
    def source(self) -> str:
        """Link key of this transmitter: its adapter name or the beacon id."""
        return self.adapter if self.adapter is not None else self.path

    @property
    def en_service_data(self) -> bytes | None:
        if self.advert is None:
            return None
        return self.advert.service_data.get(EN_SERVICE_UUID)


class Air:
    """Links between transmitters and receivers, and the log of frames on air."""

    def __init__(
        self,
        *,
        model: PathLossModel | None = None,
        seed: int = 0,
        default_rssi: int | None = -60,
        max_frames: int = 100_000,
    ) -> None:
        self.model = model or PathLossModel()
        self.rng = random.Random(seed)
        self.default = Link(rssi=default_rssi)
        self._links: dict[tuple[str, str], Link] = {}
        self._frames: dict[str, deque[Frame]] = {}
        self._max_frames = max_frames

    def set_link(self, src: str, dst: str, rssi: int | None) -> None:
        """``dst`` hears ``src`` at exactly ``rssi`` dBm (None: out of range)."""
        self._links[(src, dst)] = Link(rssi=rssi)

    def set_distance(
        self, src: str, dst: str, metres: float, walls: int = 0, *, both: bool = True
    ) -> None:
        """Link(s) following the path-loss model, with noise on every report."""
        self._links[(src, dst)] = Link(distance_m=metres, walls=walls)
        if both:
            self._links[(dst, src)] = Link(distance_m=metres, walls=walls)

    def rssi(self, src: str, dst: str) -> int | None:
        """One report's RSSI on ``dst`` for transmitter ``src``, or None if not heard."""
        return self._links.get((src, dst), self.default).sample(self.model, self.rng)

    def log(self, adapter: str, time: float, tx: Transmitter) -> None:
        frames = self._frames.setdefault(adapter, deque(maxlen=self._max_frames))
        frames.append(Frame(time, tx.address, tx.en_service_data))

    def frames(self, adapter: str) -> list[Frame]:
        """Frames the adapter put on air, oldest first."""
        return list(self._frames.get(adapter, ()))
