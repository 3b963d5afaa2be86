"""Small D-Bus helpers: one method call, and closing a connection for good.

Both libraries' ``disconnect()`` only shut the socket down and leave closing it to the
garbage collector (a ResourceWarning); :func:`close_bus` waits for the disconnect to
complete, then closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Sequence
from typing import Any

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus
from dbus_fast.errors import DBusError


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


async def call_method(
    bus: MessageBus,
    dest: str,
    path: str,
    interface: str,
    member: str,
    signature: str = "",
    body: Sequence[Any] = (),
    *,
    timeout: float,
) -> list[Any]:
    """One method call on a dbus-fast bus; an error reply raises dbus-fast's DBusError.

    TimeoutError and connection errors (OSError, EOFError) pass through.
    """
    msg = Message(
        destination=dest,
        path=path,
        interface=interface,
        member=member,
        signature=signature,
        body=list(body),
    )
    async with asyncio.timeout(timeout):
        reply = await bus.call(msg)
    if reply is None:
        raise EOFError("no reply: the connection closed")
    if reply.message_type == MessageType.ERROR:
        text = str(reply.body[0]) if reply.body else ""
        raise DBusError(reply.error_name or "org.freedesktop.DBus.Error.Failed", text)
    return list(reply.body)
