"""Small D-Bus services for tests: desktop notifications and timedate1.

No `from __future__ import annotations` here: dbus-fast reads the D-Bus signatures from
the annotations at class creation.
"""

from typing import Any

from dbus_fast import Variant
from dbus_fast.aio import MessageBus
from dbus_fast.service import PropertyAccess, ServiceInterface, dbus_property, method


class FakeNotifications(ServiceInterface):
    """org.freedesktop.Notifications that records every Notify call."""

    def __init__(self) -> None:
        super().__init__("org.freedesktop.Notifications")
        self.calls: list[dict[str, Any]] = []

    @method()
    def Notify(
        self,
        app_name: "s",  # noqa: F821
        replaces_id: "u",  # noqa: F821
        app_icon: "s",  # noqa: F821
        summary: "s",  # noqa: F821
        body: "s",  # noqa: F821
        actions: "as",  # noqa: F722
        hints: "a{sv}",  # noqa: F722
        expire_timeout: "i",  # noqa: F821
    ) -> "u":  # noqa: F821
        self.calls.append(
            {
                "app_name": app_name,
                "summary": summary,
                "body": body,
                "hints": {k: v.value for k, v in hints.items()},
            }
        )
        return len(self.calls)

    @method()
    def GetServerInformation(self) -> "ssss":  # noqa: F821
        return ["fake", "tests", "1", "1.2"]


class FakeTimedate(ServiceInterface):
    """org.freedesktop.timedate1 with a settable NTPSynchronized."""

    def __init__(self, synchronized: bool) -> None:
        super().__init__("org.freedesktop.timedate1")
        self.synchronized = synchronized

    @dbus_property(access=PropertyAccess.READ)
    def NTPSynchronized(self) -> "b":  # noqa: F821
        return self.synchronized


async def serve(address: str, name: str, path: str, interface: ServiceInterface) -> MessageBus:
    """Export ``interface`` at ``path`` under the well-known ``name`` on ``address``."""
    bus = await MessageBus(bus_address=address).connect()
    bus.export(path, interface)
    await bus.request_name(name)
    return bus


__all__ = ["FakeNotifications", "FakeTimedate", "Variant", "serve"]
