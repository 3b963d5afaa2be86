"""The advertiser port on bless's BlueZ backend, without ``BlessServer.start()``.

``BlessServer.start()`` needs a GATT service, advertises ``peripheral`` (connectable) with
a LocalName and TxPower and no service data (BlueZ ``doc/org.bluez.LEAdvertisement.rst``). We
use bless for the bus connection and adapter proxy and subclass its ``BlueZLEAdvertisement``:

- ``Type=broadcast`` (ADV_NONCONN_IND), ``ServiceUUIDs=[FD6F]``,
  ``ServiceData={FD6F: RPI || AEM}``, ``MinInterval/MaxInterval=200/270`` ms;
- ``LocalName`` and ``TxPower`` are hidden, so nothing else goes on air (28 bytes, no
  scan response).

A rotation unregisters, waits a short gap with nothing on air, and registers a new
object: a new advertising instance, for which the kernel picks a new random address,
so address and RPI change together (or the address links two RPIs). An in-place PropertiesChanged
update
would keep the address and is never used.

(No ``from __future__ import annotations`` here: dbus_next reads the D-Bus signatures
from the annotations of the exported methods.)
"""

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from bless.backends.bluezdbus.dbus.advertisement import BlueZLEAdvertisement, Type
from bless.backends.bluezdbus.server import BlessServerBlueZDBus as BlessServer
from dbus_next.constants import PropertyAccess
from dbus_next.service import dbus_property, method
from dbus_next.signature import Variant

from agent.ble import Sleep
from agent.ble.busutil import close_bus
from agent.ble.errors import Action, classify, to_agent_error
from agent.constants import (
    ADV_MAX_INTERVAL_MS,
    ADV_MIN_INTERVAL_MS,
    DBUS_CALL_TIMEOUT_SECONDS,
    EN_SERVICE_UUID,
    ROTATION_GAP_SECONDS,
)
from agent.payload import ServiceData

_LOGGER = logging.getLogger(__name__)

BLUEZ = "org.bluez"
ADV_MANAGER = "org.bluez.LEAdvertisingManager1"


@dataclass(frozen=True, slots=True)
class _Owner:
    """What ``BlueZLEAdvertisement`` reads from its "application"."""

    base_path: str
    app_name: str


class GaenAdvertisement(BlueZLEAdvertisement):
    """``org.bluez.LEAdvertisement1`` of one EN payload; see the module docstring."""

    def __init__(
        self,
        owner: _Owner,
        index: int,
        payload: bytes,
        *,
        min_interval_ms: int = ADV_MIN_INTERVAL_MS,
        max_interval_ms: int = ADV_MAX_INTERVAL_MS,
    ) -> None:
        super().__init__(Type.BROADCAST, index, owner)  # type: ignore[arg-type]
        self._service_uuids = [EN_SERVICE_UUID]
        self._service_data = {EN_SERVICE_UUID: Variant("ay", bytes(payload))}
        self._min_interval = min_interval_ms
        self._max_interval = max_interval_ms
        self.released = False

    @dbus_property(access=PropertyAccess.READ, disabled=True)  # type: ignore[untyped-decorator]
    def LocalName(self) -> "s":  # type: ignore[name-defined]  # noqa: F821
        return ""

    @dbus_property(access=PropertyAccess.READ, disabled=True)  # type: ignore[untyped-decorator]
    def TxPower(self) -> "n":  # type: ignore[name-defined]  # noqa: F821
        return 0

    @method()  # type: ignore[untyped-decorator]
    def Release(self) -> None:
        """bluetoothd dropped the advertisement (adapter gone, daemon exiting)."""
        self.released = True
        _LOGGER.debug("bluetoothd released %s", self.path)


