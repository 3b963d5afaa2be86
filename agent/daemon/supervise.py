"""Restart-with-backoff for the daemon's long-running parts (all but the radio, which
restarts itself: :class:`agent.ble.radio.Radio`).

A part that fails is logged and restarted after an exponentially growing, jittered delay
(1 s, 2 s, 4 s ... at most 5 min); a part that ran for a while before failing starts
again from the shortest delay. Unrecoverable errors (a bad configuration, D-Bus access
denied: exit status 78) are not retried: they end the daemon, so systemd's
``RestartPreventExitStatus=78`` stops a restart loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from agent.backoff import Backoff, Retries
from agent.errors import EXIT_CONFIG, AgentError

_LOGGER = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


def is_fatal(exc: BaseException) -> bool:
    """Errors restarting cannot fix: configuration and permission problems (exit 78)."""
    return isinstance(exc, AgentError) and exc.exit_code == EXIT_CONFIG


async def supervise(
    name: str,
    part: Callable[[], Awaitable[None]],
    *,
    sleep: Sleep,
    monotonic: Callable[[], float],
    on_restart: Callable[[str, BaseException], None] | None = None,
    retries: Retries | None = None,
) -> None:
    """Run ``part()`` until cancelled, restarting it after failures.

    A part that returns normally is finished (not restarted). Fatal errors propagate.
    """
    retries = retries or Retries(Backoff(1.0, 300.0), healthy_after=60.0)
    while True:
        started = monotonic()
        try:
            await part()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the supervisor is the one place allowed a blind except
            if is_fatal(exc):
                raise
            retries.ran_for(monotonic() - started)
            delay = retries.next_delay()
            if isinstance(exc, AgentError):
                _LOGGER.warning("%s failed: %s; restarting in %.0f s", name, exc, delay)
            else:
                _LOGGER.warning(
                    "%s failed: %s: %s; restarting in %.0f s",
                    name,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                _LOGGER.debug("%s traceback", name, exc_info=exc)
            if on_restart is not None:
                on_restart(name, exc)
            await sleep(delay)


async def wait_until(check: Callable[[], bool], timeout: float, every: float = 0.05) -> bool:
    """Poll ``check`` every ``every`` real seconds until it holds; False after ``timeout``.

    For state owned by others (BlueZ, the radio) that offers no event to wait on.
    """
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(every)
