"""The radio the daemon runs: advertising + scanning + health, and their one supervisor.

:class:`Radio` implements the daemon's radio port on one adapter. It watches bluetoothd
and the adapter (:class:`~agent.ble.health.BluezHealth`) and keeps two parts running while
they are wanted and possible:

- *advertising*: the :class:`~agent.ble.rotation.RotationLoop` on bless;
- *scanning*: the :class:`~agent.ble.scanning.ScanLoop` on bleak.

It is the only restart loop of the radio. A part whose task fails is restarted after an
exponential back-off (0.5 s .. 60 s); when bluetoothd or the adapter comes back (a new
health generation) both parts start over at once, well within the 10 s of bad-input case 50.
A lost connection to the system D-Bus is reopened on the same back-off, and
:meth:`Radio.restart` (new ``[radio]`` settings, a new key schedule) starts everything
over; in both cases the old parts stop before new ones start. D-Bus ``AccessDenied``
ends :meth:`Radio.run` with :class:`~agent.errors.BluetoothAccessDeniedError` (exit 78),
the only error it raises. Consent and clock trust are the caller's:
:meth:`Radio.set_advertising_allowed` and :meth:`Radio.set_scanning_allowed` take effect
at once and hold across restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from agent.backoff import Backoff, Retries
from agent.ble import ScanPeriodSink, SightingSink, Sleep
from agent.ble.advertiser import BlessAdvertiser
from agent.ble.errors import ACCESS_DENIED_MESSAGE, Action, classify_agent_error
from agent.ble.health import BluezHealth
from agent.ble.rotation import PersistTeks, RotationLoop
from agent.ble.scanner import BleakEnScanner
from agent.ble.scanning import ScanLoop, ScanSchedule
from agent.clock import Clock
from agent.config import RadioConfig
from agent.constants import (
    DBUS_CALL_TIMEOUT_SECONDS,
    RADIO_BACKOFF_INITIAL_SECONDS,
    RADIO_BACKOFF_MAX_SECONDS,
    ROTATION_GAP_SECONDS,
    SCAN_INSTANCE_SECONDS,
    SCANNER_SILENCE_MAX_SECONDS,
    SCANNER_SILENCE_SECONDS,
)
from agent.errors import BluetoothAccessDeniedError, BluetoothError
from agent.keyschedule import KeySchedule, RotationPlanner
from agent.payload import Metadata

_LOGGER = logging.getLogger(__name__)

ADVERTISING = "advertising"
SCANNING = "scanning"
_HEALTHY_RUN_SECONDS = 30.0
"""A part that ran this long before failing starts its back-off from the beginning."""


@dataclass(frozen=True, slots=True)
class RadioTuning:
    """Timing knobs; the defaults are the production values, tests shrink them."""

    scan_instance_seconds: float = SCAN_INSTANCE_SECONDS
    watchdog_interval: float = 10.0
    silence_seconds: float = SCANNER_SILENCE_SECONDS
    silence_max_seconds: float = SCANNER_SILENCE_MAX_SECONDS
    rotation_gap: float = ROTATION_GAP_SECONDS
    rotation_check_interval: float = 10.0
    backoff_initial: float = RADIO_BACKOFF_INITIAL_SECONDS
    backoff_max: float = RADIO_BACKOFF_MAX_SECONDS
    call_timeout: float = DBUS_CALL_TIMEOUT_SECONDS
    supervise_interval: float = 1.0
    """The supervisor checks its parts at least this often (and on every event)."""


class _Part:
    """One supervised task and its restart bookkeeping."""

    def __init__(
        self,
        name: str,
        run: Callable[[], Coroutine[Any, Any, None]],
        working: Callable[[], bool],
        backoff: Retries,
    ) -> None:
        self.name = name
        self.run = run
        self.working = working
        """True while the part does its job (clears the last error)."""
        self.backoff = backoff
        self.task: asyncio.Task[None] | None = None
        self.generation = -1
        self.started_at = 0.0
        self.not_before = 0.0
        self.restarts = 0
        self.last_error: str | None = None


class Radio:
    """The daemon's radio port on ``config.adapter``: run :meth:`run` as a task.

    The one restart loop of the radio: a part that fails is restarted with back-off, a
    lost D-Bus connection is reopened with back-off, and :meth:`restart` (a new
    ``[radio]`` configuration, a new key schedule after ``forget``) starts everything
    over; what is allowed on air is kept across all of them.
    """

    def __init__(
        self,
        config: RadioConfig,
        clock: Clock,
        schedule: KeySchedule,
        metadata: Metadata,
        sighting_queue: SightingSink,
        *,
        scan_periods: ScanPeriodSink | None = None,
        persist_teks: PersistTeks | None = None,
        sleep: Sleep = asyncio.sleep,
        tuning: RadioTuning | None = None,
        planner: RotationPlanner | None = None,
        rng: random.Random | None = None,
        advertise: bool = True,
        scan: bool = True,
    ) -> None:
        self.tuning = tuning or RadioTuning()
        self._clock = clock
        self._sinks = (sighting_queue, scan_periods)
        self._persist = persist_teks
        self._sleep = sleep
        self._planner = planner
        self._rng = rng
        self._wake = asyncio.Event()
        self._allowed = {ADVERTISING: advertise, SCANNING: scan}
        self._wanted: tuple[RadioConfig, KeySchedule, Metadata] | None = None
        """What :meth:`restart` asked for, taken up by the next round."""
        self._link = self._backoff(healthy_after=_HEALTHY_RUN_SECONDS)
        """Failures in a row of our own D-Bus connection."""
        self._connected_at = 0.0
        self.heartbeat: float | None = None
        """Monotonic time of the latest supervision round (None: connecting to BlueZ)."""
        self._build(config, schedule, metadata)

    def _build(self, config: RadioConfig, schedule: KeySchedule, metadata: Metadata) -> None:
        """New parts: at construction, and to start over (nothing of the old ones runs)."""
        t, sleep = self.tuning, self._sleep
        self.config = config
        self.health = BluezHealth(config.adapter, call_timeout=t.call_timeout, changed=self._wake)
        self.advertiser = BlessAdvertiser(
            config.adapter, sleep=sleep, gap_seconds=t.rotation_gap, call_timeout=t.call_timeout
        )
        self.rotation = RotationLoop(
            self.advertiser,
            schedule,
            metadata,
            self._clock,
            sleep=sleep,
            planner=self._planner,
            persist=self._persist,
            check_interval=t.rotation_check_interval,
        )
        sightings, periods = self._sinks
        self.scanner = BleakEnScanner(
            config.adapter,
            self._clock,
            sightings,
            rssi_correction=config.rssi_correction_db,
            passive=config.passive,
            passive_available=lambda: self.health.passive_available,
            call_timeout=t.call_timeout,
        )
        self.scan_loop = ScanLoop(
            self.scanner,
            self._clock,
            ScanSchedule(
                mode=config.scan_mode,
                instance_seconds=t.scan_instance_seconds,
                duty_scan_seconds=config.duty_scan_seconds,
                duty_period_seconds=config.duty_period_seconds,
                watchdog_interval=t.watchdog_interval,
                silence_seconds=t.silence_seconds,
                silence_max_seconds=t.silence_max_seconds,
            ),
            periods=periods,
            sleep=sleep,
            discovering=lambda: self.health.discovering,
            rng=self._rng,
        )
        self._parts = {
            ADVERTISING: _Part(
                ADVERTISING,
                self.rotation.run,
                lambda: self.advertiser.advertising,
                self._backoff(),
            ),
            SCANNING: _Part(
                SCANNING, self.scan_loop.run, lambda: self.scanner.scanning, self._backoff()
            ),
        }

    def _backoff(self, healthy_after: float | None = None) -> Retries:
        schedule = Backoff(self.tuning.backoff_initial, self.tuning.backoff_max)
        if self._rng is None:
            return Retries(schedule, healthy_after=healthy_after)
        return Retries(schedule, self._rng, healthy_after=healthy_after)

    # ---- controls ----------------------------------------------------------------------
    def set_advertising_allowed(self, allowed: bool) -> None:
        """Consent off or clock untrusted: False takes the advertisement off air now."""
        self._allowed[ADVERTISING] = allowed
        self._wake.set()

    def set_scanning_allowed(self, allowed: bool) -> None:
        """Consent off: False stops scanning now."""
        self._allowed[SCANNING] = allowed
        self._wake.set()

    def rotate_now(self) -> None:
        """Rotate address and RPI at the next check (e.g. after a clock step)."""
        self.rotation.request_rotation()

    def restart(self, config: RadioConfig, schedule: KeySchedule, metadata: Metadata) -> None:
        """Start over on a new ``[radio]`` configuration or key schedule (after ``forget``).

        The old parts are stopped (advertisement off air) before the new ones start.
        """
        self._wanted = (config, schedule, metadata)
        self._wake.set()

    @property
    def ready(self) -> bool:
        """BlueZ answered and the adapter exists and is powered."""
        return self.health.ready

    def status(self) -> dict[str, Any]:
        """A snapshot for ``status --json``; no identifiers."""
        adv, scan = self._parts[ADVERTISING], self._parts[SCANNING]
        return {
            "adapter": self.config.adapter,
            "bluetoothd": self.health.owner is not None,
            "adapter_state": self.health.describe(),
            "advertising": self.advertiser.advertising,
            "advertising_allowed": self._allowed[ADVERTISING],
            "advertising_paused": self.rotation.paused_reason,
            "scanning": self.scanner.scanning,
            "scanning_allowed": self._allowed[SCANNING],
            "scan_mode": self.scanner.mode,
            "scan_schedule": self.scan_loop.schedule.mode,
            "last_scan_end": self.scan_loop.last_scan_end,
            "rotations": self.rotation.rotations,
            "last_rotation": self.rotation.last_rotation,
            "counters": {
                **self.scanner.counters.as_dict(),
                "advertiser_restarts": adv.restarts,
                "scanner_restarts": scan.restarts,
                "watchdog_restarts": self.scan_loop.watchdog_restarts,
            },
            "last_error": {ADVERTISING: adv.last_error, SCANNING: scan.last_error},
            "relay_guard": dataclasses.asdict(self.scanner.relay_guard.stats()),
        }

    # ---- supervision ---------------------------------------------------------------------
    async def run(self) -> None:
        """Supervise until cancelled; only BluetoothAccessDeniedError (exit 78) ends it."""
        try:
            await self._connect()
            while True:
                if self.health.fatal is not None:
                    raise self.health.fatal
                if self._wanted is not None or not self.health.connected:
                    await self._start_over()
                    continue
                self._wake.clear()
                for part in self._parts.values():
                    await self._reconcile(part)
                self.heartbeat = self._clock.monotonic()
                await self._idle(self.tuning.supervise_interval)
        finally:
            await self._stop()

    async def _start_over(self) -> None:
        """Stop everything, then new parts on a new connection (like a new radio)."""
        await self._stop()
        self.heartbeat = None
        if self._wanted is None:  # our D-Bus connection was lost
            self._link.ran_for(asyncio.get_running_loop().time() - self._connected_at)
            delay = self._link.next_delay()
            _LOGGER.warning(
                "Bluetooth: lost the connection to the system D-Bus; reconnecting in %.1f s", delay
            )
            self._wake.clear()
            await self._idle(delay)
            if self._wanted is None:
                self._wanted = (self.config, self.rotation.schedule, self.rotation.metadata)
        else:
            _LOGGER.info("restarting the radio")
        await self._connect()

    async def _connect(self) -> None:
        """Open our watch on BlueZ, retried with back-off (a restart cuts a wait short)."""
        while True:
            if self._wanted is not None:
                wanted, self._wanted = self._wanted, None
                self._build(*wanted)
            try:
                await self.health.start()
                self._connected_at = asyncio.get_running_loop().time()
                return
            except BluetoothAccessDeniedError:
                raise
            except BluetoothError as exc:
                delay = self._link.next_delay()
                _LOGGER.warning("cannot watch BlueZ yet (%s); retrying in %.1f s", exc, delay)
                self._wake.clear()
                await self._idle(delay)

    async def _idle(self, seconds: float) -> None:
        """Up to ``seconds`` real seconds, less when something changed."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    async def _stop(self) -> None:
        for part in self._parts.values():
            await self._stop_part(part)
        await self.health.stop()

    async def _reconcile(self, part: _Part) -> None:
        now = asyncio.get_running_loop().time()
        if part.task is not None and part.task.done():
            self._collect(part, now)
        elif part.task is not None and part.working():
            part.last_error = None
        if not (self._allowed[part.name] and self.health.ready):
            await self._stop_part(part)
            return
        generation = self.health.generation
        if part.generation != generation:
            if part.task is not None:
                _LOGGER.info("%s: adapter came back, starting over", part.name)
                part.restarts += 1
                await self._stop_part(part)
            part.backoff.reset()
            part.not_before = now
        if part.task is None and now >= part.not_before:
            part.generation = generation
            part.started_at = now
            part.task = asyncio.create_task(part.run(), name=f"radio-{part.name}")
            part.task.add_done_callback(lambda _task: self._wake.set())

    def _collect(self, part: _Part, now: float) -> None:
        """A part's task ended by itself: note why and schedule the restart."""
        task, part.task = part.task, None
        assert task is not None
        if task.cancelled():
            return
        exc = task.exception() or BluetoothError(f"{part.name} stopped unexpectedly")
        c = classify_agent_error(exc)
        if c.action is Action.FATAL:
            if isinstance(exc, BluetoothAccessDeniedError):
                raise exc
            raise BluetoothAccessDeniedError(ACCESS_DENIED_MESSAGE) from exc
        part.restarts += 1
        if now - part.started_at > _HEALTHY_RUN_SECONDS:
            part.backoff.reset()
        first = part.backoff.failures == 0
        delay = part.backoff.next_delay()
        part.not_before = now + delay
        part.last_error = c.summary()
        level = logging.WARNING if first and c.action is not Action.WAIT else logging.DEBUG
        _LOGGER.log(level, "%s failed: %s; retrying in %.1f s", part.name, c.summary(), delay)

    async def _stop_part(self, part: _Part) -> None:
        task, part.task = part.task, None
        if task is None:
            return
        task.cancel()
        # asyncio.wait: neither the part's error nor its cancellation propagates to us
        done, _ = await asyncio.wait({task}, timeout=self.tuning.call_timeout + 1.0)
        if task in done and not task.cancelled() and task.exception() is not None:
            _LOGGER.debug("%s: error while stopping: %s", part.name, task.exception())
