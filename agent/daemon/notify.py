"""Telling the user about a possible exposure: the journal, the desktop, exec hooks.

A :class:`Notice` carries only what a person needs (days, minutes, risk level) and never
a key, RPI or AEM. Each channel fails on its own: a missing session bus or a broken hook
is logged and the other channels still run. Texts are translated (``i18n``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dbus_fast import DBusFastError, Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from agent.daemon.i18n import choose_language, translations
from agent.jsonout import dumps

_LOGGER = logging.getLogger(__name__)

APP_NAME = "contact-agent"
NOTIFICATIONS_NAME = "org.freedesktop.Notifications"
NOTIFICATIONS_PATH = "/org/freedesktop/Notifications"
HOOK_TIMEOUT_SECONDS = 30.0
DBUS_TIMEOUT_SECONDS = 5.0
URGENCY_CRITICAL = 2

_BODY_ONE = (
    "On %(date)s you were near someone who later reported a positive test, "
    "for about %(minutes)d minute."
)
_BODY_MANY = (
    "On %(date)s you were near someone who later reported a positive test, "
    "for about %(minutes)d minutes."
)
_ADVICE = "Follow the advice of your health authority."
_TITLE = "Possible exposure"
_RELAYED = (
    "Some of these contacts were possibly relayed: the signal may have been re-broadcast "
    "from elsewhere."
)


@dataclass(frozen=True, slots=True)
class Notice:
    """One notification: the newest day of exposure and how long it lasted."""

    day: int
    """Unix seconds of the UTC midnight of the most recent exposure."""
    minutes: int
    """Exposure minutes on that day (rounded, at least 1)."""
    windows: int
    """Number of new exposure windows this notice covers."""
    risk_level: str = "high"
    days: tuple[int, ...] = ()
    """Every day (UTC midnight) with a new exposure, oldest first."""
    possibly_relayed: bool = False
    """The relay guard flagged a window that counts (``risk.relay_policy = "flag"``)."""


@dataclass(frozen=True, slots=True)
class Rendered:
    """A notice rendered in one language."""

    language: str
    title: str
    body: str


def render(notice: Notice, language: str) -> Rendered:
    """Title and body of ``notice`` in ``language`` (en, ru or kk)."""
    t = translations(language)
    date = datetime.fromtimestamp(notice.day, UTC).strftime("%Y-%m-%d")
    minutes = max(1, notice.minutes)
    body = t.ngettext(_BODY_ONE, _BODY_MANY, minutes) % {"date": date, "minutes": minutes}
    relayed = f" {t.gettext(_RELAYED)}" if notice.possibly_relayed else ""
    return Rendered(language, t.gettext(_TITLE), f"{body}{relayed} {t.gettext(_ADVICE)}")


def hook_payload(notice: Notice, message: Rendered, now: float) -> dict[str, Any]:
    """The JSON object exec hooks get on stdin (documented in docs/daemon.md)."""
    return {
        "event": "exposure",
        "time": int(now),
        "risk_level": notice.risk_level,
        "day": _iso_day(notice.day),
        "days": [_iso_day(d) for d in (notice.days or (notice.day,))],
        "minutes": notice.minutes,
        "windows": notice.windows,
        "possibly_relayed": notice.possibly_relayed,
        "language": message.language,
        "title": message.title,
        "body": message.body,
    }


def _iso_day(day: int) -> str:
    return datetime.fromtimestamp(day, UTC).strftime("%Y-%m-%d")


def session_bus_address(environ: Mapping[str, str] | None = None) -> str | None:
    """``DBUS_SESSION_BUS_ADDRESS``, else ``$XDG_RUNTIME_DIR/bus`` when it exists."""
    env = os.environ if environ is None else environ
    address = env.get("DBUS_SESSION_BUS_ADDRESS")
    if address:
        return address
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime and (Path(runtime) / "bus").is_socket():
        return f"unix:path={Path(runtime) / 'bus'}"
    return None


async def send_desktop(address: str, message: Rendered) -> int:
    """Show ``message`` via org.freedesktop.Notifications; returns its notification id."""
    bus = await asyncio.wait_for(MessageBus(bus_address=address).connect(), DBUS_TIMEOUT_SECONDS)
    try:
        reply = await asyncio.wait_for(
            bus.call(
                Message(
                    destination=NOTIFICATIONS_NAME,
                    path=NOTIFICATIONS_PATH,
                    interface=NOTIFICATIONS_NAME,
                    member="Notify",
                    signature="susssasa{sv}i",
                    body=[
                        APP_NAME,
                        0,
                        "dialog-warning",
                        message.title,
                        message.body,
                        [],
                        {"urgency": Variant("y", URGENCY_CRITICAL)},
                        0,
                    ],
                )
            ),
            DBUS_TIMEOUT_SECONDS,
        )
    finally:
        bus.disconnect()
    if reply is None or reply.message_type is MessageType.ERROR:
        error = reply.error_name if reply is not None else "no reply"
        raise OSError(f"Notify failed: {error}")
    return int(reply.body[0])


async def run_hook(command: str, payload: Mapping[str, Any], timeout: float) -> int:
    """Run one exec hook with ``payload`` as JSON on stdin; returns its exit status."""
    argv = shlex.split(command)
    if not argv:
        raise OSError("empty hook command")
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "CONTACT_AGENT_EVENT": str(payload.get("event", ""))},
    )
    data = (dumps(payload, ensure_ascii=False) + "\n").encode("utf-8")
    try:
        output, _ = await asyncio.wait_for(proc.communicate(data), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise OSError(f"hook timed out after {timeout:.0f} s") from None
    if output:
        _LOGGER.debug("hook %s said: %s", argv[0], output.decode("utf-8", "replace").strip())
    return proc.returncode if proc.returncode is not None else -1


class Notifier:
    """Delivers notices on every configured channel; returns which channels worked."""

    def __init__(
        self,
        *,
        language: str = "",
        desktop: bool = True,
        hooks: Sequence[str] = (),
        session_bus: str | None = None,
        hook_timeout: float = HOOK_TIMEOUT_SECONDS,
    ) -> None:
        self.language = choose_language(language)
        self._desktop = desktop
        self._hooks = tuple(hooks)
        self._session_bus = session_bus
        self._hook_timeout = hook_timeout

    async def notify(self, notice: Notice, now: float | None = None) -> dict[str, bool]:
        message = render(notice, self.language)
        results: dict[str, bool] = {}
        _LOGGER.warning("%s: %s", message.title, message.body)
        results["journal"] = True
        if self._desktop:
            results["desktop"] = await self._send_desktop(message)
        payload = hook_payload(notice, message, time.time() if now is None else now)
        for index, command in enumerate(self._hooks):
            results[f"exec[{index}]"] = await self._run_hook(command, payload)
        return results

    async def _send_desktop(self, message: Rendered) -> bool:
        address = self._session_bus or session_bus_address()
        if not address:
            _LOGGER.info("no desktop notification: no D-Bus session bus")
            return False
        try:
            await send_desktop(address, message)
        except (OSError, TimeoutError, ValueError, DBusFastError) as exc:
            _LOGGER.info("no desktop notification: %s", exc)
            return False
        return True

    async def _run_hook(self, command: str, payload: Mapping[str, Any]) -> bool:
        try:
            status = await run_hook(command, payload, self._hook_timeout)
        except OSError as exc:
            _LOGGER.warning("notification hook %r failed: %s", command, exc)
            return False
        if status != 0:
            _LOGGER.warning("notification hook %r exited with status %d", command, status)
            return False
        return True
