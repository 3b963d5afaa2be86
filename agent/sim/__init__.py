"""Simulated Bluetooth for tests and the demo: a private bus and a fake bluetoothd.

Only this package and :mod:`agent.ble` talk D-Bus for Bluetooth. Nothing here touches a
real adapter: :class:`~agent.sim.bluez.FakeBluez` serves ``org.bluez`` on a private
dbus-daemon (:class:`~agent.sim.bus.PrivateBus`) and relays advertisements between its
adapters through a simulated radio (:mod:`agent.sim.pathloss`).
"""

from agent.sim.air import Frame, Transmitter
from agent.sim.bluez import FakeBluez
from agent.sim.bus import BusStartError, PrivateBus, find_dbus_daemon, private_system_bus
from agent.sim.pathloss import PathLossModel

__all__ = [
    "BusStartError",
    "FakeBluez",
    "Frame",
    "PathLossModel",
    "PrivateBus",
    "Transmitter",
    "find_dbus_daemon",
    "private_system_bus",
]
