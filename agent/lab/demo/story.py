"""``contact-agent demo``: the whole exposure-notification story, step by step.

1. Start the world (:mod:`.world`): private bus, fake bluetoothd, key server, N agents;
   give consent.
2. A sits at its desk; B is in another building; C (and any further agent) sits 12 m
   from A behind two walls. B comes to A's table (1.5 m) for 20 simulated minutes, then
   leaves.
3. A gets a verification code and reports: the real report flow over HTTP (verify ->
   same-day release of A's key on air through its daemon -> certificate -> publish).
4. B and C download index.txt and the new export from the key server, verify it with the
   pinned public key and match it (their daemons' fetch cycle).
5. B must be notified (through its exec hook) and nobody else.

The simulated clock starts at the real time, or earlier when the story would otherwise
cross a UTC midnight (a day boundary would split A's key and B's exposure in two).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.clock import SystemClock, en_interval_number, rolling_start_interval_number
from agent.constants import TEK_ROLLING_PERIOD
from agent.control import MAX_SUN_PATH, SOCKET_NAME
from agent.daemon.supervise import wait_until
from agent.daemon.timebase import AcceleratedClock
from agent.errors import AgentError, MalformedInputError
from agent.lab.demo.geometry import Point
from agent.lab.demo.layout import MAX_AGENTS, MIN_AGENTS, WALLS, Phase, names_for, positions, where
from agent.lab.demo.observe import Observation, observe
from agent.lab.demo.steps import DemoFailure, Event, Timeline
from agent.lab.demo.world import DemoAgent, DemoWorld, WorldSettings
from agent.logs import RedactingFormatter
from agent.report.client import Reporter, check_ready
from agent.report.release import StoreKeyRelease

LEAD_SECONDS = 120.0
"""Simulated time before B arrives and after it left (scans settle, instances close)."""
PROGRESS_SECONDS = 300.0
"""A progress line every 5 simulated minutes of the contact."""
DAY = 86_400.0
ROTATION_TIMEOUT = 10.0
"""Real seconds for the reporter's radio to put its fresh key on air after the release."""


@dataclass(frozen=True, slots=True)
class StoryOptions:
    agents: int = 3
    speed: float = 60.0
    """Simulated seconds per real second."""
    contact_minutes: float = 20.0
    distance_m: float = 1.5
    seed: int = 0
    """Seeds the RSSI noise of the simulated radio."""
    keep: Path | None = None
    """Keep the agents' data, configs and the log here (else a temporary directory)."""

    def validate(self) -> None:
        if not MIN_AGENTS <= self.agents <= MAX_AGENTS:
            raise MalformedInputError(
                f"--agents must be {MIN_AGENTS}..{MAX_AGENTS} (the story needs A and B)"
            )
        if not (math.isfinite(self.speed) and 1.0 <= self.speed <= 600.0):
            raise MalformedInputError("--speed must be 1..600 simulated seconds per second")
        if not 1.0 <= self.contact_minutes <= 30.0:
            raise MalformedInputError("the contact must last 1..30 minutes")
        if not 0.1 <= self.distance_m <= 5.0:
            raise MalformedInputError("the contact distance must be 0.1..5 m")


@dataclass
class StoryResult:
    """What happened, and whether the story held."""

    options: StoryOptions
    names: tuple[str, ...]
    expected_notified: tuple[str, ...]
    notified: list[str] = field(default_factory=list)
    not_notified: list[str] = field(default_factory=list)
    failure: DemoFailure | None = None
    events: list[Event] = field(default_factory=list)
    observation: Observation | None = None
    phases: list[Phase] = field(default_factory=list)
    contact: tuple[float, float] | None = None
    """Simulated (start, end) of A and B's time together."""
    published_keys: int = 0
    real_seconds: float = 0.0
    work_dir: Path | None = None
    """Where the data was kept (``--keep``), else None: it was deleted."""
    warnings: list[str] = field(default_factory=list)
    """The last warnings the agents logged (to explain a failure)."""

    @property
    def ok(self) -> bool:
        return self.failure is None and sorted(self.notified) == sorted(self.expected_notified)


def story_start(now: float, span: float) -> float:
    """The simulated start: now, or earlier so that ``span`` seconds stay in one UTC day."""
    midnight = (math.floor(now / DAY) + 1) * DAY
    return now if now + span < midnight else midnight - span


class _WarningTail(logging.Handler):
    """Keeps the last warnings logged while the story runs."""

    def __init__(self, size: int = 8) -> None:
        super().__init__(logging.WARNING)
        self.size = size
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines = [*self.lines[-(self.size - 1) :], f"{record.name}: {record.getMessage()}"]


