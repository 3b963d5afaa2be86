"""What users and other tools ask of the running daemon (over the control socket).

``status``, ``network_log``, ``enable``, ``disable``, ``fetch``, ``reload``, ``forget``
and ``release_keys`` (same-day release for a self-report). Every command but ``status``
and ``network_log`` changes state and is accepted only from root, the service user or its group.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from agent.clock import Clock, en_interval_number
from agent.config import Config, load_config
from agent.constants import RETENTION_SECONDS
from agent.control import RELEASE_COMMAND, Handler, Peer
from agent.daemon.radio import is_scanning
from agent.daemon.status_json import status_json
from agent.daemon.status_model import AgentStatus
from agent.daemon.supervise import wait_until
from agent.errors import AgentError
from agent.keyschedule import KeySchedule

if TYPE_CHECKING:
    from agent.consent import ConsentState
    from agent.daemon.clockwatch import BoundKeeper
    from agent.daemon.fetching import FetchScheduler
    from agent.daemon.sdnotify import SdNotifier
    from agent.ingest import IngestPipe
    from agent.store import SightingWriter, Store

_LOGGER = logging.getLogger(__name__)

RELEASE_ROTATION_TIMEOUT = 20.0
"""Real seconds a same-day release waits for the radio to rotate off the ended key."""
RADIO_OFF_TIMEOUT = 3.0
"""Real seconds ``forget`` waits for scanning to stop before deleting."""
PRIVILEGED = frozenset({"enable", "disable", "fetch", "reload", "forget", RELEASE_COMMAND})


class RadioControl(Protocol):
    """What the commands (and housekeeping) need of the daemon's radio."""

    @property
    def schedule(self) -> KeySchedule:
        """The key schedule on air now (a restart may replace it)."""

    def status(self) -> dict[str, Any]: ...

    def rotate_now(self) -> None: ...

    def restart(self, schedule: KeySchedule | None = None) -> None: ...


class Actions:
    """The daemon's commands; :meth:`handlers` feeds the control socket.

    Built by the service once its parts exist, with each part it needs; the service owns
    consent, the configuration and the status, and hands in the callables that change or
    read them.
    """

    def __init__(
        self,
        *,
        clock: Clock,
        store: Store,
        radio: RadioControl,
        ingest: IngestPipe,
        writer: SightingWriter,
        fetcher: FetchScheduler,
        bound: BoundKeeper,
        sd: SdNotifier,
        config_path: Path | None,
        set_consent: Callable[[bool], Awaitable[ConsentState]],
        reconfigure: Callable[[Config], Awaitable[bool]],
        status: Callable[[], Awaitable[AgentStatus]],
    ) -> None:
        """reconfigure: applies a new configuration; True when the radio was restarted."""
        self._clock = clock
        self._store = store
        self._radio = radio
        self._ingest = ingest
        self._writer = writer
        self._fetcher = fetcher
        self._bound = bound
        self._sd = sd
        self._config_path = config_path
        self._set_consent = set_consent
        self._reconfigure = reconfigure
        self._status = status

    def handlers(self) -> dict[str, Handler]:
        def command(action: Any) -> Handler:
            async def handle(request: Mapping[str, Any], peer: Peer) -> Mapping[str, Any]:
                result: Mapping[str, Any] = await action()
                return result

            return handle

        return {
            "status": command(self.status),
            "network_log": command(self.network_log),
            "enable": command(lambda: self.consent(True)),
            "disable": command(lambda: self.consent(False)),
            "fetch": command(self.fetch),
            "reload": command(self.reload),
            "forget": command(self.forget),
            RELEASE_COMMAND: command(self.release_current_key),
        }

    async def status(self) -> dict[str, object]:
        """The live status in its JSON form (``status`` asked over the socket)."""
        return status_json(await self._status())

    async def network_log(self) -> dict[str, Any]:
        """The transparency log of the last 14 days (``network-log``)."""
        since = self._clock.wall() - RETENTION_SECONDS
        contacts = await self._store.network_contacts(since)
        return {"contacts": [c.as_dict() for c in contacts]}

    async def consent(self, enabled: bool) -> dict[str, Any]:
        state = await self._set_consent(enabled)
        return {"consent": state.value, "applied": True}

    async def fetch(self) -> dict[str, Any]:
        """One key fetch + match now (the ``fetch`` command while the daemon runs)."""
        return await self._fetcher.fetch_now()

    async def reload(self) -> dict[str, Any]:
        """Re-read the config file; on error keep the old one and say why."""
        if self._config_path is None:
            return {"reloaded": False, "reason": "no configuration file"}
        self._sd.reloading()
        try:
            config = load_config(self._config_path)
        except AgentError as exc:
            _LOGGER.error("reload failed, keeping the old configuration: %s", exc)
            self._sd.reloaded()
            raise
        radio_changed = await self._reconfigure(config)
        self._sd.reloaded()
        _LOGGER.info("configuration reloaded from %s", self._config_path)
        return {"reloaded": True, "radio_restarted": radio_changed}

    async def forget(self) -> dict[str, Any]:
        """Revocation while running: radio off, then every stored row deleted, provably.

        Consent goes off first (no advertising or scanning within 2 s); sightings still in
        memory are written and then deleted with everything else; the radio is rebuilt
        with an empty key schedule so no deleted key is saved again.
        """
        await self._set_consent(False)
        await wait_until(lambda: not is_scanning(self._radio.status()), RADIO_OFF_TIMEOUT)
        self._ingest.drain()  # nothing held back may be written after the deletion
        await self._writer.flush()
        self._radio.restart(KeySchedule())
        await self._store.forget()
        state = await self._set_consent(False)  # written again: the deletion emptied it
        await self._bound.save(force=True)
        _LOGGER.warning("all data deleted on request; consent is off")
        return {"forgotten": True, "consent": state.value}

    async def release_current_key(self) -> dict[str, Any]:
        """Same-day release: end the key on air, persist it, and rotate away from it.

        Answers once the radio put a fresh key on air (or is not advertising), so the
        ended key is off air before anyone publishes it.
        """
        radio = self._radio
        schedule = radio.schedule
        ended = schedule.end_current_key(en_interval_number(self._clock.wall()))
        teks = schedule.pop_dirty()
        if teks:
            await self._store.save_own_teks(teks)
        rotated = False
        if ended is not None and radio.status().get("advertising"):
            before = radio.status().get("rotations", 0)
            radio.rotate_now()

            def moved_on() -> bool:
                status = radio.status()
                return status.get("rotations", 0) != before or not status.get("advertising")

            rotated = await wait_until(moved_on, RELEASE_ROTATION_TIMEOUT)
        _LOGGER.info("same-day release: current key %s", "ended" if ended else "not on air")
        return {"ended": ended is not None, "rotated": rotated}
