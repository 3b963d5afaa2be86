"""``status``, ``enable`` and ``disable`` when no daemon runs: straight to the data dir.

A data directory of another user (root included, e.g. ``sudo contact-agent enable`` on
the service user's directory while the service is stopped) is refused with exit 78 by
:meth:`Store.open`: nothing is written or chowned there. Run the command as the
directory's owner (``sudo -u contact-agent contact-agent enable``) or start the daemon.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.clock import Clock, decide_clock_trust, en_interval_number
from agent.clocksync import system_synchronized
from agent.config import Config
from agent.consent import ConsentState
from agent.daemon.status import stored_status
from agent.daemon.status_model import AgentStatus, ClockStatus, StoredStatus

NOT_RUNNING = "the daemon is not running"


async def offline_status(data_dir: Path, config: Config, clock: Clock) -> AgentStatus:
    """The status of a data dir with no daemon running (nothing is created if absent)."""
    wall = clock.wall()
    require_sync = config.clock.require_sync
    # the system is asked only when the configuration makes it count (as current_trust)
    synchronized, source = await system_synchronized() if require_sync else (True, "config")
    stored = StoredStatus(consent=ConsentState.UNSET.value)
    if (data_dir / "contact-agent.db").exists():
        from agent.store import Store  # not imported for an empty data dir

        store = await Store.open(data_dir, clock=clock)
        try:
            stored = await stored_status(store, wall, config.risk)
        finally:
            await store.close()
    decision = decide_clock_trust(
        require_sync=require_sync,
        system_synchronized=synchronized,
        wall=wall,
        lower_bound=stored.clock_lower_bound,
    )
    return AgentStatus(
        daemon=None,
        stored=stored,
        clock=ClockStatus.of(
            decision,
            source=source,
            require_sync=require_sync,
            lower_bound=stored.clock_lower_bound,
        ),
        advertising=False,
        advertising_reason=NOT_RUNNING,
        scanning=False,
        scanning_reason=NOT_RUNNING,
        adapter=config.radio.adapter,
        current_interval=en_interval_number(wall) if wall >= 0 else None,
    )


async def offline_network_log(data_dir: Path, since: float, clock: Clock) -> list[dict[str, Any]]:
    """The transparency log of a data dir with no daemon running (empty if none)."""
    if not (data_dir / "contact-agent.db").exists():
        return []
    from agent.store import Store

    store = await Store.open(data_dir, clock=clock)
    try:
        return [c.as_dict() for c in await store.network_contacts(since)]
    finally:
        await store.close()


async def set_consent_offline(data_dir: Path, enabled: bool, clock: Clock) -> ConsentState:
    """Persist consent for the next daemon start."""
    from agent.store import Store

    store = await Store.open(data_dir, clock=clock)
    try:
        return await store.set_consent(enabled, clock.wall())
    finally:
        await store.close()
