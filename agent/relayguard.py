"""Relay and replay guard: notice identifiers that a real device cannot have sent.

GAEN cannot authenticate an advertisement: anyone can record RPIs in one place and
re-broadcast them elsewhere, live (a relay) or later within the +-2 h matching tolerance
(a replay). A real device rotates its Bluetooth address and its RPI together, sends one
RPI at a time, never changes the AEM of an RPI and keeps an RPI on air for at most about
20 minutes. :class:`RelayGuard` watches the scanner's reports for what breaks those rules
and returns a small reason bitmask (:class:`Reason`) for each sighting; the store keeps
only that bitmask, OR-ed over each aggregated scan. :func:`time_shifted` adds the one
signal that needs the matched key: an RPI heard far from the interval its key gives it.

Privacy: nothing here keeps an address, RPI or AEM. Each is reduced to a keyed hash
(BLAKE2b, key from :mod:`secrets`) whose key is replaced every ``key_seconds`` (one EN
interval); what was not heard again within two key periods is gone with its key. Entries
still on air are carried to the new key when they are heard again. The tables are capped.

Pure: times come from the sightings and the injected monotonic clock; no I/O, no logging
of anything heard.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

from agent.constants import EN_INTERVAL_SECONDS

if TYPE_CHECKING:  # the scanner imports this module: keep the matcher out of its imports
    from agent.matching.core import MatchedScan


class Reason(enum.IntFlag):
    """Why a sighting may have been relayed or replayed (stored as a small integer)."""

    MULTI_ADDRESS = 1
    """One RPI heard from two or more addresses at the same time or for long each."""
    MULTI_RPI = 2
    """One address sending two or more RPIs at the same time or for long each."""
    AEM_CHANGED = 4
    """One RPI heard with two different AEMs."""
    OVERLONG = 8
    """One RPI continuously on air for longer than a real device keeps it."""
    TIME_SHIFTED = 16
    """At match time: heard far from the interval its key gives it (still within +-2 h)."""


REASON_NAMES: dict[Reason, str] = {
    Reason.MULTI_ADDRESS: "multi_address",
    Reason.MULTI_RPI: "multi_rpi",
    Reason.AEM_CHANGED: "aem_changed",
    Reason.OVERLONG: "overlong",
    Reason.TIME_SHIFTED: "time_shifted",
}
"""Counter and export names of each reason."""

ALL_REASONS = int(sum(REASON_NAMES))


def reason_names(mask: int) -> list[str]:
    """The names of the reasons set in ``mask``, in bit order."""
    return [name for bit, name in REASON_NAMES.items() if mask & bit]


class Monotonic(Protocol):
    def monotonic(self) -> float: ...


@dataclass(frozen=True, slots=True)
class GuardSettings:
    """Thresholds; the defaults are explained in ``docs/matching.md``."""

    key_seconds: float = float(EN_INTERVAL_SECONDS)
    """How long one hash key lives (tracked entries survive at most two of these unheard)."""
    hold_seconds: float = 60.0
    """An address (RPI) holding a second RPI (address) this long is no rotation edge."""
    overlong_seconds: float = 25 * 60.0
    """Continuous presence beyond this is longer than any real device keeps an RPI."""
    presence_gap_seconds: float = 10 * 60.0
    """A longer silence ends the continuous presence of an RPI."""
    max_tracked: int = 20_000
    """RPIs (and, separately, addresses) tracked per key period; more are not tracked."""
    links: int = 4
    """Addresses remembered per RPI and RPIs per address."""

    def __post_init__(self) -> None:
        if min(self.key_seconds, self.hold_seconds, self.overlong_seconds) <= 0:
            raise ValueError("relay guard intervals must be positive")
        if self.max_tracked < 1 or self.links < 2:
            raise ValueError("relay guard needs max_tracked >= 1 and links >= 2")


@dataclass(slots=True)
class _Span:
    first: float
    last: float


@dataclass(eq=False, slots=True)
class _Node:
    """One tracked RPI or address: its peers (the other kind) with their spans."""

    serial: int
    peers: dict[int, _Span] = field(default_factory=dict)
    """Serial of each peer -> when they were heard together (serials, not references:
    a forgotten node is gone, whatever still names it)."""
    last_peer: int = -1
    reasons: int = 0
    aem: bytes = b""
    """Hash of the first AEM under ``aem_key`` (RPI nodes only)."""
    aem_key: bytes = b""
    """The node's own AEM hash key: outlives the table key while the RPI is on air."""
    run_start: float = 0.0
    last_seen: float = -1e18


