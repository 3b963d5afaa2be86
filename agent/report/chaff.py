"""Decoy uploads (chaff) so that a real report cannot be told apart on the network.

A decoy is the full three-request flow - verify, certificate, publish - to the same
endpoints, with the ``X-Chaff: 1`` header the servers recognise and ignore, and bodies of
the same shape padded to the same fixed sizes as a real report
(:mod:`agent.report.padding`). The daemon schedules decoys as a Poisson process: the
waits are exponential with a mean of one day (:func:`next_chaff_delay`), off unless
``report.chaff = true``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

import aiohttp

from agent.clock import Clock, en_interval_number, rolling_start_interval_number
from agent.config import ReportConfig
from agent.constants import RETENTION_DAYS, TEK_LENGTH, TEK_ROLLING_PERIOD
from agent.errors import NetworkError
from agent.models import TemporaryExposureKey
from agent.report.client import ACCEPT_TEST_TYPES
from agent.report.hmac import HMAC_BYTES, HMAC_SECRET_BYTES
from agent.report.padding import BodyKind
from agent.report.transport import new_session, post_step
from agent.report.wire import b64encode, key_to_json

_LOGGER = logging.getLogger(__name__)

CHAFF_MEAN_INTERVAL_SECONDS = 86_400.0
"""Mean wait between decoy flows: about one a day."""
CHAFF_STEP_DELAY_SECONDS = (0.2, 2.0)
"""Random pause between the three requests of a decoy, like a device doing real work."""
_CODE_DIGITS = 10
_FAKE_JWT_BYTES = 300


def chaff_enabled(settings: ReportConfig) -> bool:
    return settings.chaff and bool(settings.verification_url and settings.publish_url)


def next_chaff_delay(
    rng: random.Random | None = None, mean_seconds: float = CHAFF_MEAN_INTERVAL_SECONDS
) -> float:
    """Seconds until the next decoy: exponential, so decoys form a Poisson process."""
    return (rng or random.SystemRandom()).expovariate(1.0 / mean_seconds)


def _fake_jwt() -> str:
    return ".".join(secrets.token_urlsafe(n) for n in (27, _FAKE_JWT_BYTES - 27 - 64, 64))


def fake_keys(now: float, count: int = RETENTION_DAYS + 1) -> list[TemporaryExposureKey]:
    """Random keys shaped like a real 14-day history (one per day, today's cut short)."""
    today = rolling_start_interval_number(en_interval_number(now))
    keys = []
    for day in range(count):
        period = TEK_ROLLING_PERIOD
        if day == 0:
            period = max(1, en_interval_number(now) - today + 1)
        keys.append(
            TemporaryExposureKey(
                secrets.token_bytes(TEK_LENGTH), today - day * TEK_ROLLING_PERIOD, period
            )
        )
    random.SystemRandom().shuffle(keys)
    return keys


async def send_chaff(
    settings: ReportConfig,
    clock: Clock,
    *,
    session: aiohttp.ClientSession | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> int:
    """One decoy flow; returns how many of its three requests got an answer.

    Failures are logged at debug level and otherwise ignored: a decoy has no result.
    """
    rng = random.SystemRandom()
    steps: list[tuple[BodyKind, dict[str, object]]] = [
        (
            BodyKind.VERIFY,
            {
                "code": f"{secrets.randbelow(10**_CODE_DIGITS):0{_CODE_DIGITS}d}",
                "accept": ACCEPT_TEST_TYPES,
            },
        ),
        (
            BodyKind.CERTIFICATE,
            {"token": _fake_jwt(), "ekeyhmac": b64encode(secrets.token_bytes(HMAC_BYTES))},
        ),
        (
            BodyKind.PUBLISH,
            {
                "temporaryExposureKeys": [key_to_json(k) for k in fake_keys(clock.wall())],
                "healthAuthorityID": settings.health_authority_id,
                "verificationPayload": _fake_jwt(),
                "hmacKey": b64encode(secrets.token_bytes(HMAC_SECRET_BYTES)),
                "traveler": False,
            },
        ),
    ]
    answered = 0
    async with AsyncExitStack() as stack:
        if session is None:
            session = await stack.enter_async_context(new_session())
        for i, (kind, body) in enumerate(steps):
            if i:
                await sleep(rng.uniform(*CHAFF_STEP_DELAY_SECONDS))
            try:
                await post_step(session, settings, kind, body, chaff=True)
                answered += 1
            except NetworkError as exc:
                _LOGGER.debug("decoy request not answered: %s", exc)
    return answered


async def run_chaff(
    settings: ReportConfig,
    clock: Clock,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: random.Random | None = None,
    consent: Callable[[], bool] = lambda: True,
) -> None:
    """Send decoys forever at Poisson times (for the daemon's task group); cancel to stop.

    Returns at once when ``report.chaff`` is off or the servers are not configured. A
    decoy falls due but is not sent while ``consent()`` is false: no server is contacted
    without consent.
    """
    if not chaff_enabled(settings):
        return
    while True:
        await sleep(next_chaff_delay(rng))
        if not consent():
            _LOGGER.debug("decoy not sent: consent is off")
            continue
        answered = await send_chaff(settings, clock, sleep=sleep)
        _LOGGER.debug("decoy flow sent, %d of 3 answered", answered)
