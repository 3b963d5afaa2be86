"""timedate1 NTPSynchronized over a private bus, with the marker as fallback."""

from __future__ import annotations

from pathlib import Path

from agent.clocksync import system_synchronized, timedate_synchronized
from tests.daemon.buses import FakeTimedate, serve


async def test_timedate1_answers(system_bus: str, tmp_path: Path) -> None:
    fake = FakeTimedate(synchronized=True)
    bus = await serve(system_bus, "org.freedesktop.timedate1", "/org/freedesktop/timedate1", fake)
    try:
        assert await timedate_synchronized(system_bus) is True
        fake.synchronized = False
        # timedate1 has the last word even when a marker exists
        marker = tmp_path / "synchronized"
        marker.touch()
        assert await system_synchronized(system_bus, marker) == (False, "timedate1")
    finally:
        bus.disconnect()


async def test_falls_back_to_marker_without_timedate1(system_bus: str, tmp_path: Path) -> None:
    marker = tmp_path / "synchronized"
    assert await timedate_synchronized(system_bus) is None
    assert await system_synchronized(system_bus, marker) == (False, "marker")
    marker.touch()
    assert await system_synchronized(system_bus, marker) == (True, "marker")


async def test_unreachable_bus(short_dir: Path) -> None:
    assert await timedate_synchronized(f"unix:path={short_dir}/none", timeout=1) is None
    assert await timedate_synchronized("not-an-address", timeout=1) is None
