"""A fake D-Bus service on dbus-fast's low-level API: the plumbing under the fake bluetoothd.

:class:`BusService` owns one connection and an :class:`~agent.lab.sim.dbusobj.ObjectTree`.
It logs every method call (:attr:`BusService.calls`), can refuse callers with
``AccessDenied`` like a dbus-daemon policy, answers ``Introspect``, ``GetManagedObjects``
and ``Properties.Get``/``GetAll`` from the tree, and routes any other call on
``interface.Member`` to the subclass method ``_m_<last part of interface>_<Member>``
(plain or ``async``; raise :class:`~agent.lab.sim.dbusobj.DBusFailure` for an error reply).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus
from dbus_fast.errors import DBusError

from agent.ble.busutil import call_method, close_bus
from agent.lab.sim.dbusobj import (
    INTROSPECTABLE,
    OBJECT_MANAGER,
    PROPERTIES,
    DBusFailure,
    MethodTable,
    ObjectTree,
)

_LOGGER = logging.getLogger(__name__)

ACCESS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"
_DBUS = "org.freedesktop.DBus"
_CLIENT_CALL_TIMEOUT = 5.0


def _sent(future: asyncio.Future[Any]) -> None:
    """A message went out, or the connection was gone: nobody waits for the result."""
    if not future.cancelled() and future.exception() is not None:
        _LOGGER.debug("fake service: send failed: %s", future.exception())


@dataclass(frozen=True, slots=True)
class Call:
    """A method call the service received (for assertions)."""

    sender: str
    path: str
    interface: str
    member: str
    body: tuple[Any, ...]


class BusService:
    """Base of a fake service; subclasses add objects and ``_m_*`` handlers."""

    name = ""
    """The well-known bus name the service takes."""

    def __init__(self, *, bus_address: str | None = None) -> None:
        self.calls: list[Call] = []
        self._bus_address = bus_address
        self._bus: MessageBus | None = None
        self._tree = ObjectTree(self._send)
        self._deny_all = False
        self._denied: set[str] = set()
        self._pending: set[asyncio.Future[None]] = set()

    @property
    def unique_name(self) -> str | None:
        return self._bus.unique_name if self._bus is not None else None

    def deny_access(self, sender: str | None = None) -> None:
        """Refuse calls from ``sender`` (a unique name), or from every client if None."""
        if sender is None:
            self._deny_all = True
        else:
            self._denied.add(sender)

    def allow_access(self) -> None:
        self._deny_all = False
        self._denied.clear()

    # ---- connection ----------------------------------------------------------------------
    async def _connect(self, match_rules: Sequence[str]) -> None:
        """Connect, subscribe to ``match_rules``, take :attr:`name` (do not queue)."""
        bus = MessageBus(bus_address=self._bus_address, bus_type=BusType.SYSTEM)
        self._bus = await bus.connect()
        self._bus.add_message_handler(self._on_message)
        for rule in match_rules:
            await self._bus_call(_DBUS, "/org/freedesktop/DBus", _DBUS, "AddMatch", "s", [rule])
        await self._bus_call(
            _DBUS, "/org/freedesktop/DBus", _DBUS, "RequestName", "su", [self.name, 4]
        )

    async def _disconnect(self) -> None:
        bus, self._bus = self._bus, None
        await close_bus(bus)

    def _send(self, msg: Message) -> None:
        if self._bus is not None:
            self._bus.send(msg).add_done_callback(_sent)

    async def _bus_call(
        self, dest: str, path: str, iface: str, member: str, sig: str = "", body: Sequence[Any] = ()
    ) -> list[Any]:
        """Call a method; an error reply raises DBusFailure, silence raises NoReply."""
        if self._bus is None:
            raise DBusFailure("org.freedesktop.DBus.Error.Disconnected", "not connected")
        try:
            return await call_method(
                self._bus, dest, path, iface, member, sig, body, timeout=_CLIENT_CALL_TIMEOUT
            )
        except DBusError as exc:
            raise DBusFailure(exc.type, exc.text) from exc
        except (TimeoutError, OSError, EOFError) as exc:
            raise DBusFailure("org.freedesktop.DBus.Error.NoReply", str(exc)) from exc

    # ---- dispatch ------------------------------------------------------------------------
    def _on_message(self, msg: Message) -> Message | bool | None:
        if msg.message_type == MessageType.SIGNAL:
            self._on_signal(msg)
            return None
        if msg.message_type != MessageType.METHOD_CALL:
            return None
        sender, path = msg.sender or "", msg.path or "/"
        self.calls.append(
            Call(sender, path, msg.interface or "", msg.member or "", tuple(msg.body))
        )
        if self._deny_all or sender in self._denied:
            return Message.new_error(msg, ACCESS_DENIED, self._denied_text(msg))
        handler = self._handler(msg)
        if handler is None:
            return Message.new_error(
                msg,
                "org.freedesktop.DBus.Error.UnknownMethod",
                f'Method "{msg.member}" with signature "{msg.signature}" on interface '
                f'"{msg.interface}" doesn\'t exist',
            )
        self._spawn(self._reply(msg, handler))
        return True

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _handler(self, msg: Message) -> Any:
        iface, path = msg.interface or "", msg.path or "/"
        if iface == INTROSPECTABLE:
            return self._m_introspect
        if iface == OBJECT_MANAGER and path == "/":
            return self._m_get_managed_objects
        if iface == PROPERTIES and path in self._tree.objects:
            return getattr(self, f"_m_props_{(msg.member or '').lower()}", None)
        if iface not in self._methods() or not self._tree.has_interface(path, iface):
            return None
        return getattr(self, f"_m_{iface.rsplit('.', 1)[-1]}_{msg.member}", None)

    async def _reply(self, msg: Message, handler: Any) -> None:
        try:
            result = handler(msg, *msg.body)
            if asyncio.iscoroutine(result):
                result = await result
            reply = Message.new_method_return(msg, *(result or ("", [])))
        except DBusFailure as exc:
            reply = Message.new_error(msg, exc.name, exc.text)
        except Exception:
            _LOGGER.exception("fake %s: %s.%s failed", self.name, msg.interface, msg.member)
            reply = Message.new_error(msg, "org.freedesktop.DBus.Error.Failed", "internal error")
        self._send(reply)

    def _denied_text(self, msg: Message) -> str:
        """dbus-daemon's wording when a policy refuses a call."""
        return (
            f'Rejected send message, 1 matched rules; type="method_call", '
            f'sender="{msg.sender}" interface="{msg.interface}" member="{msg.member}" '
            f'error name="(unset)" requested_reply="0" destination="{self.name}"'
        )

    # ---- for subclasses --------------------------------------------------------------------
    def _methods(self) -> MethodTable:
        """Interfaces with methods, for routing and introspection."""
        return {}

    def _writable(self) -> Mapping[str, str]:
        """Writable property name -> D-Bus type (for introspection)."""
        return {}

    def _on_signal(self, msg: Message) -> None:
        """A signal matched one of the subscriptions."""

    # ---- standard interfaces ---------------------------------------------------------------
    def _m_introspect(self, msg: Message) -> tuple[str, list[Any]]:
        xml = self._tree.introspect(msg.path or "/", self._methods(), self._writable())
        return "s", [xml]

    def _m_get_managed_objects(self, msg: Message) -> tuple[str, list[Any]]:
        return "a{oa{sa{sv}}}", [dict(self._tree.objects)]

    def _m_props_getall(self, msg: Message, iface: str) -> tuple[str, list[Any]]:
        return "a{sv}", [self._tree.objects[msg.path or ""].get(iface, {})]

    def _m_props_get(self, msg: Message, iface: str, name: str) -> tuple[str, list[Any]]:
        value = self._tree.objects[msg.path or ""].get(iface, {}).get(name)
        if value is None:
            raise DBusFailure("org.freedesktop.DBus.Error.InvalidArgs", "No such property")
        return "v", [value]
