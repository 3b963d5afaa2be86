"""Closing a D-Bus connection for good (dbus-fast and dbus_next alike).

Both libraries' ``disconnect()`` only shuts the socket down and leave closing it to the
garbage collector (a ResourceWarning). We wait for the disconnect to complete, then close.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any


async def close_bus(bus: Any, timeout: float = 1.0) -> None:
    """Disconnect ``bus`` (a dbus-fast or dbus_next MessageBus) and close its socket."""
    if bus is None:
        return
    with contextlib.suppress(Exception):
        bus.disconnect()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(bus.wait_for_disconnect(), timeout)
    sock = getattr(bus, "_sock", None)
    if isinstance(sock, socket.socket):
        sock.close()
