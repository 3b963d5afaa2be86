"""``contact-agent run``: one asyncio service supervising every part of the agent.

Parts:

- the radio (advertising + scanning, the port of :mod:`.radio`), switched by consent and
  clock trust; it restarts its own parts and is not restarted by the service;
- the sighting writer (batches to the store; flushed once more on shutdown);
- the clock watch (steps -> immediate rotation; trust -> advertising and matching);
- the key fetch + match schedule (:mod:`.fetching`), which notifies new exposures once;
- housekeeping (:mod:`.housekeeping`): daily purge, metrics and the Prometheus textfile;
- decoy report flows when configured, the watchdog (``WATCHDOG=1`` only while the loops
  above beat) and the control socket (:mod:`.actions`).

Every part but the radio is restarted with backoff when it fails (:mod:`.supervise`).

SIGTERM/SIGINT stop it cleanly (final flush, keys and clock bound persisted); SIGHUP
reloads the configuration. Time comes only from the injected clock and sleep function,
so the demo can run several agents in one process on an accelerated clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar

from agent import __version__, netlog
from agent.clock import Clock, SystemClock
from agent.clocksync import system_synchronized
from agent.config import Config
from agent.consent import ConsentState
from agent.control import ControlServer, daemon_socket_path
from agent.daemon.actions import PRIVILEGED, Actions
from agent.daemon.clockwatch import BoundKeeper, ClockWatch, SyncProbe
from agent.daemon.fetching import FetchScheduler
from agent.daemon.housekeeping import Housekeeping
from agent.daemon.metrics import Metrics
from agent.daemon.notify import Notifier
from agent.daemon.radio import (
    RadioFactory,
    RadioPort,
    RadioRequest,
    SightingQueue,
    Sleep,
    bluez_radio,
    with_adapter,
)
from agent.daemon.sdnotify import Heartbeats, SdNotifier
from agent.daemon.status import DaemonIdentity, LiveParts, Policy, degraded_reason, live_status
from agent.daemon.status_model import AgentStatus
from agent.daemon.supervise import supervise, wait_until
from agent.daemon.timebase import ServiceTiming
from agent.errors import AgentError
from agent.ingest import FloodGuard, IngestPipe
from agent.keyschedule import KeySchedule, OwnTek
from agent.memory import freeze_startup_objects
from agent.paths import ensure_private_dir
from agent.payload import Metadata
from agent.pipeline.fetch import clear_spool
from agent.report.chaff import run_chaff
from agent.store import SightingWriter, Store

_LOGGER = logging.getLogger(__name__)
_Part = TypeVar("_Part")



class _RadioHandle:
    """The one radio as the commands and housekeeping use it (:class:`RadioControl`):
    the radio port, with the key schedule the service keeps for it; a restart builds the
    request from the current configuration (:meth:`AgentService.restart_radio`)."""

    def __init__(
        self,
        radio: RadioPort,
        schedule: Callable[[], KeySchedule | None],
        restart: Callable[[KeySchedule | None], None],
    ) -> None:
        self._radio = radio
        self._schedule = schedule
        self._restart = restart

    @property
    def schedule(self) -> KeySchedule:
        schedule = self._schedule()
        assert schedule is not None  # set before the parts are wired
        return schedule

    def status(self) -> dict[str, Any]:
        return dict(self._radio.status())

    def rotate_now(self) -> None:
        self._radio.rotate_now()

    def restart(self, schedule: KeySchedule | None = None) -> None:
        self._restart(schedule)

class AgentService:
    """The daemon. Construct, then ``await run()``; :meth:`stop` ends it cleanly."""

    def __init__(
        self,
        config: Config,
        data_dir: Path,
        *,
        radio_factory: RadioFactory = bluez_radio,
        config_path: Path | None = None,
        clock: Clock | None = None,
        sleep: Sleep = asyncio.sleep,
        adapter: str | None = None,
        system_bus: str | None = None,
        session_bus: str | None = None,
        sync_probe: SyncProbe | None = None,
        environ: Mapping[str, str] | None = None,
        handle_signals: bool = True,
        timing: ServiceTiming | None = None,
        name: str = "contact-agent",
    ) -> None:
        """Build the service (nothing starts before :meth:`run`).

        radio_factory: builds the radio (default: BlueZ via ``DBUS_SYSTEM_BUS_ADDRESS``).
        config_path: the file SIGHUP and ``reload`` re-read; pinned keys are relative to it.
        clock, sleep: the time line (see :class:`~agent.daemon.timebase.AcceleratedClock`).
        adapter: overrides ``radio.adapter`` (``run --adapter``).
        system_bus: address asked for timedate1's NTPSynchronized (default: the system bus).
        session_bus: address for desktop notifications (default: the environment's).
        sync_probe: replaces the timedate1/marker query (tests, simulations).
        environ: ``NOTIFY_SOCKET``, ``WATCHDOG_USEC``, ``RUNTIME_DIRECTORY`` come from here.
        handle_signals: install SIGTERM/SIGINT/SIGHUP handlers (only for the main agent).
        """
        self.config = config
        self.data_dir = data_dir
        self.name = name
        self.clock: Clock = clock or SystemClock()
        self.sleep = sleep
        self.config_path = config_path
        self.timing = timing or ServiceTiming()
        self.sd = SdNotifier(environ)
        self.metrics = Metrics()
        self.heartbeats = Heartbeats(time.monotonic)
        self.queue: SightingQueue = asyncio.Queue(maxsize=50_000)
        self.consent = ConsentState.UNSET
        self.degraded: str | None = None
        self.ready = asyncio.Event()
        """Set once READY was sent (for in-process users such as the demo)."""
        self._radio_factory = radio_factory
        self._adapter_override = adapter
        self._session_bus = session_bus
        self._environ = dict(os.environ if environ is None else environ)
        self._handle_signals = handle_signals
        self._probe = sync_probe or (lambda: system_synchronized(system_bus))
        self._store: Store | None = None
        self._clockwatch: ClockWatch | None = None
        self._radio: RadioPort | None = None
        self._schedule: KeySchedule | None = None
        self._radio_beat: float | None = None
        self._writer: SightingWriter | None = None
        self._ingest: IngestPipe | None = None
        self._fetcher: FetchScheduler | None = None
        self._control: ControlServer | None = None
        self._bound: BoundKeeper | None = None
        self._housekeeping: Housekeeping | None = None
        self._actions: Actions | None = None
        self._live: LiveParts | None = None
        self._stop = asyncio.Event()
        self.started = time.monotonic()
        """Monotonic (real) time the service object was created (for the uptime)."""
        self._lock_fd: int | None = None
        self._background: set[asyncio.Future[dict[str, Any]]] = set()

    # ---- what the parts and the commands use --------------------------------------------
    @property
    def adapter(self) -> str:
        return self._adapter_override or self.config.radio.adapter

    @property
    def store(self) -> Store:
        if self._store is None:
            raise AgentError("the daemon is not running")
        return self._store

    @property
    def clockwatch(self) -> ClockWatch:
        if self._clockwatch is None:
            raise AgentError("the daemon is not running")
        return self._clockwatch

    @property
    def schedule(self) -> KeySchedule | None:
        return self._schedule

    @property
    def writer(self) -> SightingWriter | None:
        return self._writer

    @property
    def ingest(self) -> IngestPipe | None:
        """The flood guard between the radio's queue and the writer."""
        return self._ingest

    @property
    def fetcher(self) -> FetchScheduler | None:
        return self._fetcher

    async def flush_sightings(self) -> bool:
        """Write every sighting heard so far (held by the flood guard or buffered)."""
        if self._ingest is not None:
            self._ingest.hand_over()
        return await self._writer.flush() if self._writer is not None else True

    def radio_status(self) -> dict[str, Any]:
        return dict(self._radio.status()) if self._radio is not None else {}

    def rotate_now(self) -> None:
        if self._radio is not None:
            self._radio.rotate_now()

    def restart_radio(self, schedule: KeySchedule | None = None) -> None:
        """Start the radio over (new ``[radio]`` config, or a new key schedule after forget)."""
        if schedule is not None:
            self._schedule = schedule
        if self._radio is not None and self._schedule is not None:
            request = self._radio_request(self._schedule)
            self._radio.restart(request.config, request.schedule, request.metadata)

    def stop(self) -> None:
        """Ask the service to shut down (signal-safe)."""
        self._stop.set()

    async def run(self) -> None:
        """Run until :meth:`stop`, SIGTERM or SIGINT; raises AgentError on fatal errors."""
        self._lock_data_dir()
        try:
            self._store = await Store.open(self.data_dir, clock=self.clock)
            network_log = netlog.install(self._store.add_network_contacts, self.clock)
            try:
                await self._start()
                try:
                    await self._supervise_all()
                finally:
                    await self._shutdown()
            finally:
                await network_log.close()
                await self._store.close()
        finally:
            self.sd.close()
            self._unlock_data_dir()

    async def set_consent(self, enabled: bool) -> ConsentState:
        """Persist consent (FULL) and switch the radio at once.

        Withdrawn consent switches the radio off first, so a full or failing disk cannot
        keep it on; the error then says the setting was not saved.
        """
        if not enabled:
            self.consent = ConsentState.DISABLED
            self.apply_policy()
        try:
            self.consent = await self.store.set_consent(enabled, self.clock.wall())
        except AgentError as exc:
            if enabled:
                raise
            raise AgentError(
                f"contact detection is off now, but the setting could not be saved ({exc}); "
                "it will be on again after a restart"
            ) from exc
        _LOGGER.info("contact detection %s", "enabled" if enabled else "disabled")
        self.apply_policy()
        return self.consent

    async def forget(self) -> dict[str, Any]:
        """Radio off, then delete every stored row (see :meth:`Actions.forget`)."""
        return await _running(self._actions).forget()

    async def release_current_key(self) -> dict[str, Any]:
        """Same-day release (see :meth:`Actions.release_current_key`)."""
        return await _running(self._actions).release_current_key()

    async def status(self) -> AgentStatus:
        """The live status (``status`` while running)."""
        await _running(self._housekeeping).refresh_gauges()
        policy = Policy(
            consent=self.consent,
            advertising_reason=self.advertising_reason,
            scanning_reason=self.scanning_reason,
            degraded=self.degraded,
        )
        return await live_status(_running(self._live), policy, self.config.risk)

    async def reconfigure(self, config: Config) -> bool:
        """Apply a re-read configuration; True when the radio was restarted for it."""
        old, self.config = self.config, config
        self.clockwatch.require_sync = config.clock.require_sync
        if self._fetcher is not None:
            self._fetcher.reconfigure(config, self.make_notifier())
        radio_changed = config.radio != old.radio
        if radio_changed:
            self.restart_radio()
        await self.clockwatch.check()
        self.apply_policy()
        return radio_changed

    # ---- policy ----------------------------------------------------------------------
    def advertising_reason(self) -> str | None:
        if not self.consent.enabled:
            return f"consent {self.consent.value} (run `contact-agent enable`)"
        if not self.clockwatch.trusted:
            return f"clock not trusted: {self.clockwatch.decision.reason}"
        return self.degraded

    def scanning_reason(self) -> str | None:
        if not self.consent.enabled:
            return f"consent {self.consent.value} (run `contact-agent enable`)"
        return self.degraded

    def apply_policy(self) -> None:
        """Scanning needs consent; advertising needs consent and a trusted clock."""
        consent = self.consent.enabled
        trusted = self._clockwatch is not None and self._clockwatch.trusted
        self.metrics.set("consent", consent)
        self.metrics.set("clock_trusted", trusted)
        if self._radio is not None:
            self._radio.set_scanning_allowed(consent)
            self._radio.set_advertising_allowed(consent and trusted)
        self.update_status_line()

    def update_status_line(self) -> None:
        """systemd's STATUS= line (sent only when it changes)."""
        if not self.consent.enabled:
            parts = ["consent off: not advertising or scanning"]
        elif self._clockwatch is not None and not self._clockwatch.trusted:
            parts = ["clock not synchronised: scanning only"]
        else:
            parts = ["advertising and scanning"]
        degraded = degraded_reason(self.degraded, self._writer, self._ingest)
        if degraded:
            parts.append(f"degraded: {degraded}")
        if self._fetcher is not None:
            parts.append(self._fetcher.status_line())
        self.sd.status("; ".join(parts))

    def make_notifier(self) -> Notifier:
        return Notifier(
            language=self.config.notify.language,
            desktop=self.config.notify.desktop,
            hooks=self.config.notify.exec,
            session_bus=self._session_bus,
        )

    async def persist_teks(self, teks: list[OwnTek]) -> None:
        if teks:
            await self.store.save_own_teks(teks)

    async def persist_bound(self, *, force: bool = False) -> None:
        """Save the clock lower bound at every interval change (and at shutdown)."""
        if self._bound is not None:
            await self._bound.save(force=force)

    # ---- start and stop --------------------------------------------------------------
    def _lock_data_dir(self) -> None:
        ensure_private_dir(self.data_dir)  # no symlink, no other user's file: else exit 78
        fd = os.open(
            self.data_dir / "daemon.lock",
            os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
            0o600,
        )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AgentError(
                f"another contact-agent daemon is already using {self.data_dir}"
            ) from None
        self._lock_fd = fd

    def _unlock_data_dir(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    async def _start(self) -> None:
        store = self.store
        await asyncio.to_thread(clear_spool, self.data_dir)  # downloads of a killed cycle
        self.consent = await store.consent()
        self._clockwatch = ClockWatch(
            self.clock,
            require_sync=self.config.clock.require_sync,
            probe=self._probe,
            lower_bound=await store.clock_lower_bound(),
        )
        await self._clockwatch.check()
        self._bound = BoundKeeper(self._clockwatch, store.set_clock_lower_bound)
        self._schedule = KeySchedule(await store.load_own_teks())
        self._writer = SightingWriter(store, flush_interval=self.timing.writer_flush)
        self._ingest = IngestPipe(self.queue, self._writer.add, FloodGuard(self.clock))
        self._fetcher = FetchScheduler(
            store,
            self.config,
            self.clock,
            self.clockwatch,
            consent=lambda: self.consent.enabled,
            notifier=self.make_notifier(),
            sleep=self.sleep,
            metrics=self.metrics,
            base_dir=self.config_path.parent if self.config_path else None,
            before_cycle=self.flush_sightings,
            first_delay=self.timing.first_fetch_delay,
        )
        self._radio = self._radio_factory(self._radio_request(self._schedule))
        self.apply_policy()  # nothing on air before policy allows it
        actions = self._wire_parts()
        self._control = ControlServer(
            daemon_socket_path(self.data_dir, self._environ),
            actions.handlers(),
            privileged=PRIVILEGED,
            group_access="RUNTIME_DIRECTORY" in self._environ,
        )
        await self._control.start()
        if self._handle_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
            loop.add_signal_handler(signal.SIGHUP, self._reload_from_signal)
        freeze_startup_objects()  # the loop's timing: see there
        _LOGGER.info(
            "%s %s started (data %s, adapter %s, consent %s, clock %s)",
            self.name,
            __version__,
            self.data_dir,
            self.adapter,
            self.consent.value,
            self.clockwatch.decision.state.value,
        )

    def _wire_parts(self) -> Actions:
        """Hand housekeeping, the commands and the status the parts they work with."""
        store, clockwatch = self.store, self.clockwatch
        writer, ingest, fetcher = self._writer, self._ingest, self._fetcher
        assert self._radio is not None and self._schedule is not None
        radio = _RadioHandle(self._radio, lambda: self._schedule, self.restart_radio)
        assert writer is not None
        assert ingest is not None and fetcher is not None and self._bound is not None
        self._housekeeping = Housekeeping(
            clock=self.clock,
            sleep=self.sleep,
            timing=self.timing,
            heartbeats=self.heartbeats,
            metrics=self.metrics,
            store=store,
            clockwatch=clockwatch,
            radio=radio,
            writer=writer,
            ingest=ingest,
            config=lambda: self.config,
            after_round=self.update_status_line,
        )
        self._live = LiveParts(
            identity=DaemonIdentity(self.name, self.started, self.adapter, self.data_dir),
            clock=self.clock,
            store=store,
            clockwatch=clockwatch,
            heartbeats=self.heartbeats,
            metrics=self.metrics,
            writer=writer,
            ingest=ingest,
            fetcher=fetcher,
            radio_status=radio.status,
        )
        self._actions = Actions(
            clock=self.clock,
            store=store,
            radio=radio,
            ingest=ingest,
            writer=writer,
            fetcher=fetcher,
            bound=self._bound,
            sd=self.sd,
            config_path=self.config_path,
            set_consent=self.set_consent,
            reconfigure=self.reconfigure,
            status=self.status,
        )
        return self._actions

    def _radio_request(self, schedule: KeySchedule) -> RadioRequest:
        return RadioRequest(
            config=with_adapter(self.config.radio, self._adapter_override),
            clock=self.clock,
            schedule=schedule,
            metadata=Metadata(self.config.radio.tx_power_dbm),
            queue=self.queue,
            sleep=self.sleep,
            persist=self.persist_teks,
        )

    async def _send_ready(self, radio: RadioPort, radio_task: asyncio.Task[None]) -> None:
        """READY once BlueZ answered (or, degraded, after ``timing.ready_timeout``)."""
        await wait_until(lambda: radio.ready or radio_task.done(), self.timing.ready_timeout)
        ok = radio.ready
        if not ok:
            self.degraded = f"Bluetooth adapter {self.adapter} not reachable"
        self.apply_policy()
        self.sd.ready(self.sd.last_status)
        self.ready.set()
        _LOGGER.info("ready%s", "" if ok else f" ({self.degraded})")

    async def _shutdown(self) -> None:
        self.sd.stopping("stopping: saving sightings and keys")
        if self._ingest is not None:
            self._ingest.drain()  # held sightings go to the writer's final flush
        if self._writer is not None:
            await self._writer.close()
        if self.schedule is not None:
            await self.persist_teks(self.schedule.pop_dirty())
        await self.persist_bound(force=True)
        if self._control is not None:
            await self._control.close()
        if self._housekeeping is not None:
            with contextlib.suppress(AgentError, OSError):
                await self._housekeeping.write_textfile()
        _LOGGER.info("stopped")

    def _reload_from_signal(self) -> None:
        task = asyncio.ensure_future(_running(self._actions).reload())
        self._background.add(task)
        task.add_done_callback(self._reload_done)

    def _reload_done(self, task: asyncio.Future[dict[str, Any]]) -> None:
        self._background.discard(task)
        if not task.cancelled():
            task.exception()  # a bad file was logged by the reload; keep asyncio quiet

    # ---- the supervised parts ----------------------------------------------------------
    async def _supervise_all(self) -> None:
        assert self._writer is not None and self._fetcher is not None
        assert self._radio is not None and self._ingest is not None
        assert self._housekeeping is not None
        writer_task = self._writer.start()
        try:
            async with asyncio.TaskGroup() as group:
                radio_task = group.create_task(self._run_radio(self._radio))  # restarts itself
                group.create_task(self._send_ready(self._radio, radio_task))
                group.create_task(self._part("clock", self._clock_loop))
                group.create_task(self._part("ingest", self._ingest.run))
                group.create_task(self._part("fetch", self._fetcher.run))
                group.create_task(self._part("housekeeping", self._housekeeping.run))
                group.create_task(self._part("chaff", self._chaff))
                group.create_task(self._watchdog_loop())
                group.create_task(self._wait_for_stop())
        except* _StopRequested:
            pass
        except* AgentError as group_error:
            raise group_error.exceptions[0] from None
        finally:
            if writer_task.done() and writer_task.exception() is not None:
                _LOGGER.warning("the sighting writer had failed: %s", writer_task.exception())

    async def _wait_for_stop(self) -> None:
        await self._stop.wait()
        _LOGGER.info("stopping")
        raise _StopRequested

    def _part(self, name: str, body: Callable[[], Awaitable[None]]) -> Coroutine[Any, Any, None]:
        def restarted(part: str, exc: BaseException) -> None:
            self.metrics.inc("task_restarts_total")

        return supervise(
            name, body, sleep=self.sleep, monotonic=self.clock.monotonic, on_restart=restarted
        )

    async def _clock_loop(self) -> None:
        """Steps, trust and the persisted lower bound of true time."""
        self.heartbeats.register("clock", self.timing.heartbeat_max_age)
        try:
            last_probe = self.clock.monotonic()
            while True:
                await self.sleep(self.timing.tick)
                watch = self.clockwatch
                every = self.timing.sync_probe * (10 if watch.trusted else 1)
                probe = self.clock.monotonic() - last_probe >= every
                if probe:
                    last_probe = self.clock.monotonic()
                event = await watch.check(probe=probe)
                if event.step_seconds:
                    self.metrics.inc("clock_steps_total")
                    self.rotate_now()
                if event.trust_changed:
                    self.apply_policy()
                    if watch.trusted and self._fetcher is not None:
                        self._fetcher.wake()
                await self.persist_bound()
                self.heartbeats.beat("clock")
                self._radio_heartbeat()
        finally:
            self.heartbeats.unregister("clock")

    async def _run_radio(self, radio: RadioPort) -> None:
        self.heartbeats.register("radio", self.timing.heartbeat_max_age)
        await radio.run()

    def _radio_heartbeat(self) -> None:
        """The radio is alive while its supervision rounds advance (or while it connects)."""
        beat = self._radio.heartbeat if self._radio is not None else None
        if beat is None or beat != self._radio_beat:
            self.heartbeats.beat("radio")
        self._radio_beat = beat

    async def _chaff(self) -> None:
        """Decoy report flows at random times (traffic analysis); off unless configured."""
        await run_chaff(
            self.config.report, self.clock, sleep=self.sleep, consent=lambda: self.consent.enabled
        )

    async def _watchdog_loop(self) -> None:
        """``WATCHDOG=1`` every quarter of WatchdogSec (so a late wake-up on a busy machine
        still keeps the gaps under half of it), only while every loop beats. Nothing here
        waits for the network: a download never delays a ping."""
        period = self.sd.watchdog_seconds
        if period is None:
            return
        warned = False
        while True:
            stale = self.heartbeats.stale()
            if not stale:
                self.sd.watchdog()
                warned = False
            elif not warned:
                _LOGGER.warning("watchdog not fed: %s stopped responding", ", ".join(stale))
                warned = True
            await asyncio.sleep(period / 4)  # systemd's real time, not the agent's clock


def _running(part: _Part | None) -> _Part:
    """A part that exists only while the daemon runs (else the commands' error)."""
    if part is None:
        raise AgentError("the daemon is not running")
    return part


class _StopRequested(Exception):
    """Internal: ends the task group on a clean stop."""