@dataclass(slots=True)
class GuardStats:
    """Counters for ``status`` and metrics (no identifiers)."""

    reports: int = 0
    flagged: int = 0
    """Reports that left with a non-zero reason mask."""
    untracked: int = 0
    """Reports not checked because the tables were full (a flood)."""
    signals: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASON_NAMES.values(), 0))
    """How often each signal fired (first time per RPI or address)."""
    tracked_rpis: int = 0
    tracked_addresses: int = 0


class _Table:
    """Keyed hash -> node, in two generations (current key, previous key)."""

    def __init__(self) -> None:
        self.current: dict[bytes, _Node] = {}
        self.previous: dict[bytes, _Node] = {}

    def rotate(self) -> list[_Node]:
        """A new key period; returns the nodes gone with the previous key."""
        dropped = list(self.previous.values())
        self.previous, self.current = self.current, {}
        return dropped

    def clear(self) -> None:
        self.current.clear()
        self.previous.clear()

    def __len__(self) -> int:
        return len(self.current) + len(self.previous)


class RelayGuard:
    """Watches (address, RPI, AEM, time) reports; see the module docstring."""

    def __init__(self, clock: Monotonic, settings: GuardSettings | None = None) -> None:
        self.settings = settings or GuardSettings()
        self._clock = clock
        self._key = secrets.token_bytes(32)
        self._previous_key = secrets.token_bytes(32)
        self._key_epoch = self._epoch(clock.monotonic())
        self._rpis = _Table()
        self._addresses = _Table()
        self._serial = 0
        self._live: dict[int, _Node] = {}
        """Every tracked node by serial (to mark an address's other RPIs)."""
        self._stats = GuardStats()

    # ---- the public face ------------------------------------------------------------------
    def stats(self) -> GuardStats:
        self._rotate_if_due()
        s = self._stats
        s.tracked_rpis, s.tracked_addresses = len(self._rpis), len(self._addresses)
        return s

    def clear(self) -> None:
        """Forget everything (``forget``, shutdown); counters stay, keys are replaced."""
        self._rpis.clear()
        self._addresses.clear()
        self._live.clear()
        self._key, self._previous_key = secrets.token_bytes(32), secrets.token_bytes(32)

    def observe(self, address: str, rpi: bytes, aem: bytes, time: float) -> int:
        """Take one report heard at wall time ``time``; returns its reason bitmask."""
        self._rotate_if_due()
        self._stats.reports += 1
        r = self._node(self._rpis, b"r" + rpi)
        a = self._node(self._addresses, b"a" + address.encode("utf-8", "replace"))
        if r is None or a is None:
            self._stats.untracked += 1
            return 0
        self._presence(r, time)
        self._aem(r, aem)
        self._link(r, a, time, Reason.MULTI_ADDRESS)
        self._link(a, r, time, Reason.MULTI_RPI)
        mask = r.reasons | (a.reasons & Reason.MULTI_RPI)
        if mask:
            self._stats.flagged += 1
        return mask

    # ---- keys -----------------------------------------------------------------------------
    def _epoch(self, now: float) -> int:
        return int(now // self.settings.key_seconds)

    def _rotate_if_due(self) -> None:
        epoch = self._epoch(self._clock.monotonic())
        if epoch == self._key_epoch:
            return
        steps = epoch - self._key_epoch
        self._key_epoch = epoch
        for table in (self._rpis, self._addresses):
            dropped = table.rotate()
            if steps > 1:  # two periods unheard: gone with their key
                dropped += table.rotate()
            for node in dropped:
                self._live.pop(node.serial, None)
        self._previous_key, self._key = self._key, secrets.token_bytes(32)

    def _hash(self, key: bytes, value: bytes) -> bytes:
        return hashlib.blake2b(value, key=key, digest_size=16).digest()

    def _node(self, table: _Table, value: bytes) -> _Node | None:
        h = self._hash(self._key, value)
        node = table.current.get(h)
        if node is not None:
            return node
        node = table.previous.pop(self._hash(self._previous_key, value), None)
        if node is None:
            if len(table) >= self.settings.max_tracked:
                return None
            self._serial += 1
            node = _Node(self._serial)
            self._live[node.serial] = node
        table.current[h] = node
        return node

    # ---- signals --------------------------------------------------------------------------
    def _flag(self, node: _Node, reason: Reason) -> None:
        if not node.reasons & reason:
            node.reasons |= reason
            self._stats.signals[REASON_NAMES[reason]] += 1

    def _presence(self, r: _Node, time: float) -> None:
        s = self.settings
        if time - r.last_seen > s.presence_gap_seconds:
            r.run_start = time
        r.last_seen = max(r.last_seen, time)
        if r.last_seen - r.run_start > s.overlong_seconds:
            self._flag(r, Reason.OVERLONG)

    def _aem(self, r: _Node, aem: bytes) -> None:
        if not r.aem_key:
            r.aem_key = secrets.token_bytes(16)
        h = self._hash(r.aem_key, aem)
        if not r.aem:
            r.aem = h
        elif r.aem != h:
            self._flag(r, Reason.AEM_CHANGED)

    def _link(self, node: _Node, peer: _Node, time: float, reason: Reason) -> None:
        """Record that ``node`` was heard with ``peer``; flag a second peer held together
        with the first (interleaved) or held long each (no rotation edge)."""
        found = node.peers.get(peer.serial)
        returning = found is not None and node.last_peer not in (-1, peer.serial)
        if found is None:
            if len(node.peers) >= self.settings.links:
                oldest = min(node.peers, key=lambda k: node.peers[k].last)
                del node.peers[oldest]
            node.peers[peer.serial] = _Span(time, time)
        else:
            found.first, found.last = min(found.first, time), max(found.last, time)
        node.last_peer = peer.serial
        hold = self.settings.hold_seconds
        held = sum(1 for sp in node.peers.values() if sp.last - sp.first >= hold)
        if not (returning or len(node.peers) > 2 or held >= 2):
            return
        self._flag(node, reason)
        if reason is Reason.MULTI_RPI:  # the address's RPIs carry the reason from now on
            for serial in node.peers:
                other = self._live.get(serial)
                if other is not None:
                    self._flag(other, reason)


def time_shift_seconds(en_interval: int, first_seen: float, last_seen: float) -> float:
    """How far outside the RPI's own interval [j x 600, (j + 1) x 600) a scan was heard."""
    start = en_interval * EN_INTERVAL_SECONDS
    end = start + EN_INTERVAL_SECONDS
    return max(0.0, start - first_seen, last_seen - end)


def time_shifted(scans: Iterable[MatchedScan], offset_seconds: float) -> list[MatchedScan]:
    """``scans`` with :attr:`Reason.TIME_SHIFTED` set on those heard more than
    ``offset_seconds`` from their RPI's interval (evaluation stage, after the search)."""
    out: list[MatchedScan] = []
    for scan in scans:
        if time_shift_seconds(scan.en_interval, scan.first_seen, scan.last_seen) > offset_seconds:
            scan = replace(scan, relay=int(scan.relay | Reason.TIME_SHIFTED))
        out.append(scan)
    return out