async def run_story(
    options: StoryOptions, emit: Callable[[Event], None] | None = None
) -> StoryResult:
    """Run the demo; never raises for a failed step (see :attr:`StoryResult.failure`)."""
    options.validate()
    names = names_for(options.agents)
    result = StoryResult(options, names, expected_notified=(names[1],))
    timeline = Timeline(emit)
    try:
        async with timeline.step("prepare a working folder"):
            work_dir = _work_dir(options.keep)
    except DemoFailure as failure:
        result.failure = failure
        result.events = timeline.events
        return result
    log_handler = logging.FileHandler(work_dir / "demo.log", encoding="utf-8")
    log_handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    tail = _WarningTail()
    root = logging.getLogger()
    root.addHandler(log_handler)
    root.addHandler(tail)
    span = 2 * LEAD_SECONDS + options.contact_minutes * 60 + 1800.0
    clock = AcceleratedClock(options.speed, start_wall=story_start(SystemClock().wall(), span))
    world = DemoWorld(
        work_dir,
        WorldSettings(names=names, seed=options.seed),
        clock,
        timeline,
    )
    timeline.agent_clock = clock.wall
    try:
        timeline.note(
            f"{len(names)} agents ({', '.join(names)}) on a simulated radio, "
            f"time x{options.speed:g}"
        )
        await world.start()
        await _meet(world, options, result)
        await _report(world, result)
        await _fetch(world)
        async with timeline.step("collect what every agent recorded"):
            result.observation = await observe(world, result.contact)
        await _verdict(world, result)
    except DemoFailure as failure:
        result.failure = failure
    finally:
        try:
            await world.close()
        finally:
            root.removeHandler(log_handler)
            root.removeHandler(tail)
            log_handler.close()
            result.events = timeline.events
            result.warnings = tail.lines
            result.real_seconds = timeline.elapsed()
            if options.keep is None:
                shutil.rmtree(work_dir, ignore_errors=True)
            else:
                result.work_dir = work_dir
    return result


def _fits_sockets(folder: Path) -> bool:
    """The agents' control sockets (``folder/A/control.sock``) fit a Unix socket path."""
    return len(os.fsencode(folder.absolute() / "A" / SOCKET_NAME)) <= MAX_SUN_PATH


def _work_dir(keep: Path | None) -> Path:
    """A fresh temporary folder, or ``keep``, which must be new or empty."""
    if keep is None:
        folder = Path(tempfile.mkdtemp(prefix="contact-agent-demo-"))
        if _fits_sockets(folder):
            return folder
        folder.rmdir()  # TMPDIR is too deep for Unix sockets: /tmp is not
        return Path(tempfile.mkdtemp(prefix="contact-agent-demo-", dir="/tmp"))
    if not _fits_sockets(keep):
        raise AgentError(
            f"--keep {keep} is too long a path for the agents' control sockets "
            f"(at most {MAX_SUN_PATH - len('/A/' + SOCKET_NAME)} bytes); use a shorter one"
        )
    try:
        keep.mkdir(parents=True, exist_ok=True)
        if any(keep.iterdir()):
            raise AgentError(f"--keep {keep} is not empty: give a new or empty folder")
    except OSError as exc:
        raise AgentError(f"cannot create {keep}: {exc.strerror or exc}") from None
    return keep


async def _meet(world: DemoWorld, options: StoryOptions, result: StoryResult) -> None:
    names, clock, timeline = world.settings.names, world.clock, world.timeline
    a, b = names[0], names[1]
    apart = positions(names, together=False, distance_m=options.distance_m)
    together = positions(names, together=True, distance_m=options.distance_m)
    async with timeline.step(f"{a} and {b} spend {options.contact_minutes:g} minutes together"):
        _move(world, result, apart, "apart")
        timeline.note("; ".join(where(a, n, apart) for n in names[1:]))
        await clock.sleep(LEAD_SECONDS)
        world.check_running()
        start = _move(world, result, together, f"{b} at {a}'s table")
        timeline.note(f"{b} comes to {a}'s table: {where(a, b, together)}")
        contact = options.contact_minutes * 60.0
        while clock.wall() - start < contact - 1e-6:
            await clock.sleep(min(PROGRESS_SECONDS, contact - (clock.wall() - start)))
            world.check_running()
            timeline.note(
                f"{(clock.wall() - start) / 60:.0f} min together; adverts heard so far: "
                + ", ".join(f"{n} {_heard(world.agents[n])}" for n in names)
            )
        result.contact = (start, _move(world, result, apart, f"{b} left"))
        timeline.note(f"{b} leaves")
        await clock.sleep(LEAD_SECONDS)
        world.check_running()
        result.phases.append(Phase(clock.wall(), {}, "end"))


def _move(world: DemoWorld, result: StoryResult, places: dict[str, Point], label: str) -> float:
    """Put everybody in ``places`` now; returns the simulated time of the move."""
    world.place(places, WALLS)
    now = world.clock.wall()
    result.phases.append(Phase(now, places, label))
    return now


