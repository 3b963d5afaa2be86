"""Simulated Bluetooth for tests and the demo: a private bus and a fake bluetoothd.

Only this package and :mod:`agent.ble` talk D-Bus for Bluetooth. Nothing here touches a
real adapter: :class:`~agent.lab.sim.bluez.FakeBluez` serves ``org.bluez`` on a private
dbus-daemon (:class:`~agent.lab.sim.bus.PrivateBus`) and relays advertisements between its
adapters through a simulated radio (:mod:`agent.lab.sim.pathloss`).
"""

from agent.lab.sim.air import Frame, Transmitter
from agent.lab.sim.bluez import FakeBluez
from agent.lab.sim.bus import BusStartError, PrivateBus, find_dbus_daemon, private_system_bus
from agent.lab.sim.pathloss import PathLossModel

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
