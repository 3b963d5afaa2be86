#!/usr/bin/env python3
"""Example contact-agent exec hook: beep a buzzer and light an LED on a possible exposure.

Configure it in config.toml::

    [notify]
    exec = ["/opt/contact-agent/venv/bin/python /opt/contact-agent/buzzer-hook.py --led 23"]

The agent writes one JSON object on stdin (see docs/daemon.md): ``event``, ``risk_level``,
``day``, ``minutes``, ``title``, ``body``, ... It holds no key or identifier.

Output, first that works: the ``gpiod`` Python module (libgpiod v2, /dev/gpiochipN), the
legacy sysfs interface (/sys/class/gpio), else a line on stdout. Under the shipped systemd
unit, devices are hidden (PrivateDevices=yes); see docs/daemon.md for the drop-in that
allows /dev/gpiochip0 for a hook.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

SYSFS = Path("/sys/class/gpio")
Pattern = list[tuple[float, float]]


def beep_pattern(risk_level: str) -> Pattern:
    """(on, off) seconds: three long beeps for high risk, one short beep otherwise."""
    if risk_level == "high":
        return [(0.6, 0.3)] * 3
    return [(0.15, 0.1)]


def _drive_gpiod(chip: str, pins: list[int], pattern: Pattern, led: int | None) -> bool:
    try:
        import gpiod  # type: ignore[import-not-found]
        from gpiod.line import Direction, Value  # type: ignore[import-not-found]
    except ImportError:
        return False
    if not Path(chip).exists():
        return False
    config = {pin: gpiod.LineSettings(direction=Direction.OUTPUT) for pin in pins}
    with gpiod.request_lines(chip, consumer="contact-agent", config=config) as request:
        buzzer = pins[0]
        for on, off in pattern:
            request.set_value(buzzer, Value.ACTIVE)
            time.sleep(on)
            request.set_value(buzzer, Value.INACTIVE)
            time.sleep(off)
        if led is not None:
            request.set_value(led, Value.ACTIVE)  # stays on until the line is released
            time.sleep(5)
    return True


def _drive_sysfs(pins: list[int], pattern: Pattern, led: int | None) -> bool:
    if not (SYSFS / "export").exists():
        return False
    try:
        for pin in pins:
            if not (SYSFS / f"gpio{pin}").exists():
                (SYSFS / "export").write_text(str(pin))
                time.sleep(0.1)  # udev sets permissions on the new node
            (SYSFS / f"gpio{pin}" / "direction").write_text("out")
        value = SYSFS / f"gpio{pins[0]}" / "value"
        for on, off in pattern:
            value.write_text("1")
            time.sleep(on)
            value.write_text("0")
            time.sleep(off)
        if led is not None:
            (SYSFS / f"gpio{led}" / "value").write_text("1")
    except OSError as exc:
        print(f"buzzer-hook: sysfs GPIO failed: {exc}", file=sys.stderr)
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pin", type=int, default=18, help="BCM pin of the buzzer")
    parser.add_argument("--led", type=int, default=None, help="BCM pin of an LED (optional)")
    parser.add_argument("--chip", default="/dev/gpiochip0", help="GPIO chip for gpiod")
    parser.add_argument("--dry-run", action="store_true", help="only print what would happen")
    args = parser.parse_args(argv)
    try:
        event: dict[str, Any] = json.load(sys.stdin)
    except ValueError as exc:
        print(f"buzzer-hook: stdin is not JSON: {exc}", file=sys.stderr)
        return 2
    if not isinstance(event, dict):
        print("buzzer-hook: stdin must be a JSON object", file=sys.stderr)
        return 2
    pattern = beep_pattern(str(event.get("risk_level", "")))
    pins = [args.pin] + ([args.led] if args.led is not None else [])
    title, day, minutes = event.get("title", "notification"), event.get("day"), event.get("minutes")
    summary = f"{title}: {day}, {minutes} min"
    if not args.dry_run:
        if _drive_gpiod(args.chip, pins, pattern, args.led):
            print(f"buzzer-hook: gpiod beeped {len(pattern)}x on pin {args.pin} ({summary})")
            return 0
        if _drive_sysfs(pins, pattern, args.led):
            print(f"buzzer-hook: sysfs beeped {len(pattern)}x on pin {args.pin} ({summary})")
            return 0
    print(f"buzzer-hook: no GPIO; would beep {len(pattern)}x on pin {args.pin} ({summary})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
