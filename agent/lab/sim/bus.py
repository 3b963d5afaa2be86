"""A private dbus-daemon that stands in for the system bus: no root, systemd or Bluetooth.

bleak (dbus-fast) and bless (dbus_next) connect to ``DBUS_SYSTEM_BUS_ADDRESS`` when it is
set, so pointing that variable at a private daemon puts the real libraries, the fake
bluetoothd and the agent on one bus of their own (``docs/demo.md``).

The daemon runs with its own configuration file. ``deny_send_to`` adds a mandatory policy
that refuses method calls to those names, which is how a distribution's D-Bus policy
locks a user out of ``org.bluez`` (the real ``AccessDenied`` error text included).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from xml.sax.saxutils import quoteattr

SYSTEM_BUS_ENV = "DBUS_SYSTEM_BUS_ADDRESS"

_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
  <policy context="mandatory">{deny}
  </policy>
</busconfig>
"""


class BusStartError(RuntimeError):
    """The private dbus-daemon could not be started."""


def find_dbus_daemon() -> str | None:
    """Path of the dbus-daemon binary, or None when it is not installed."""
    return shutil.which("dbus-daemon")


class PrivateBus:
    """A dbus-daemon process with its socket in a temporary directory."""

    def __init__(self, *, deny_send_to: Sequence[str] = ()) -> None:
        self._deny = tuple(deny_send_to)
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[str] | None = None
        self.address = ""

    def start(self) -> str:
        """Start the daemon and return its address."""
        binary = find_dbus_daemon()
        if binary is None:
            raise BusStartError("dbus-daemon is not installed (Debian package 'dbus-daemon')")
        self._dir = tempfile.TemporaryDirectory(prefix="agent-bus-")
        base = Path(self._dir.name)
        deny = "".join(f"\n    <deny send_destination={quoteattr(name)}/>" for name in self._deny)
        config = base / "bus.conf"
        config.write_text(_CONFIG.format(socket=base / "bus", deny=deny), encoding="utf-8")
        self._proc = subprocess.Popen(
            [binary, f"--config-file={config}", "--nofork", "--nopidfile", "--print-address=1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self._proc.stdout is not None
        self.address = self._proc.stdout.readline().strip()
        if not self.address:
            self.stop()
            raise BusStartError("dbus-daemon exited without printing its address")
        return self.address

    def stop(self) -> None:
        """Stop the daemon and remove its directory."""
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            if self._proc.stdout is not None:
                self._proc.stdout.close()
            self._proc = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> PrivateBus:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@contextmanager
def private_system_bus(*, deny_send_to: Sequence[str] = ()) -> Iterator[PrivateBus]:
    """A private bus exported as ``DBUS_SYSTEM_BUS_ADDRESS`` for the duration."""
    old = os.environ.get(SYSTEM_BUS_ENV)
    with PrivateBus(deny_send_to=deny_send_to) as bus:
        os.environ[SYSTEM_BUS_ENV] = bus.address
        try:
            yield bus
        finally:
            if old is None:
                os.environ.pop(SYSTEM_BUS_ENV, None)
            else:
                os.environ[SYSTEM_BUS_ENV] = old