def _heard(agent: DemoAgent) -> int:
    counters = agent.service.radio_status().get("counters", {})
    return int(counters.get("accepted", 0))


async def _report(world: DemoWorld, result: StoryResult) -> None:
    reporter_agent = world.agents[world.settings.names[0]]
    name, service, timeline = reporter_agent.name, reporter_agent.service, world.timeline
    async with timeline.step(f"{name} reports a positive test"):
        server = world.key_server
        code = server.issue_code()
        timeline.note(f"the health authority gives {name} the verification code {code}")
        store, clock = service.store, world.clock
        await check_ready(service.config, store, clock, synchronized=False)
        before = service.radio_status().get("rotations", 0)
        reporter = Reporter(service.config.report, store, clock)
        outcome = await reporter.run(code, StoreKeyRelease(store, reporter_agent.data_dir, clock))
        today = rolling_start_interval_number(en_interval_number(clock.wall()))
        ended = [
            t
            for t in await store.load_own_teks()
            if t.rolling_start_interval_number == today and t.rolling_period < TEK_ROLLING_PERIOD
        ]
        timeline.check(
            bool(ended),
            f"same-day release: {name}'s key of today was ended after "
            f"{ended[0].rolling_period if ended else 0} ten-minute intervals",
            f"{name}'s key of today was not ended before publishing",
        )
        rotated = await wait_until(
            lambda: service.radio_status().get("rotations", 0) != before, ROTATION_TIMEOUT
        )
        timeline.check(
            rotated,
            f"{name}'s radio rotated to a fresh key",
            f"{name}'s radio did not rotate away from the released key within "
            f"{ROTATION_TIMEOUT:.0f} s",
        )
        timeline.check(
            outcome.keys_published >= 1,
            f"{name} published {outcome.keys_published} key(s) through verify -> certificate -> "
            f"publish; the key server accepted {outcome.inserted}",
            f"{name} published no key",
        )
        result.published_keys = outcome.keys_published


async def _fetch(world: DemoWorld) -> None:
    timeline = world.timeline
    others = world.settings.names[1:]
    async with timeline.step(f"{', '.join(others)} download and match the published keys"):
        for name in others:
            fetcher = world.agents[name].service.fetcher
            if fetcher is None:
                raise DemoFailure(timeline.current_step or "fetch", f"{name} is not running")
            summary = await fetcher.fetch_now()
            if "skipped" in summary:
                raise DemoFailure(
                    timeline.current_step or "fetch",
                    f"{name} skipped its fetch: {summary['skipped']}",
                )
            timeline.check(
                bool(summary.get("ok")) and int(str(summary.get("files_processed", 0))) >= 1,
                f"{name}: index.txt read, {summary.get('downloaded')} export(s) downloaded and "
                f"verified, {summary.get('matched_keys')} key(s) matched, "
                f"{summary.get('new_windows')} new exposure window(s)",
                f"{name}'s fetch did not process an export: {_fetch_problem(summary)}",
            )


def _fetch_problem(summary: dict[str, Any]) -> str:
    for key in ("error", "refused", "failed"):
        if summary.get(key):
            return str(summary[key])
    return f"nothing new was processed ({summary})"


async def _verdict(world: DemoWorld, result: StoryResult) -> None:
    timeline = world.timeline
    expected = result.expected_notified[0]
    async with timeline.step("check who was notified"):
        notices = {n: world.agents[n].notifications() for n in world.settings.names[1:]}
        for name, found in notices.items():
            (result.notified if found else result.not_notified).append(name)
        got = notices[expected]
        timeline.check(
            bool(got),
            f"{expected} was notified: {got[-1].get('body', '') if got else ''}",
            f"{expected} was not notified: {_explain(result, expected)}",
        )
        timeline.check(
            len(got) == 1,
            f"{expected} was notified once",
            f"{expected} was notified {len(got)} times",
        )
        for name in result.not_notified:
            timeline.note(f"{name} was not notified ({_explain(result, name)})")
        wrong = [n for n in result.notified if n != expected]
        timeline.check(
            not wrong,
            f"nobody else was notified ({', '.join(result.not_notified) or 'no other agents'})",
            f"{', '.join(wrong)} notified by mistake: "
            + "; ".join(_explain(result, n) for n in wrong),
        )


def _explain(result: StoryResult, name: str) -> str:
    """The risk figures behind a verdict, in a few words."""
    findings = result.observation.agents.get(name) if result.observation else None
    if findings is None:
        return "no results"
    if not findings.windows:
        return "no exposure window"
    scored = sum(1 for w in findings.windows if w.score > 0)
    return (
        f"{len(findings.windows)} exposure window(s), {scored} with a score above 0, "
        f"{findings.weighted_minutes:.1f} weighted minutes (the threshold is "
        f"{findings.threshold_minutes:g})"
    )
