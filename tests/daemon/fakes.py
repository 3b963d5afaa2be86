"""Test doubles of the daemon's ports: a radio that needs no D-Bus, a steppable clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from agent.clock import en_interval_number
from agent.config import RadioConfig
from agent.daemon.radio import RadioRequest
from agent.errors import AgentError
from agent.keyschedule import KeySchedule
from agent.models import Sighting
from agent.payload import Metadata


class SteppableClock:
    """Real time plus an offset the test can step (``date -s``)."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset

    def wall(self) -> float:
        return time.time() + self.offset

    def monotonic(self) -> float:
        return time.monotonic()

    def step(self, seconds: float) -> None:
        self.offset += seconds


class FakeRadio:
    """Implements RadioPort: 'hears' one sighting per round while scanning is allowed
    and takes a broadcast from the key schedule while advertising is allowed."""

    def __init__(
        self,
        request: RadioRequest,
        *,
        fail_with: BaseException | None = None,
        ready: bool = True,
        round_seconds: float = 0.02,
    ) -> None:
        self.request = request
        self.advertising_allowed = False
        self.scanning_allowed = False
        self.rotations_requested = 0
        self.restarts = 0
        self.persist_errors = 0
        self.rotations = 0
        self.heard = 0
        self.fail_with = fail_with
        self._ready = ready
        self._round = round_seconds
        self._heartbeat: float | None = None
        self.payloads: list[bytes] = []
        """What went on air, one entry per rotation (cleared when advertising stops)."""
        self._rotate = False

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def heartbeat(self) -> float | None:
        return self._heartbeat

    def set_advertising_allowed(self, allowed: bool) -> None:
        self.advertising_allowed = allowed

    def set_scanning_allowed(self, allowed: bool) -> None:
        self.scanning_allowed = allowed

    def rotate_now(self) -> None:
        self.rotations_requested += 1
        self._rotate = True

    def restart(self, config: RadioConfig, schedule: KeySchedule, metadata: Metadata) -> None:
        self.request = replace(self.request, config=config, schedule=schedule, metadata=metadata)
        self.restarts += 1
        self.payloads.clear()  # off air, then on air again on the new schedule

    def status(self) -> dict[str, Any]:
        return {
            "adapter": self.request.config.adapter,
            "advertising": self.advertising_allowed and bool(self.payloads),
            "scanning": self.scanning_allowed,
            "rotations": self.rotations,
            "counters": {"accepted": self.heard, "scanner_restarts": 0},
        }

    async def run(self) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        clock = self.request.clock
        while True:
            self._heartbeat = clock.monotonic()
            if self.scanning_allowed:
                self.heard += 1
                rpi = self.heard.to_bytes(16, "big")
                self.request.queue.put_nowait(Sighting(clock.wall(), rpi, bytes(4), -60))
            if self.advertising_allowed and (not self.payloads or self._rotate):
                self._rotate = False
                broadcast = self.request.schedule.broadcast(
                    en_interval_number(clock.wall()), self.request.metadata
                )
                try:
                    await self.request.persist(self.request.schedule.pop_dirty())
                except AgentError:  # like the real radio: the rotation is retried, run goes on
                    self.persist_errors += 1
                    broadcast = None
                if broadcast is not None:
                    self.payloads.append(bytes(broadcast.service_data))
                    self.rotations += 1
            if not self.advertising_allowed:
                self.payloads.clear()
            await asyncio.sleep(self._round)


class RadioFactory:
    """Builds FakeRadios (the daemon builds one); ``plan`` gives the failure of each."""

    def __init__(self, *plan: BaseException | None, ready: bool = True) -> None:
        self.plan = list(plan)
        self.radios: list[FakeRadio] = []
        self._ready = ready

    def __call__(self, request: RadioRequest) -> FakeRadio:
        fail = self.plan.pop(0) if self.plan else None
        radio = FakeRadio(request, fail_with=fail, ready=self._ready)
        self.radios.append(radio)
        return radio

    @property
    def last(self) -> FakeRadio:
        return self.radios[-1]


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``check()`` is true (polling every 20 ms); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)
