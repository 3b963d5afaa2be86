"""sd_notify datagrams and the heartbeat registry behind the watchdog."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.clock import FakeClock
from agent.daemon.sdnotify import Heartbeats, SdNotifier


@pytest.fixture
def listener(short_dir: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(short_dir / "notify")
    sock.bind(path)
    sock.settimeout(2)
    yield sock, path
    sock.close()


def test_ready_status_and_stopping_reach_the_socket(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    notifier = SdNotifier({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    notifier.ready("scanning; clock synchronised")
    first = sock.recv(4096).decode().split("\n")
    assert "READY=1" in first
    assert "STATUS=scanning; clock synchronised" in first
    assert f"MAINPID={os.getpid()}" in first
    notifier.status("scanning; clock synchronised")  # unchanged: not resent
    notifier.status("advertising and scanning")
    assert sock.recv(4096) == b"STATUS=advertising and scanning"
    notifier.stopping("flushing sightings")
    assert sock.recv(4096).decode().split("\n") == ["STOPPING=1", "STATUS=flushing sightings"]


def test_abstract_namespace_socket() -> None:
    name = f"contact-agent-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    try:
        assert SdNotifier({"NOTIFY_SOCKET": "@" + name}).send("WATCHDOG=1")
        assert sock.recv(100) == b"WATCHDOG=1"
    finally:
        sock.close()


def test_without_systemd_everything_is_a_no_op() -> None:
    notifier = SdNotifier({})
    assert not notifier.enabled
    assert notifier.send("READY=1") is False
    assert notifier.watchdog_seconds is None


def test_unreachable_socket_does_not_raise(short_dir: Path) -> None:
    notifier = SdNotifier({"NOTIFY_SOCKET": str(short_dir / "nobody-listens")})
    assert notifier.send("READY=1") is False


def test_watchdog_period_only_for_this_pid() -> None:
    mine = SdNotifier({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(os.getpid())})
    assert mine.watchdog_seconds == 60.0
    other = SdNotifier({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"})
    assert other.watchdog_seconds is None
    assert SdNotifier({"WATCHDOG_USEC": "junk"}).watchdog_seconds is None


def test_heartbeats_report_the_stalled_loop() -> None:
    clock = FakeClock()
    beats = Heartbeats(clock.monotonic)
    beats.register("writer", 30)
    beats.register("radio", 10)
    clock.advance(9)
    assert beats.stale() == []
    clock.advance(2)
    assert beats.stale() == ["radio"]
    beats.beat("radio")
    assert beats.stale() == []
    clock.advance(25)
    assert beats.stale() == ["radio", "writer"]
    beats.unregister("radio")
    beats.beat("writer")
    assert beats.stale() == []
    assert beats.ages() == {"writer": 0.0}
