"""What users and other tools ask of the running daemon (over the control socket).

``status``, ``network_log``, ``enable``, ``disable``, ``fetch``, ``reload``, ``forget``
and ``release_keys`` (same-day release for a self-report). Every command but ``status``
and ``network_log`` changes state and is accepted only from root, the service user or its group.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from agent.clock import en_interval_number
from agent.config import load_config
from agent.consent import write_consent
from agent.constants import RETENTION_SECONDS
from agent.control import RELEASE_COMMAND, Handler, Peer
from agent.daemon.radio import is_scanning
from agent.daemon.supervise import wait_until
from agent.errors import AgentError
from agent.keyschedule import KeySchedule

if TYPE_CHECKING:
    from agent.daemon.service import AgentService

_LOGGER = logging.getLogger(__name__)

RELEASE_ROTATION_TIMEOUT = 20.0
"""Real seconds a same-day release waits for the radio to rotate off the ended key."""
RADIO_OFF_TIMEOUT = 3.0
"""Real seconds ``forget`` waits for scanning to stop before deleting."""
PRIVILEGED = frozenset({"enable", "disable", "fetch", "reload", "forget", RELEASE_COMMAND})


class Actions:
    """The daemon's commands; :meth:`handlers` feeds the control socket."""

    def __init__(self, service: AgentService) -> None:
        self._service = service

    def handlers(self) -> dict[str, Handler]:
        def command(action: Any) -> Handler:
            async def handle(request: Mapping[str, Any], peer: Peer) -> Mapping[str, Any]:
                result: Mapping[str, Any] = await action()
                return result

            return handle

        return {
            "status": command(self._service.status),
            "network_log": command(self.network_log),
            "enable": command(lambda: self.consent(True)),
            "disable": command(lambda: self.consent(False)),
            "fetch": command(self.fetch),
            "reload": command(self.reload),
            "forget": command(self.forget),
            RELEASE_COMMAND: command(self.release_current_key),
        }

    async def network_log(self) -> dict[str, Any]:
        """The transparency log of the last 14 days (``network-log``)."""
        since = self._service.clock.wall() - RETENTION_SECONDS
        contacts = await self._service.store.network_contacts(since)
        return {"contacts": [c.as_dict() for c in contacts]}

    async def consent(self, enabled: bool) -> dict[str, Any]:
        state = await self._service.set_consent(enabled)
        return {"consent": state.value, "applied": True}

    async def fetch(self) -> dict[str, Any]:
        """One key fetch + match now (the ``fetch`` command while the daemon runs)."""
        fetcher = self._service.fetcher
        if fetcher is None:
            raise AgentError("the daemon is still starting")
        return await fetcher.fetch_now()

    async def reload(self) -> dict[str, Any]:
        """Re-read the config file; on error keep the old one and say why."""
        service = self._service
        if service.config_path is None:
            return {"reloaded": False, "reason": "no configuration file"}
        service.sd.reloading()
        try:
            config = load_config(service.config_path)
        except AgentError as exc:
            _LOGGER.error("reload failed, keeping the old configuration: %s", exc)
            service.sd.reloaded()
            raise
        old, service.config = service.config, config
        service.clockwatch.require_sync = config.clock.require_sync
        if service.fetcher is not None:
            service.fetcher.reconfigure(config, service.make_notifier())
        radio_changed = config.radio != old.radio
        if radio_changed:
            service.restart_radio()
        await service.clockwatch.check()
        service.apply_policy()
        service.sd.reloaded()
        _LOGGER.info("configuration reloaded from %s", service.config_path)
        return {"reloaded": True, "radio_restarted": radio_changed}

    async def forget(self) -> dict[str, Any]:
        """Revocation while running: radio off, then every stored row deleted, provably.

        Consent goes off first (no advertising or scanning within 2 s); sightings still in
        memory are written and then deleted with everything else; the radio is rebuilt
        with an empty key schedule so no deleted key is saved again.
        """
        service = self._service
        await service.set_consent(False)
        await wait_until(lambda: not is_scanning(service.radio_status()), RADIO_OFF_TIMEOUT)
        if service.ingest is not None:
            service.ingest.drain()  # nothing held back may be written after the deletion
        if service.writer is not None:
            await service.writer.flush()
        service.restart_radio(KeySchedule())
        await service.store.forget()
        state = await write_consent(service.store, False, service.clock.wall())
        service.consent = state
        await service.persist_bound(force=True)
        _LOGGER.warning("all data deleted on request; consent is off")
        return {"forgotten": True, "consent": state.value}

    async def release_current_key(self) -> dict[str, Any]:
        """Same-day release: end the key on air, persist it, and rotate away from it.

        Answers once the radio put a fresh key on air (or is not advertising), so the
        ended key is off air before anyone publishes it.
        """
        service = self._service
        schedule = service.schedule
        if schedule is None:
            raise AgentError("the daemon is still starting")
        ended = schedule.end_current_key(en_interval_number(service.clock.wall()))
        await service.persist_teks(schedule.pop_dirty())
        rotated = False
        if ended is not None and service.radio_status().get("advertising"):
            before = service.radio_status().get("rotations", 0)
            service.rotate_now()

            def moved_on() -> bool:
                status = service.radio_status()
                return status.get("rotations", 0) != before or not status.get("advertising")

            rotated = await wait_until(moved_on, RELEASE_ROTATION_TIMEOUT)
        _LOGGER.info("same-day release: current key %s", "ended" if ended else "not on air")
        return {"ended": ended is not None, "rotated": rotated}
