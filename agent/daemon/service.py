"""``contact-agent run``: one asyncio service supervising every part of the agent.

Parts (each restarted with backoff when it fails; see :mod:`.supervise`):

- the radio (advertising + scanning, :mod:`.radio`), switched by consent and clock trust;
- the sighting writer (batches to the store; flushed once more on shutdown);
- the clock watch (steps -> immediate rotation; trust -> advertising and matching);
- the key fetch + match schedule, which notifies new qualifying exposures once each;
- housekeeping: daily purge (Appendix A cutoffs), metrics and the Prometheus textfile;
- the watchdog (``WATCHDOG=1`` only while the loops above beat) and the control socket.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent import __version__
from agent.clock import Clock, SystemClock, en_interval_number
from agent.clocksync import system_synchronized
from agent.config import Config, load_config
from agent.constants import EN_INTERVAL_SECONDS, RETENTION_SECONDS
from agent.daemon import metrics as metrics_mod
from agent.daemon.clockwatch import ClockWatch, SyncProbe
from agent.daemon.consent import ConsentState, read_consent, write_consent
from agent.daemon.control import ControlServer, Peer, daemon_socket_path
from agent.daemon.fetching import FetchScheduler
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
from agent.daemon.status import LOWER_BOUND_STATE_KEY, stored_status
from agent.daemon.supervise import supervise
from agent.errors import AgentError
from agent.keyschedule import KeySchedule, OwnTek
from agent.payload import Metadata
from agent.report.chaff import run_chaff
from agent.report.release import RELEASE_COMMAND
from agent.risk import counts_for_notification, score_window
from agent.store import SightingWriter, Store

_LOGGER = logging.getLogger(__name__)


RELEASE_ROTATION_TIMEOUT = 20.0
"""Real seconds a same-day release waits for the radio to rotate off the ended key."""


@dataclass(frozen=True, slots=True)
class ServiceTiming:
    """Cadences of the daemon's loops (seconds of the injected clock unless noted).

    The defaults are the production values; tests and the demo shrink them.
    """

    tick: float = 1.0
    """Clock watch cadence: steps are seen within a tick."""
    sync_probe: float = 30.0
    """How often timedate1 (or the marker) is asked while untrusted; 10x once trusted."""
    housekeeping: float = 15.0
    """Gauges, status line and the metrics textfile."""
    purge: float = 86_400.0
    first_fetch_delay: float = 5.0
    """After start, before the first key fetch (the clock check settles first)."""
    writer_flush: float = 10.0
    """Sighting batches: at most this long in memory (kill -9 loses at most this)."""
    ready_timeout: float = 30.0
    """Real seconds READY waits for BlueZ before it is sent with a degraded status."""
    heartbeat_max_age: float = 60.0
    """Real seconds a loop may stay silent before the watchdog stops being fed."""


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
        self.config = config
        self.data_dir = data_dir
        self.name = name
        self.clock: Clock = clock or SystemClock()
        self._sleep = sleep
        self._radio_factory = radio_factory
        self._config_path = config_path
        self._adapter_override = adapter
        self._system_bus = system_bus
        self._session_bus = session_bus
        self._environ = dict(os.environ if environ is None else environ)
        self._handle_signals = handle_signals
        self.timing = timing or ServiceTiming()
        self._probe = sync_probe or (lambda: system_synchronized(self._system_bus))
        self.sd = SdNotifier(self._environ)
        self.metrics = metrics_mod.Metrics()
        self.heartbeats = Heartbeats(time.monotonic)
        self.queue: SightingQueue = asyncio.Queue(maxsize=50_000)
        self.consent = ConsentState.UNSET
        self.degraded: str | None = None
        self._store: Store | None = None
        self._schedule: KeySchedule | None = None
        self._clockwatch: ClockWatch | None = None
        self._radio: RadioPort | None = None
        self._writer: SightingWriter | None = None
        self._fetcher: FetchScheduler | None = None
        self._control: ControlServer | None = None
        self._stop = asyncio.Event()
        self._radio_restart = asyncio.Event()
        self._started_mono = time.monotonic()
        self._bound_interval: int | None = None
        self._last_radio_beat: float | None = None
        self._lock_fd: int | None = None
        self._background: set[asyncio.Future[dict[str, Any]]] = set()
        self.ready = asyncio.Event()
        """Set once READY was sent (for in-process users such as the demo)."""

    # ---- public --------------------------------------------------------------------
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

    def stop(self) -> None:
        """Ask the service to shut down (signal-safe)."""
        self._stop.set()

    async def run(self) -> None:
        """Run until :meth:`stop`, SIGTERM or SIGINT; raises AgentError on fatal errors."""
        self._lock_data_dir()
        try:
            self._store = await Store.open(self.data_dir, clock=self.clock)
            try:
                await self._start()
                try:
                    await self._supervise_all()
                finally:
                    await self._shutdown()
            finally:
                await self._store.close()
        finally:
            self._unlock_data_dir()

    async def set_consent(self, enabled: bool) -> ConsentState:
        """Persist consent (FULL) and switch the radio at once."""
        self.consent = await write_consent(self.store, enabled, self.clock.wall())
        _LOGGER.info("contact detection %s", "enabled" if enabled else "disabled")
        self._apply_policy()
        return self.consent

    async def status(self) -> dict[str, Any]:
        """The live status (``status --json`` while running)."""
        wall = self.clock.wall()
        await self._refresh_gauges()
        result = await stored_status(self.store, wall, self.config.risk)
        radio = dict(self._radio.status()) if self._radio is not None else {}
        advertising, scanning = bool(radio.get("advertising")), _scanning(radio)
        result.update(
            {
                "daemon": {
                    "running": True,
                    "name": self.name,
                    "pid": os.getpid(),
                    "version": __version__,
                    "uptime_seconds": round(time.monotonic() - self._started_mono),
                    "heartbeats": self.heartbeats.ages(),
                },
                "consent": self.consent.value,
                "clock": self.clockwatch.summary(),
                "advertising": advertising,
                "advertising_reason": None if advertising else self._advertising_reason(),
                "scanning": scanning,
                "scanning_reason": None if scanning else self._scanning_reason(),
                "adapter": self.adapter,
                "scan_mode": radio.get("scan_mode"),
                "radio": radio,
                "current_interval": en_interval_number(wall) if wall >= 0 else None,
                "degraded": self.degraded,
                "fetch": self._fetcher.summary() if self._fetcher else None,
                "metrics": self.metrics.snapshot(),
            }
        )
        return result

    # ---- policy ----------------------------------------------------------------------
    def _advertising_reason(self) -> str | None:
        if not self.consent.enabled:
            return f"consent {self.consent.value} (run `contact-agent enable`)"
        if not self.clockwatch.trusted:
            return f"clock not trusted: {self.clockwatch.decision.reason}"
        if self.degraded:
            return self.degraded
        return None

    def _scanning_reason(self) -> str | None:
        if not self.consent.enabled:
            return f"consent {self.consent.value} (run `contact-agent enable`)"
        return self.degraded

    def _apply_policy(self) -> None:
        """Scanning needs consent; advertising needs consent and a trusted clock."""
        consent = self.consent.enabled
        trusted = self._clockwatch is not None and self._clockwatch.trusted
        self.metrics.set("consent", consent)
        self.metrics.set("clock_trusted", trusted)
        if self._radio is not None:
            self._radio.set_scanning_allowed(consent)
            self._radio.set_advertising_allowed(consent and trusted)
        self._update_status_line()

    def _update_status_line(self) -> None:
        parts = []
        if not self.consent.enabled:
            parts.append("consent off: not advertising or scanning")
        elif self._clockwatch is not None and not self._clockwatch.trusted:
            parts.append("clock not synchronised: scanning only")
        else:
            parts.append("advertising and scanning")
        if self.degraded:
            parts.append(f"degraded: {self.degraded}")
        if self._fetcher is not None:
            parts.append(self._fetcher.status_line())
        self.sd.status("; ".join(parts))

    # ---- start and stop --------------------------------------------------------------
    def _lock_data_dir(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.data_dir / "daemon.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
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
        self.consent = await read_consent(store)
        bound = await store.get_state(LOWER_BOUND_STATE_KEY)
        self._clockwatch = ClockWatch(
            self.clock,
            require_sync=self.config.clock.require_sync,
            probe=self._probe,
            lower_bound=float(bound) if bound else None,
        )
        await self._clockwatch.check()
        teks = await store.load_own_teks()
        self._schedule = KeySchedule(teks)
        self._writer = SightingWriter(store, self.queue, flush_interval=self.timing.writer_flush)
        self._fetcher = FetchScheduler(
            store,
            self.config,
            self.clock,
            self.clockwatch,
            consent=lambda: self.consent.enabled,
            notifier=self._make_notifier(),
            sleep=self._sleep,
            metrics=self.metrics,
            heartbeats=self.heartbeats,
            base_dir=self._config_path.parent if self._config_path else None,
            before_cycle=self._writer.flush,
            first_delay=self.timing.first_fetch_delay,
        )
        self._radio = self._new_radio()
        path = daemon_socket_path(self.data_dir, self._environ)
        self._control = ControlServer(
            path,
            {
                "status": self._cmd_status,
                "enable": self._cmd_enable,
                "disable": self._cmd_disable,
                "fetch": self._cmd_fetch,
                "reload": self._cmd_reload,
                RELEASE_COMMAND: self._cmd_release_keys,
                "forget": self._cmd_forget,
            },
            privileged={"enable", "disable", "fetch", "reload", "forget", RELEASE_COMMAND},
            group_access="RUNTIME_DIRECTORY" in self._environ,
        )
        await self._control.start()
        if self._handle_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
            loop.add_signal_handler(signal.SIGHUP, self._reload_from_signal)
        _LOGGER.info(
            "%s %s started (data %s, adapter %s, consent %s, clock %s)",
            self.name,
            __version__,
            self.data_dir,
            self.adapter,
            self.consent.value,
            self.clockwatch.decision.state.value,
        )

    def _new_radio(self) -> RadioPort:
        assert self._schedule is not None
        radio = self._radio_factory(
            RadioRequest(
                config=with_adapter(self.config.radio, self._adapter_override),
                clock=self.clock,
                schedule=self._schedule,
                metadata=Metadata(self.config.radio.tx_power_dbm),
                queue=self.queue,
                sleep=self._sleep,
                persist=self._persist_teks,
            )
        )
        self._radio = radio
        self._apply_policy()
        return radio

    async def _send_ready(self, radio_task: asyncio.Task[None]) -> None:
        """READY once BlueZ answered (or, degraded, after ``timing.ready_timeout``)."""
        deadline = time.monotonic() + self.timing.ready_timeout
        while not (self._radio is not None and self._radio.ready):
            if radio_task.done() or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.05)  # real time: systemd's start timeout is real
        ok = self._radio is not None and self._radio.ready
        if not ok:
            self.degraded = f"Bluetooth adapter {self.adapter} not reachable"
        self._apply_policy()
        self.sd.ready(self.sd_status_text())
        self.ready.set()
        _LOGGER.info("ready%s", "" if ok else f" ({self.degraded})")

    def sd_status_text(self) -> str:
        self._update_status_line()
        return self.sd.last_status

    async def _shutdown(self) -> None:
        self.sd.stopping("stopping: saving sightings and keys")
        if self._writer is not None:
            await self._writer.close()
        if self._schedule is not None:
            await self._persist_teks(self._schedule.pop_dirty())
        await self._persist_bound(force=True)
        if self._control is not None:
            await self._control.close()
        with contextlib.suppress(AgentError, OSError):
            await self._write_textfile()
        _LOGGER.info("stopped")

    # ---- the supervised parts ----------------------------------------------------------
    async def _supervise_all(self) -> None:
        assert self._writer is not None and self._fetcher is not None
        writer_task = self._writer.start()
        try:
            async with asyncio.TaskGroup() as group:
                radio_task = group.create_task(self._part("radio", self._radio_loop))
                group.create_task(self._send_ready(radio_task))
                group.create_task(self._part("clock", self._clock_loop))
                group.create_task(self._part("fetch", self._fetcher.run))
                group.create_task(self._part("housekeeping", self._housekeeping_loop))
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
            name,
            body,
            sleep=self._sleep,
            monotonic=self.clock.monotonic,
            on_restart=restarted,
        )

    async def _radio_loop(self) -> None:
        """Run the radio; a reload that changed ``[radio]`` builds a new one."""
        self.heartbeats.register("radio", self.timing.heartbeat_max_age)
        while True:
            radio = self._radio if self._radio is not None else self._new_radio()
            self._radio_restart.clear()
            task = asyncio.create_task(radio.run())
            restart = asyncio.create_task(self._radio_restart.wait())
            try:
                await asyncio.wait({task, restart}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                restart.cancel()
                if not task.done():
                    task.cancel()
                    await asyncio.wait({task})  # stopped: advertisement off air
            if not task.cancelled() and task.exception() is not None:
                self._radio = None  # the supervisor's restart builds a fresh one
                raise task.exception()  # type: ignore[misc]
            _LOGGER.info("radio configuration changed: restarting the radio")
            self._radio = None

    async def _clock_loop(self) -> None:
        """Steps, trust and the persisted lower bound of true time."""
        self.heartbeats.register("clock", self.timing.heartbeat_max_age)
        try:
            last_probe = self.clock.monotonic()
            while True:
                await self._sleep(self.timing.tick)
                watch = self.clockwatch
                every = self.timing.sync_probe * (10 if watch.trusted else 1)
                probe = self.clock.monotonic() - last_probe >= every
                if probe:
                    last_probe = self.clock.monotonic()
                event = await watch.check(probe=probe)
                if event.step_seconds:
                    self.metrics.inc("clock_steps_total")
                    if self._radio is not None:
                        self._radio.rotate_now()
                if event.trust_changed:
                    self._apply_policy()
                    if watch.trusted:
                        self._fetcher_wake()
                await self._persist_bound()
                self.heartbeats.beat("clock")
                self._check_radio_heartbeat()
        finally:
            self.heartbeats.unregister("clock")

    def _check_radio_heartbeat(self) -> None:
        """The radio is alive while its supervision rounds advance (or before its start)."""
        beat = self._radio.heartbeat if self._radio is not None else None
        if beat is None or beat != self._last_radio_beat:
            self.heartbeats.beat("radio")
        self._last_radio_beat = beat

    def _fetcher_wake(self) -> None:
        if self._fetcher is not None:
            self._fetcher.wake()

    async def _housekeeping_loop(self) -> None:
        """Daily purge; gauges and the metrics textfile every few seconds."""
        self.heartbeats.register("housekeeping", self.timing.heartbeat_max_age)
        try:
            next_purge = self.clock.monotonic()
            while True:
                if self.clock.monotonic() >= next_purge:
                    await self._purge()
                    next_purge = self.clock.monotonic() + self.timing.purge
                await self._refresh_gauges()
                await self._write_textfile()
                self._update_status_line()
                self.heartbeats.beat("housekeeping")
                await self._sleep(self.timing.housekeeping)
        finally:
            self.heartbeats.unregister("housekeeping")

    async def _chaff(self) -> None:
        """Decoy report flows at random times (threats doc T7); off unless configured."""
        await run_chaff(self.config.report, self.clock, sleep=self._sleep)

    async def _watchdog_loop(self) -> None:
        """``WATCHDOG=1`` at half of WatchdogSec, only while every loop beats."""
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
            await asyncio.sleep(period / 2)  # systemd's real time, not the agent's clock

    # ---- housekeeping helpers ------------------------------------------------------------
    async def _purge(self) -> None:
        cutoff = self.clockwatch.purge_cutoff()
        if cutoff is None:
            _LOGGER.info("purge skipped: no trustworthy time yet")
            return
        result = await self.store.purge(cutoff)
        if self.clockwatch.trusted and self._schedule is not None:
            self._schedule.drop_older_than(en_interval_number(self.clock.wall()))
        self.metrics.inc("purges_total")
        _LOGGER.debug("purge: %s", result)

    async def _refresh_gauges(self) -> None:
        wall = self.clock.wall()
        store = self.store
        self.metrics.set("unique_rpis_10min", await store.unique_rpis(wall - 600))
        self.metrics.set("database_bytes", await store.database_bytes())
        windows = await store.exposure_windows(wall - RETENTION_SECONDS)
        risk = self.config.risk
        counting = [w for w in windows if counts_for_notification(score_window(w, risk), risk)]
        self.metrics.set("exposures_total", len(counting))
        if self._writer is not None:
            stats = self._writer.stats
            self._set_counter("sightings_stored_total", stats.flushed_rows)
        radio = dict(self._radio.status()) if self._radio is not None else {}
        counters = radio.get("counters") or {}
        self.metrics.set("advertising", bool(radio.get("advertising")))
        self.metrics.set("scanning", _scanning(radio))
        restarts = sum(int(counters.get(k, 0)) for k in ("scanner_restarts", "watchdog_restarts"))
        for counter, value in (
            ("adverts_heard_total", counters.get("accepted")),
            ("rotations_total", radio.get("rotations")),
            ("scanner_restarts_total", restarts),
        ):
            if isinstance(value, int):
                self._set_counter(counter, value)

    def _set_counter(self, name: str, value: float) -> None:
        """Raise a counter to a total kept elsewhere (never lowers it)."""
        current = self.metrics.get(name)
        if value > current:
            self.metrics.inc(name, value - current)

    async def _write_textfile(self) -> None:
        path = self.config.metrics_textfile
        if not path:
            return
        try:
            await asyncio.to_thread(metrics_mod.write_textfile, Path(path), self.metrics.render())
        except OSError as exc:
            _LOGGER.warning("cannot write the metrics file %s: %s", path, exc)

    async def _persist_teks(self, teks: list[OwnTek]) -> None:
        if teks:
            await self.store.save_own_teks(teks)

    async def _persist_bound(self, *, force: bool = False) -> None:
        """Save the clock lower bound at every interval change (and at shutdown)."""
        if self._clockwatch is None:
            return
        bound = self._clockwatch.persistable_bound()
        if bound is None:
            return
        interval = int(bound // EN_INTERVAL_SECONDS)
        if force or interval != self._bound_interval:
            await self.store.set_state(LOWER_BOUND_STATE_KEY, f"{bound:.3f}")
            self._bound_interval = interval

    def _make_notifier(self) -> Notifier:
        return Notifier(
            language=self.config.notify.language,
            desktop=self.config.notify.desktop,
            hooks=self.config.notify.exec,
            session_bus=self._session_bus,
        )

    # ---- reload ------------------------------------------------------------------------
    def _reload_from_signal(self) -> None:
        task = asyncio.ensure_future(self._reload())
        self._background.add(task)
        task.add_done_callback(self._reload_done)

    def _reload_done(self, task: asyncio.Future[dict[str, Any]]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _LOGGER.debug("reload failed: %s", task.exception())

    async def _reload(self) -> dict[str, Any]:
        if self._config_path is None:
            return {"reloaded": False, "reason": "no configuration file"}
        self.sd.reloading()
        try:
            config = load_config(self._config_path)
        except AgentError as exc:
            _LOGGER.error("reload failed, keeping the old configuration: %s", exc)
            self.sd.reloaded()
            raise
        old, self.config = self.config, config
        self.clockwatch.require_sync = config.clock.require_sync
        if self._fetcher is not None:
            self._fetcher.reconfigure(config, self._make_notifier())
        if config.radio != old.radio:
            self._radio_restart.set()
        await self.clockwatch.check()
        self._apply_policy()
        self.sd.reloaded()
        _LOGGER.info("configuration reloaded from %s", self._config_path)
        return {"reloaded": True, "radio_restarted": config.radio != old.radio}

    # ---- control commands --------------------------------------------------------------
    async def _cmd_status(self, request: Mapping[str, Any], peer: Peer) -> Mapping[str, Any]:
        return await self.status()

    async def _cmd_enable(self, request: Mapping[str, Any], peer: Peer) -> Mapping[str, Any]:
        state = await self.set_consent(True)
        return {"consent": state.value, "applied": True}

    async def _cmd_disable(self, request: Mapping[str, Any], peer: Peer) -> Mapping[str, Any]:
        state = await self.set_consent(False)
        return {"consent": state.value, "applied": True}

    async def _cmd_fetch(self, request: Mapping[str, Any], peer: Peer) -> Mapping[str, Any]:
        assert self._fetcher is not None
        return await self._fetcher.fetch_now()

    async def _cmd_reload(self, request: Mapping[str, Any], peer: Peer) -> Mapping[str, Any]:
        return await self._reload()

    async def _cmd_forget(self, request: Mapping[str, Any], peer: Peer) -> Mapping[str, Any]:
        return await self.forget()

    async def forget(self) -> dict[str, Any]:
        """Revocation while running: radio off, then every stored row deleted, provably.

        Consent goes off first (no advertising or scanning within 2 s); sightings still in
        memory are written and then deleted with everything else; the radio is rebuilt
        with an empty key schedule so no deleted key is saved again.
        """
        assert self._writer is not None
        self.consent = await write_consent(self.store, False, self.clock.wall())
        self._apply_policy()
        deadline = time.monotonic() + 3.0
        while self._radio is not None and _scanning(self._radio.status()):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        await self._writer.flush()
        self._schedule = KeySchedule()
        self._radio_restart.set()  # the radio loop builds a new radio on the new schedule
        await self._writer.flush()
        await self.store.forget()
        self.consent = await write_consent(self.store, False, self.clock.wall())
        await self._persist_bound(force=True)
        return {"forgotten": True, "consent": self.consent.value}

    async def _cmd_release_keys(self, request: Mapping[str, Any], peer: Peer) -> Mapping[str, Any]:
        return await self.release_current_key()

    async def release_current_key(self) -> dict[str, Any]:
        """Same-day release: end the key on air, persist it, and rotate away from it.

        Answers once the radio put a fresh key on air (or is not advertising), so the
        ended key is off air before anyone publishes it.
        """
        assert self._schedule is not None
        ended = self._schedule.end_current_key(en_interval_number(self.clock.wall()))
        await self._persist_teks(self._schedule.pop_dirty())
        rotated = False
        radio = self._radio
        if ended is not None and radio is not None and radio.status().get("advertising"):
            before = radio.status().get("rotations", 0)
            radio.rotate_now()
            deadline = time.monotonic() + RELEASE_ROTATION_TIMEOUT
            while time.monotonic() < deadline:
                status = radio.status()
                if status.get("rotations", 0) != before or not status.get("advertising"):
                    rotated = True
                    break
                await asyncio.sleep(0.05)
        _LOGGER.info("same-day release: current key %s", "ended" if ended else "not on air")
        return {"ended": ended is not None, "rotated": rotated}


def _scanning(radio: Mapping[str, Any]) -> bool:
    """Scanning now, or duty-cycled scanning that is switched on (between two scans)."""
    if radio.get("scanning"):
        return True
    duty = radio.get("scan_schedule") == "duty"
    return bool(duty and radio.get("scanning_allowed") and radio.get("bluetoothd"))


class _StopRequested(Exception):
    """Internal: ends the task group on a clean stop."""
