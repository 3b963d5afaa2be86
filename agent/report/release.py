"""Own keys for a report: same-day release, then the keys of the last 14 days (Google's key server
docs).

The key on air is ended first (its rolling period cut to the intervals already
broadcast) so that every published key is dead: nobody can follow the reporter with it
afterwards. When the daemon runs it owns the key schedule, so it is asked over the
control socket to end the key and rotate at once; otherwise the store is changed
directly (synchronous=FULL), and the daemon's next start begins a fresh key.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from agent.clock import Clock, en_interval_number, rolling_start_interval_number
from agent.constants import RETENTION_DAYS, TEK_ROLLING_PERIOD
from agent.control import (
    RELEASE_COMMAND,
    ControlError,
    DaemonNotRunningError,
    client_socket_paths,
    request,
)
from agent.errors import AgentError
from agent.keyschedule import KeySchedule, OwnTek
from agent.models import TemporaryExposureKey

_LOGGER = logging.getLogger(__name__)



class _Daemon(enum.Enum):
    NOT_RUNNING = "not running"
    RELEASED = "ended its key"
    UNSUPPORTED = "has no release command"


class OwnKeyStore(Protocol):
    async def load_own_teks(self) -> list[OwnTek]: ...

    async def save_own_teks(self, teks: Iterable[OwnTek]) -> None: ...


def publishable(teks: Iterable[OwnTek], en_interval: int) -> list[TemporaryExposureKey]:
    """Keys that went on air, started within 14 days and are no longer on air.

    A key ended by same-day release covers up to the current interval, so "no longer on
    air" means it ends by the next interval (the daemon has rotated away from it).
    """
    oldest = rolling_start_interval_number(en_interval) - RETENTION_DAYS * TEK_ROLLING_PERIOD
    return [
        TemporaryExposureKey(t.key_data, t.rolling_start_interval_number, t.rolling_period)
        for t in teks
        if t.max_broadcast_interval is not None
        and t.rolling_start_interval_number >= oldest
        and t.end_interval_number <= en_interval + 1
    ]


def broadcast_count(
    teks: Iterable[OwnTek], en_interval: int, withhold_days: frozenset[int] = frozenset()
) -> int:
    """Own keys of the last 14 days that went on air (ended or not), outside withheld days."""
    oldest = rolling_start_interval_number(en_interval) - RETENTION_DAYS * TEK_ROLLING_PERIOD
    return sum(
        1
        for t in teks
        if t.max_broadcast_interval is not None
        and t.rolling_start_interval_number >= oldest
        and rolling_start_interval_number(t.rolling_start_interval_number) not in withhold_days
    )


class StoreKeyRelease:
    """Releases own keys through the daemon when it runs, else through the store."""

    def __init__(self, store: OwnKeyStore, data_dir: Path, clock: Clock) -> None:
        self._store = store
        self._data_dir = data_dir
        self._clock = clock

    async def available(self, withhold_days: frozenset[int] = frozenset()) -> int:
        teks = await self._store.load_own_teks()
        return broadcast_count(teks, en_interval_number(self._clock.wall()), withhold_days)

    async def release(self) -> list[TemporaryExposureKey]:
        answer = await self._ask_daemon()
        # read the clock after the daemon answered: it may have crossed into a new interval
        en_interval = en_interval_number(self._clock.wall())
        if answer is _Daemon.NOT_RUNNING:
            schedule = KeySchedule(await self._store.load_own_teks())
            schedule.end_current_key(en_interval)
            changed = schedule.pop_dirty()
            if changed:
                await self._store.save_own_teks(changed)
        elif answer is _Daemon.UNSUPPORTED:
            # The daemon owns the schedule, so the store must not be changed behind its
            # back; the key on air is simply left out (it ends at midnight as usual).
            _LOGGER.warning(
                "the running daemon cannot end its current key; today's key is not published"
            )
        return publishable(await self._store.load_own_teks(), en_interval)

    async def _ask_daemon(self) -> _Daemon:
        paths = client_socket_paths(self._data_dir)
        try:
            await asyncio.to_thread(request, paths, RELEASE_COMMAND)
        except DaemonNotRunningError:
            return _Daemon.NOT_RUNNING
        except ControlError as exc:
            if "unknown command" in str(exc):
                return _Daemon.UNSUPPORTED
            raise AgentError(
                f"the running daemon could not end its current key ({exc}); nothing was published"
            ) from exc
        _LOGGER.info("the daemon ended its current key for same-day release")
        return _Daemon.RELEASED