class BlessAdvertiser:
    """Advertiser port on one adapter; one advertisement at a time."""

    def __init__(
        self,
        adapter: str,
        *,
        sleep: Sleep = asyncio.sleep,
        gap_seconds: float = ROTATION_GAP_SECONDS,
        min_interval_ms: int = ADV_MIN_INTERVAL_MS,
        max_interval_ms: int = ADV_MAX_INTERVAL_MS,
        call_timeout: float = DBUS_CALL_TIMEOUT_SECONDS,
    ) -> None:
        self.adapter = adapter
        self.adapter_path = f"/org/bluez/{adapter}"
        self.rotations = 0
        self._sleep = sleep
        self._gap = gap_seconds
        self._intervals = (min_interval_ms, max_interval_ms)
        self._timeout = call_timeout
        self._owner = _Owner(f"/org/contactagent/{adapter}", f"contact_agent_{adapter}")
        self._server: Any = None
        self._manager: Any = None
        self._advert: GaenAdvertisement | None = None
        self._index = 0
        self._lock = asyncio.Lock()

    @property
    def advertising(self) -> bool:
        return self._advert is not None and not self._advert.released

    async def start(self, payload: bytes) -> None:
        """Put ``payload`` on air (a rotation if something is on air already)."""
        async with self._lock:
            if self._advert is not None:
                await self._unregister()
                await self._sleep(self._gap)
            await self._register(payload)

    async def rotate(self, payload: bytes) -> None:
        """Off air, gap, on air with a new advertisement (new address) and payload."""
        async with self._lock:
            await self._unregister()
            await self._sleep(self._gap)
            await self._register(payload)
            self.rotations += 1

    async def stop(self) -> None:
        """Off air, and close our bus connection."""
        async with self._lock:
            try:
                await self._unregister()
            finally:
                await self._disconnect()

    async def _connect(self) -> None:
        if self._server is not None:
            return
        try:
            server = BlessServer(name=self._owner.app_name, adapter=self.adapter)
        except Exception as exc:
            raise to_agent_error(exc, "connecting to BlueZ") from exc
        self._server = server
        try:
            async with asyncio.timeout(self._timeout):
                await asyncio.shield(server.setup_task)  # cancelling us must not cancel it
                adapter_proxy = server.adapter
                if adapter_proxy.path != self.adapter_path:
                    # bless matches adapter names as substrings ("hci1" finds "hci10")
                    node = await server.bus.introspect(BLUEZ, self.adapter_path)
                    adapter_proxy = server.bus.get_proxy_object(BLUEZ, self.adapter_path, node)
            self._manager = adapter_proxy.get_interface(ADV_MANAGER)
        except Exception as exc:
            await self._disconnect()
            raise to_agent_error(exc, f"opening adapter {self.adapter}") from exc
        except BaseException:  # cancelled: still close what bless opened
            await self._disconnect()
            raise

    async def _disconnect(self) -> None:
        server, self._server, self._manager = self._server, None, None
        if server is None:
            return
        setup = server.setup_task
        if not setup.done():
            # let bless finish connecting (bounded): a connection cancelled half-way
            # cannot be closed any more
            await asyncio.wait({setup}, timeout=self._timeout)
            setup.cancel()
        if setup.done() and not setup.cancelled():
            setup.exception()  # retrieved: the caller has seen (or does not care about) it
        await close_bus(getattr(server, "bus", None))

    async def _register(self, payload: bytes) -> None:
        ServiceData.from_bytes(payload)  # exactly 20 bytes, or MalformedInputError
        await self._connect()
        self._index += 1
        advert = GaenAdvertisement(
            self._owner,
            self._index,
            payload,
            min_interval_ms=self._intervals[0],
            max_interval_ms=self._intervals[1],
        )
        bus = self._server.bus
        bus.export(advert.path, advert)
        try:
            async with asyncio.timeout(self._timeout):
                await self._manager.call_register_advertisement(advert.path, {})
        except Exception as exc:
            bus.unexport(advert.path)
            err = to_agent_error(exc, "registering the advertisement")
            if classify(exc).action is not Action.BACKOFF:
                await self._disconnect()  # start over on a fresh connection next time
            raise err from exc
        self._advert = advert
        _LOGGER.debug("advertising on %s as %s", self.adapter, advert.path)

    async def _unregister(self) -> None:
        advert, self._advert = self._advert, None
        if advert is None or self._server is None:
            return
        try:
            if not advert.released and self._server.bus.connected:
                async with asyncio.timeout(self._timeout):
                    await self._manager.call_unregister_advertisement(advert.path)
        except Exception as exc:
            c = classify(exc)
            if c.action is Action.FATAL:
                raise to_agent_error(exc, "unregistering the advertisement") from exc
            # bluetoothd forgot it already (restart, adapter gone): it is off air
            _LOGGER.debug("unregistering on %s: %s", self.adapter, c.summary())
        finally:
            self._server.bus.unexport(advert.path)
