"""Is the system clock synchronised? The signals of ``docs/daemon.md``, "Clock trust".

systemd-timesyncd touches ``/run/systemd/timesync/synchronized`` once the clock has been
synchronised since boot; ``org.freedesktop.timedate1`` answers ``NTPSynchronized`` on the
system bus. :func:`system_synchronized` asks timedate1 and falls back to the marker when the
service cannot be reached (containers, test buses).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from agent.clock import TrustDecision, decide_clock_trust

SYNC_MARKER = Path("/run/systemd/timesync/synchronized")


def marker_synchronized(marker: Path | None = None) -> bool:
    """True when systemd's synchronisation marker exists.

    ``CONTACT_AGENT_SYNC_MARKER`` overrides the marker path (tests, other NTP daemons).
    """
    override = os.environ.get("CONTACT_AGENT_SYNC_MARKER")
    path = marker or (Path(override) if override else SYNC_MARKER)
    return path.exists()


TIMEDATE_NAME = "org.freedesktop.timedate1"
TIMEDATE_PATH = "/org/freedesktop/timedate1"
TIMEDATE_TIMEOUT_SECONDS = 3.0


async def timedate_synchronized(
    bus_address: str | None = None, timeout: float = TIMEDATE_TIMEOUT_SECONDS
) -> bool | None:
    """``NTPSynchronized`` of ``org.freedesktop.timedate1`` on the system bus.

    Returns None when the bus or the service cannot be reached (no systemd-timedated,
    a container, a private test bus); the caller then falls back to the marker.
    ``bus_address`` defaults to ``$DBUS_SYSTEM_BUS_ADDRESS`` or the standard socket.
    """
    # imported here: `contact-agent status` without a daemon must answer at once
    from dbus_fast import BusType, DBusFastError, Message, MessageType
    from dbus_fast.aio import MessageBus

    try:
        if bus_address:
            bus = MessageBus(bus_address=bus_address)
        else:
            bus = MessageBus(bus_type=BusType.SYSTEM)
        await asyncio.wait_for(bus.connect(), timeout)
    except (OSError, TimeoutError, ValueError, DBusFastError):
        return None
    try:
        reply = await asyncio.wait_for(
            bus.call(
                Message(
                    destination=TIMEDATE_NAME,
                    path=TIMEDATE_PATH,
                    interface="org.freedesktop.DBus.Properties",
                    member="Get",
                    signature="ss",
                    body=[TIMEDATE_NAME, "NTPSynchronized"],
                )
            ),
            timeout,
        )
    except (OSError, TimeoutError, ValueError, DBusFastError):
        return None
    finally:
        bus.disconnect()
    if reply is None or reply.message_type is not MessageType.METHOD_RETURN:
        return None
    value = reply.body[0].value if reply.body else None
    return value if isinstance(value, bool) else None


async def system_synchronized(
    bus_address: str | None = None, marker: Path | None = None
) -> tuple[bool, str]:
    """Is the clock synchronised, and which signal said so (``timedate1`` or ``marker``).

    timedate1 answers first; when it cannot be asked, systemd's marker file decides.
    """
    answer = await timedate_synchronized(bus_address)
    if answer is not None:
        return answer, "timedate1"
    return marker_synchronized(marker), "marker"


class BoundStore(Protocol):
    """Where the lower bound of true time is persisted (the store)."""

    async def clock_lower_bound(self) -> float | None: ...


@dataclass(frozen=True, slots=True)
class CurrentTrust:
    """Clock trust now, with the persisted lower bound it was decided against."""

    decision: TrustDecision
    lower_bound: float | None

    @property
    def trusted(self) -> bool:
        return self.decision.state.trusted


async def current_trust(
    store: BoundStore, wall: float, *, require_sync: bool, synchronized: bool | None = None
) -> CurrentTrust:
    """Clock trust (docs/daemon.md, "Clock trust") for a command that runs without the daemon.

    The persisted lower bound comes from the store; ``synchronized`` is the system's
    answer when the caller already has one (None: ask timedate1, then systemd's marker,
    and only when ``require_sync``). The running daemon keeps its own
    :class:`~agent.daemon.clockwatch.ClockWatch`, which decides the same way.
    """
    lower_bound = await store.clock_lower_bound()
    if synchronized is None:
        synchronized = (await system_synchronized())[0] if require_sync else True
    decision = decide_clock_trust(
        require_sync=require_sync,
        system_synchronized=synchronized,
        wall=wall,
        lower_bound=lower_bound,
    )
    return CurrentTrust(decision, lower_bound)
