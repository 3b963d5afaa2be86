"""Is bluetoothd there, is our adapter there and powered? Watched on our own connection.

bleak does not notice a bluetoothd restart and bless keeps a proxy to the old daemon
(read in BlueZ's ``src/adapter.c``), so the radio supervisor watches for itself:
``NameOwnerChanged`` for ``org.bluez``, ``InterfacesAdded``/``Removed`` of the adapter,
and the adapter's ``Powered`` and ``Discovering`` properties. :attr:`BluezHealth.generation`
counts how often the adapter became usable; a new generation means "start over".
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from dbus_fast import BusType, Message, MessageType, unpack_variants
from dbus_fast.aio import MessageBus

from agent.ble.busutil import call_method, close_bus
from agent.ble.errors import BluetoothOperationError, Reason, to_agent_error
from agent.constants import DBUS_CALL_TIMEOUT_SECONDS
from agent.errors import BluetoothAccessDeniedError

_LOGGER = logging.getLogger(__name__)

BLUEZ = "org.bluez"
ADAPTER = "org.bluez.Adapter1"
MONITOR_MANAGER = "org.bluez.AdvertisementMonitorManager1"
_DBUS = "org.freedesktop.DBus"
_OM = "org.freedesktop.DBus.ObjectManager"
_PROPS = "org.freedesktop.DBus.Properties"


class BluezHealth:
    """State of bluetoothd and one adapter, kept current from D-Bus signals."""

    def __init__(
        self,
        adapter: str,
        *,
        call_timeout: float = DBUS_CALL_TIMEOUT_SECONDS,
        changed: asyncio.Event | None = None,
    ) -> None:
        self.adapter = adapter
        self.adapter_path = f"/org/bluez/{adapter}"
        self.owner: str | None = None
        """Unique bus name of the running bluetoothd, None when it is not running."""
        self.interfaces: dict[str, dict[str, Any]] = {}
        """The adapter object's interfaces and properties (empty: no such adapter)."""
        self.generation = 0
        self.changed = changed or asyncio.Event()
        """Set on every change of state."""
        self.fatal: BluetoothAccessDeniedError | None = None
        """Set when D-Bus refused us access after a bluetoothd restart."""
        self._timeout = call_timeout
        self._bus: MessageBus | None = None
        self._was_ready = False
        self._sync_task: asyncio.Task[None] | None = None

    # ---- derived state ----------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """Our own connection to the system bus is up (False before start and once lost)."""
        return self._bus is not None and self._bus.connected

    @property
    def present(self) -> bool:
        return self.owner is not None and ADAPTER in self.interfaces

    @property
    def powered(self) -> bool:
        return self.present and bool(self.interfaces[ADAPTER].get("Powered"))

    @property
    def ready(self) -> bool:
        """bluetoothd runs and the adapter exists and is powered."""
        return self.powered

    @property
    def discovering(self) -> bool | None:
        """The adapter's Discovering property (None when unknown)."""
        if not self.present:
            return None
        value = self.interfaces[ADAPTER].get("Discovering")
        return bool(value) if value is not None else None

    @property
    def passive_available(self) -> bool:
        """BlueZ offers advertisement monitors (passive scanning) on the adapter."""
        return MONITOR_MANAGER in self.interfaces

    # ---- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        """Connect and read the current state; AccessDenied raises the exit-78 error."""
        try:
            bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        except Exception as exc:
            raise to_agent_error(exc, "connecting to the system D-Bus") from exc
        self._bus = bus
        bus.add_message_handler(self._on_message)
        try:
            for rule in (
                f"type='signal',sender='{_DBUS}',interface='{_DBUS}',"
                f"member='NameOwnerChanged',arg0='{BLUEZ}'",
                f"type='signal',sender='{BLUEZ}',interface='{_OM}',path='/'",
                f"type='signal',sender='{BLUEZ}',interface='{_PROPS}',"
                f"member='PropertiesChanged',path='{self.adapter_path}'",
            ):
                await self._call(_DBUS, "/org/freedesktop/DBus", _DBUS, "AddMatch", "s", [rule])
            await self._sync()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        if self._sync_task is not None:
            self._sync_task.cancel()
        bus, self._bus = self._bus, None
        await close_bus(bus)

    async def _call(
        self,
        dest: str,
        path: str,
        iface: str,
        member: str,
        sig: str = "",
        body: list[Any] | None = None,
    ) -> list[Any]:
        assert self._bus is not None
        try:
            return await call_method(
                self._bus, dest, path, iface, member, sig, body or [], timeout=self._timeout
            )
        except Exception as exc:
            raise to_agent_error(exc, f"{member} on {dest}") from exc

    async def _sync(self) -> None:
        """Read the owner of org.bluez and the adapter's state from scratch."""
        try:
            (owner,) = await self._call(
                _DBUS, "/org/freedesktop/DBus", _DBUS, "GetNameOwner", "s", [BLUEZ]
            )
        except BluetoothOperationError as exc:
            if exc.classified.reason is not Reason.BLUEZ_GONE:
                raise
            self.owner, self.interfaces = None, {}  # bluetoothd is not running
            self._update()
            return
        (objects,) = await self._call(BLUEZ, "/", _OM, "GetManagedObjects")
        self.owner = str(owner)
        self.interfaces = unpack_variants(objects.get(self.adapter_path, {}))
        self._update()

    # ---- signals -----------------------------------------------------------------------
    def _on_message(self, msg: Message) -> None:
        if msg.message_type != MessageType.SIGNAL:
            return
        if msg.member == "NameOwnerChanged" and msg.body and msg.body[0] == BLUEZ:
            new_owner = msg.body[2]
            self.owner, self.interfaces = None, {}
            self._update()
            if new_owner:
                _LOGGER.info("bluetoothd is running again")
                self._sync_task = asyncio.create_task(self._resync())
            else:
                _LOGGER.warning("bluetoothd stopped")
        elif msg.member == "InterfacesAdded" and msg.body and msg.body[0] == self.adapter_path:
            self.owner = self.owner or msg.sender
            self.interfaces.update(unpack_variants(msg.body[1]))
            self._update()
        elif msg.member == "InterfacesRemoved" and msg.body and msg.body[0] == self.adapter_path:
            for name in msg.body[1]:
                self.interfaces.pop(name, None)
            if ADAPTER not in self.interfaces:
                self.interfaces = {}
            self._update()
        elif msg.member == "PropertiesChanged" and msg.path == self.adapter_path and msg.body:
            iface, changed, invalidated = msg.body
            props = self.interfaces.get(iface)
            if props is not None:
                props.update(unpack_variants(changed))
                for name in invalidated:
                    props.pop(name, None)
                self._update()

    async def _resync(self) -> None:
        try:
            await self._sync()
        except BluetoothAccessDeniedError as exc:
            self.fatal = exc
            self.changed.set()
        except Exception as exc:  # noqa: BLE001 - the next signal will try again
            _LOGGER.debug("reading bluetoothd state failed: %s", exc)

    def _update(self) -> None:
        ready = self.ready
        if ready and not self._was_ready:
            self.generation += 1
            _LOGGER.info("adapter %s is ready", self.adapter)
        elif self._was_ready and not ready:
            _LOGGER.warning("adapter %s is not available (%s)", self.adapter, self.describe())
        self._was_ready = ready
        self.changed.set()

    def describe(self) -> str:
        """A short human-readable state."""
        if self.owner is None:
            return "bluetoothd not running"
        if not self.present:
            return f"no adapter {self.adapter}"
        return "powered" if self.powered else "powered off"
