"""Run the fake bluetoothd by hand: ``python -m agent.lab.sim --adapters hci0,hci1``.

Starts a private dbus-daemon (unless ``--bus ADDRESS`` names one), serves the adapters
on it and prints the line to export, so agents started in other shells share the
simulated air::

    $ python -m agent.lab.sim --adapters hci0,hci1 --rssi -60
    export DBUS_SYSTEM_BUS_ADDRESS=unix:path=/tmp/agent-bus-.../bus
    $ DBUS_SYSTEM_BUS_ADDRESS=... contact-agent run --adapter hci0

Ctrl-C or SIGTERM stops it (and its dbus-daemon).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys

from agent.lab.sim.bluez import FakeBluez
from agent.lab.sim.bus import SYSTEM_BUS_ENV, PrivateBus
from agent.signals import wait_for_stop_signal


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m agent.lab.sim", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--adapters", default="hci0,hci1", help="comma-separated adapter names")
    parser.add_argument("--rssi", type=int, default=-60, help="RSSI of every link (dBm)")
    parser.add_argument("--tick", type=float, default=0.2, help="seconds between reports")
    parser.add_argument("--stale", type=float, default=30.0, help="device timeout (s)")
    parser.add_argument("--bus", default="", help="use this bus address instead of a new one")
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace, address: str) -> None:
    fake = FakeBluez(
        [a for a in args.adapters.split(",") if a],
        tick=args.tick,
        stale_timeout=args.stale,
        default_rssi=args.rssi,
        bus_address=address,
    )
    await fake.start()
    sys.stdout.write(f"export {SYSTEM_BUS_ENV}={address}\n")
    sys.stdout.flush()
    try:
        await wait_for_stop_signal()
    finally:
        await fake.stop()


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    with contextlib.ExitStack() as stack:
        address = args.bus
        if not address:
            address = stack.enter_context(PrivateBus()).address
        os.environ[SYSTEM_BUS_ENV] = address
        asyncio.run(_serve(args, address))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
