"""sd_notify never blocks the daemon (found by the fault harness: a manager that does not
read its notification socket froze the event loop once the datagram queue was full)."""

from __future__ import annotations

import socket
from pathlib import Path

from agent.daemon.sdnotify import SdNotifier


def test_a_manager_that_stops_reading_loses_messages_not_the_daemon(short_dir: Path) -> None:
    path = short_dir / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind(str(path))  # bound, never read: the queue fills up
        notifier = SdNotifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "1000000"})
        sent = [notifier.send("WATCHDOG=1") for _ in range(500)]  # would block without the fix
        assert sent[0] is True
        assert sent.count(False) > 0  # later ones dropped once the queue was full
        manager.setblocking(False)
        assert manager.recv(64) == b"WATCHDOG=1"
