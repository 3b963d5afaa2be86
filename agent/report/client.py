"""The self-report flow: verification code -> token -> certificate -> publish (Google's
verification server API).

1. ``POST {verification_url}/api/verify`` with the code (and ``X-API-Key``) -> token.
   A bad, expired or used code stops here: nothing else is sent.
2. Same-day release: the key on air is ended (and the daemon rotates) so that no
   published key stays on air; the keys of the last 14 days are chosen, at most 30, in
   random order, and a fresh 32-byte HMAC secret is drawn.
3. The pending record (keys, secret, token) is written with synchronous=FULL.
4. ``POST {verification_url}/api/certificate`` with the token and the TEK HMAC; only the
   HMAC reaches the verification server, never the keys. The certificate is saved.
5. ``POST publish_url`` with the keys, ``hmacKey``, ``healthAuthorityID`` and the
   certificate. Accepted or definitively refused: the record is deleted. Network failure
   or 5xx: the record stays, and the next run retries with the same certificate.

Every body is padded to a fixed size per kind (``padding``). Preconditions (config,
consent, trusted clock) are checked by :func:`check_ready` before anything is sent.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from typing import Protocol

import aiohttp

from agent.backoff import Backoff, retry_after
from agent.clock import Clock, rolling_start_interval_number
from agent.clocksync import current_trust
from agent.config import Config, ReportConfig
from agent.consent import ConsentState
from agent.constants import RETENTION_SECONDS
from agent.errors import (
    AgentError,
    ClockUntrustedError,
    ConfigError,
    ConsentError,
    MalformedInputError,
)
from agent.models import TemporaryExposureKey
from agent.report.errors import (
    RequestRefusedError,
    ServerFailureError,
    ServerUnreachableError,
)
from agent.report.hmac import new_hmac_secret, tek_hmac_b64
from agent.report.padding import BodyKind
from agent.report.pending import (
    PendingUpload,
    StateStore,
    clear_pending,
    load_pending,
    purge_stale_pending,
    save_pending,
)
from agent.report.transport import (
    MISSING_REVISION_TOKEN,
    PARTIAL_FAILURE,
    new_session,
    post_step,
)
from agent.report.wire import b64encode, key_to_json

_LOGGER = logging.getLogger(__name__)

REVISION_STATE_KEY = "report.revision_token"
LAST_REPORT_STATE_KEY = "report.last"
ACCEPT_TEST_TYPES = ["confirmed", "likely"]
MAX_KEYS_ON_PUBLISH = 30
_CODE_RE = re.compile(r"[0-9A-Za-z]{6,32}")
RETRY_HINT = "; the upload is saved and `contact-agent report` retries it with the same certificate"

STEP_ATTEMPTS = 3
"""Tries of one request while the server is busy or out of reach; then the run stops
with the last error (the upload is saved, and the next run resumes it)."""
STEP_BACKOFF = Backoff(initial=2.0, maximum=30.0)
"""The wait between tries when the server names none (``Retry-After``)."""
RETRY_AFTER_MAX = 60.0
"""A server that asks for a longer wait is not waited for: the run stops at once."""


class KeyRelease(Protocol):
    """Where the own keys come from (the store, or the running daemon)."""

    async def available(self, withhold_days: frozenset[int] = frozenset()) -> int:
        """How many own keys of the last 14 days went on air, outside ``withhold_days``."""
        ...

    async def release(self) -> list[TemporaryExposureKey]:
        """End the key on air (same-day release) and return the keys to publish."""
        ...


@dataclass(frozen=True, slots=True)
class ReportResult:
    """What the key server accepted."""

    keys_published: int
    inserted: int
    resumed: bool
    """True when this run finished an earlier, interrupted upload."""
    partial: bool = False
    """The key server dropped some keys and inserted the rest (``partial_failure``)."""
    already_published: bool = False
    """A resumed upload, or a publish tried again after a try without an answer, found
    its keys already on the key server: the earlier try had reached it and only its
    answer was lost."""


def normalize_code(code: str) -> str:
    """The code without spaces and dashes; a clear error when it cannot be a code."""
    cleaned = re.sub(r"[\s-]", "", code)
    if not _CODE_RE.fullmatch(cleaned):
        raise MalformedInputError(
            "the verification code must be 6-32 letters or digits (as given by the "
            "health authority, e.g. 10 digits)"
        )
    return cleaned


def check_report_config(settings: ReportConfig) -> None:
    """All of ``[report]`` that an upload needs (exit 78 when something is missing)."""
    missing = [
        name
        for name, value in (
            ("verification_url", settings.verification_url),
            ("publish_url", settings.publish_url),
            ("health_authority_id", settings.health_authority_id),
        )
        if not value
    ]
    if missing:
        raise ConfigError(
            f"config: report.{', report.'.join(missing)} must be set to report "
            "(ask your health authority for the values)"
        )


class ReadinessStore(Protocol):
    """What :func:`check_ready` reads: consent and the persisted lower bound of true time."""

    async def consent(self) -> ConsentState: ...

    async def clock_lower_bound(self) -> float | None: ...


async def check_ready(
    config: Config,
    store: ReadinessStore,
    clock: Clock,
    *,
    synchronized: bool,
) -> None:
    """Config complete, consent on and clock trusted; otherwise a clear error, nothing sent."""
    check_report_config(config.report)
    if not (await store.consent()).enabled:
        raise ConsentError("consent is off: run `contact-agent enable` first; nothing was sent")
    trust = (
        await current_trust(
            store, clock.wall(), require_sync=config.clock.require_sync, synchronized=synchronized
        )
    ).decision
    if not trust.state.trusted:
        raise ClockUntrustedError(
            f"cannot report while the clock is not trusted ({trust.reason}); "
            "wait for time synchronisation; nothing was sent"
        )


def choose_keys(keys: Sequence[TemporaryExposureKey]) -> list[TemporaryExposureKey]:
    """At most 30 keys (the newest), in a random order from the OS CSPRNG (so the order says
    nothing about the days)."""
    newest = sorted(keys, key=lambda k: k.rolling_start_interval_number)[-MAX_KEYS_ON_PUBLISH:]
    chosen = [replace(k, transmission_risk_level=0) for k in newest]
    secrets.SystemRandom().shuffle(chosen)
    return chosen


class Reporter:
    """Runs one self-report against the configured servers."""

    def __init__(
        self,
        settings: ReportConfig,
        store: StateStore,
        clock: Clock,
        *,
        session: aiohttp.ClientSession | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._settings = settings
        self._store = store
        self._clock = clock
        self._session = session
        self._sleep = sleep

    async def pending(self) -> PendingUpload | None:
        """The interrupted upload that the next run resumes, if any."""
        return await load_pending(self._store)

    async def run(
        self,
        code: str | None,
        keys: KeyRelease,
        *,
        withhold_days: frozenset[int] = frozenset(),
    ) -> ReportResult:
        """Finish an interrupted upload, or report with ``code``.

        ``withhold_days``: rolling start intervals (UTC midnights) of days whose keys the
        user chose not to publish.
        """
        check_report_config(self._settings)
        async with AsyncExitStack() as stack:
            session = self._session
            if session is None:
                session = await stack.enter_async_context(new_session())
            await purge_stale_pending(self._store, self._clock.wall() - RETENTION_SECONDS)
            pending = await load_pending(self._store)
            if pending is not None:
                _LOGGER.info("resuming the upload started at %.0f", pending.created)
                return await self._finish(session, pending, resumed=True)
            if code is None:
                raise MalformedInputError("give the verification code: report --code CODE")
            cleaned = normalize_code(code)
            if await keys.available(withhold_days) == 0:
                raise AgentError(
                    "there are no own keys to report: this device has not broadcast any in "
                    "the last 14 days; nothing was sent"
                )
            answer = await self._post(
                session, BodyKind.VERIFY, {"code": cleaned, "accept": ACCEPT_TEST_TYPES}
            )
            token = answer.get("token")
            if not isinstance(token, str) or not token:
                raise ServerFailureError("the verification server sent no token; try again later")
            released = await keys.release()
            chosen = choose_keys(
                [
                    k
                    for k in released
                    if rolling_start_interval_number(k.rolling_start_interval_number)
                    not in withhold_days
                ]
            )
            if not chosen:
                raise AgentError("there are no own keys to report; nothing was published")
            pending = PendingUpload(
                token=token,
                secret=new_hmac_secret(),
                keys=tuple(chosen),
                created=self._clock.wall(),
                test_type=str(answer.get("testtype", "")),
            )
            await save_pending(self._store, pending)
            return await self._finish(session, pending, resumed=False)

    async def _finish(
        self, session: aiohttp.ClientSession, pending: PendingUpload, *, resumed: bool
    ) -> ReportResult:
        published_before = resumed and bool(pending.certificate)
        try:
            if not pending.certificate:
                pending = await self._certify(session, pending)
            answer = await self._publish(session, pending)
        except RequestRefusedError as exc:
            await clear_pending(self._store)  # the same request can never succeed
            maybe_published = published_before or exc.after_lost_answer
            if maybe_published and exc.error_code == MISSING_REVISION_TOKEN:
                # Google's key server refuses keys it already holds without their revision
                # token: the first attempt with this certificate got through and only
                # its answer (and the token) was lost. The keys are published.
                _LOGGER.info("the interrupted upload had already reached the key server")
                await self._store.set_state(LAST_REPORT_STATE_KEY, f"{self._clock.wall():.0f}")
                return ReportResult(
                    keys_published=len(pending.keys),
                    inserted=0,
                    resumed=resumed,
                    already_published=True,
                )
            raise
        except (ServerUnreachableError, ServerFailureError) as exc:
            raise type(exc)(f"{exc}{RETRY_HINT}") from exc
        revision = answer.get("revisionToken")
        if isinstance(revision, str) and revision:
            await self._store.set_state(REVISION_STATE_KEY, revision)
        inserted = answer.get("insertedExposures")
        count = inserted if isinstance(inserted, int) else len(pending.keys)
        partial = answer.get("code") == PARTIAL_FAILURE
        if partial:
            # Some keys were dropped, the rest inserted: a success, and the revision
            # token above is kept for later uploads (Google's key server answers 200).
            _LOGGER.warning("the key server inserted %d of %d keys", count, len(pending.keys))
        await self._store.set_state(LAST_REPORT_STATE_KEY, f"{self._clock.wall():.0f}")
        await clear_pending(self._store)
        return ReportResult(
            keys_published=len(pending.keys), inserted=count, resumed=resumed, partial=partial
        )

    async def _certify(
        self, session: aiohttp.ClientSession, pending: PendingUpload
    ) -> PendingUpload:
        answer = await self._post(
            session,
            BodyKind.CERTIFICATE,
            {"token": pending.token, "ekeyhmac": tek_hmac_b64(pending.secret, pending.keys)},
        )
        certificate = answer.get("certificate")
        if not isinstance(certificate, str) or not certificate:
            raise ServerFailureError("the verification server sent no certificate")
        pending = replace(pending, certificate=certificate)
        await save_pending(self._store, pending)
        return pending

    async def _publish(
        self, session: aiohttp.ClientSession, pending: PendingUpload
    ) -> dict[str, object]:
        body: dict[str, object] = {
            "temporaryExposureKeys": [key_to_json(k) for k in pending.keys],
            "healthAuthorityID": self._settings.health_authority_id,
            "verificationPayload": pending.certificate,
            "hmacKey": b64encode(pending.secret),
            "traveler": False,
        }
        revision = await self._store.get_state(REVISION_STATE_KEY)
        if revision:
            body["revisionToken"] = revision
        return await self._post(session, BodyKind.PUBLISH, body)

    async def _post(
        self, session: aiohttp.ClientSession, kind: BodyKind, body: Mapping[str, object]
    ) -> dict[str, object]:
        """One step, tried again while the server is busy or out of reach (at most
        :data:`STEP_ATTEMPTS` tries, on the agent's one backoff schedule)."""
        attempt, lost_answer = 0, False
        while True:
            try:
                return await post_step(session, self._settings, kind, body)
            except RequestRefusedError as exc:
                exc.after_lost_answer = lost_answer  # a publish: its keys may be there
                raise
            except (ServerFailureError, ServerUnreachableError) as exc:
                wait = self._retry_wait(kind, exc, attempt)
                if wait is None:
                    raise
                lost_answer = lost_answer or not _not_acted(exc)
                _LOGGER.info("%s; trying again in %.0f s", exc, wait)
                await self._sleep(wait)
                attempt += 1

    def _retry_wait(
        self, kind: BodyKind, exc: ServerFailureError | ServerUnreachableError, attempt: int
    ) -> float | None:
        """Seconds to wait before trying ``kind`` again, or None to stop with ``exc``.

        A verification request is sent again only when the server said it did not act
        (429): one whose answer was lost may have used up the code. The certificate and
        publish requests repeat the saved upload exactly, so any try is safe.
        """
        if attempt + 1 >= STEP_ATTEMPTS:
            return None
        if kind is BodyKind.VERIFY and not _not_acted(exc):
            return None
        header = exc.retry_after if isinstance(exc, ServerFailureError) else None
        asked = retry_after(header, self._clock.wall(), cap=RETRY_AFTER_MAX + 1)
        if asked is None:
            return STEP_BACKOFF.delay(attempt)
        return asked if asked <= RETRY_AFTER_MAX else None


def _not_acted(exc: ServerFailureError | ServerUnreachableError) -> bool:
    """The server said it did nothing (429 Too Many Requests)."""
    return isinstance(exc, ServerFailureError) and exc.status == 429
