"""The self-report flow over real HTTP against the test key server, with a real store."""

from __future__ import annotations

import base64
import json
import socket
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.clock import FakeClock
from agent.config import ClockConfig, Config
from agent.control import RELEASE_COMMAND, SOCKET_NAME, ControlServer, Peer
from agent.errors import AgentError, ClockUntrustedError, ConsentError, MalformedInputError
from agent.lab.keyserver import LocalKeyServer
from agent.models import TemporaryExposureKey
from agent.report.client import (
    LAST_REPORT_STATE_KEY,
    REVISION_STATE_KEY,
    STEP_ATTEMPTS,
    STEP_BACKOFF,
    check_ready,
    choose_keys,
)
from agent.report.errors import (
    RequestRefusedError,
    ServerFailureError,
    ServerUnreachableError,
    VerificationCodeError,
)
from agent.report.padding import BodyKind, body_size
from agent.report.pending import (
    PENDING_STATE_KEY,
    PendingUpload,
    load_pending,
    purge_stale_pending,
    save_pending,
)
from agent.store import Store
from tests.report.conftest import (
    NOW_INTERVAL,
    TODAY,
    day_keys,
    release,
    report_settings,
    reporter,
    served_exports,
)

PATHS = ("/api/verify", "/api/certificate", "/v1/publish")


def identities(keys: list[TemporaryExposureKey]) -> set[tuple[bytes, int, int]]:
    return {(k.key_data, k.rolling_start_interval_number, k.rolling_period) for k in keys}


async def own_identities(store: Store) -> set[tuple[bytes, int, int]]:
    return {
        (t.key_data, t.rolling_start_interval_number, t.rolling_period)
        for t in await store.load_own_teks()
    }


async def test_report_publishes_exactly_the_own_keys_of_14_days(
    server: LocalKeyServer, store: Store, clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    result = await reporter(server, store, clock).run(server.issue_code(), release(store, clock))
    assert (result.keys_published, result.inserted, result.resumed) == (15, 15, False)
    # same-day release: today's key was ended at the current interval and persisted
    today = [t for t in await store.load_own_teks() if t.rolling_start_interval_number == TODAY]
    assert [t.rolling_period for t in today] == [NOW_INTERVAL - TODAY + 1]
    # the next export served holds exactly the reporter's keys, as they are stored now
    [export] = await served_exports(http, server)
    assert identities(export) == await own_identities(store)
    # the three requests, in order, each padded to its fixed size; then only downloads
    assert [r.path for r in server.requests[:3]] == list(PATHS)
    assert {r.method for r in server.requests[3:]} == {"GET"}
    for request, kind in zip(server.requests[:3], BodyKind, strict=True):
        assert len(request.body) == body_size(kind, 2048)
        assert not request.chaff
    # the verification server saw neither key bytes nor the HMAC secret
    publish = server.requests[2].json()
    secrets_sent = [k["key"] for k in publish["temporaryExposureKeys"]] + [publish["hmacKey"]]
    for request in server.requests[:2]:
        assert not any(s.encode() in request.body for s in secrets_sent)
    assert await store.get_state(PENDING_STATE_KEY) is None
    assert await store.get_state(REVISION_STATE_KEY)
    assert await store.get_state(LAST_REPORT_STATE_KEY) == f"{clock.wall():.0f}"


async def test_withheld_days_are_not_published(
    server: LocalKeyServer, store: Store, clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    skipped = frozenset({TODAY - 144, TODAY - 3 * 144})
    result = await reporter(server, store, clock).run(
        server.issue_code(), release(store, clock), withhold_days=skipped
    )
    assert result.keys_published == 13
    [export] = await served_exports(http, server)
    assert {k.rolling_start_interval_number for k in export}.isdisjoint(skipped)


async def test_withholding_every_day_sends_nothing(
    server: LocalKeyServer, store: Store, clock: FakeClock
) -> None:
    every_day = frozenset(TODAY - d * 144 for d in range(15))
    assert await release(store, clock).available(every_day) == 0
    with pytest.raises(AgentError, match="no own keys"):
        await reporter(server, store, clock).run(
            server.issue_code(), release(store, clock), withhold_days=every_day
        )
    assert server.requests == []


def test_keys_are_sent_in_a_random_order() -> None:
    keys = day_keys(15)
    newest = keys[0].key_data
    positions = Counter([k.key_data for k in choose_keys(keys)].index(newest) for _ in range(3000))
    # uniform over 15 places: 200 expected each; these bounds fail with p < 1e-9
    assert set(positions) == set(range(15))
    assert all(110 < n < 300 for n in positions.values()), positions
    assert {len(choose_keys(day_keys(31)))} == {30}
    assert (
        min(k.rolling_start_interval_number for k in choose_keys(day_keys(31))) == TODAY - 29 * 144
    )


# --- failures before anything about the keys is sent --------------------------------------


async def _assert_nothing_changed(store: Store, before: set[tuple[bytes, int, int]]) -> None:
    assert await own_identities(store) == before  # the key on air was not ended
    assert await store.get_state(PENDING_STATE_KEY) is None


@pytest.mark.parametrize("case", ["unknown", "expired", "reused"])
async def test_bad_codes_stop_at_verify(
    server: LocalKeyServer, store: Store, clock: FakeClock, case: str
) -> None:
    code = server.issue_code()
    if case == "unknown":
        code = "1234567890" if code != "1234567890" else "1234567891"
    elif case == "expired":
        clock.advance(3601)
    else:
        server.verification.verify(code, None)  # somebody used it already
    before = await own_identities(store)
    with pytest.raises(VerificationCodeError) as info:
        await reporter(server, store, clock).run(code, release(store, clock))
    message = str(info.value)
    assert "\n" not in message and "code" in message
    assert {"unknown": "unknown", "expired": "expired", "reused": "already used"}[case] in message
    assert [r.path for r in server.requests] == ["/api/verify"]
    await _assert_nothing_changed(store, before)


async def test_server_error_at_verify_stops_everything(
    server: LocalKeyServer, store: Store, clock: FakeClock
) -> None:
    server.fail_next("/api/verify", 500)
    before = await own_identities(store)
    with pytest.raises(ServerFailureError, match=r"HTTP 500.*try again later"):
        await reporter(server, store, clock).run(server.issue_code(), release(store, clock))
    assert [r.path for r in server.requests] == ["/api/verify"]
    await _assert_nothing_changed(store, before)


async def test_connection_refused_is_a_clear_error(store: Store, clock: FakeClock) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before use: nobody listens there
    server = LocalKeyServer(clock=clock)
    server.url = f"http://127.0.0.1:{port}"
    before = await own_identities(store)
    with pytest.raises(
        ServerUnreachableError, match=f"cannot reach the verification server at 127.0.0.1:{port}"
    ):
        await reporter(server, store, clock).run("1234567890", release(store, clock))
    await _assert_nothing_changed(store, before)


@pytest.mark.parametrize("code", ["12ab!", "123", "x" * 40, ""])
async def test_malformed_codes_are_refused_before_sending(
    server: LocalKeyServer, store: Store, clock: FakeClock, code: str
) -> None:
    with pytest.raises(MalformedInputError, match="verification code"):
        await reporter(server, store, clock).run(code, release(store, clock))
    assert server.requests == []


async def test_no_keys_means_nothing_sent(
    server: LocalKeyServer, store: Store, clock: FakeClock
) -> None:
    clock.advance(20 * 86_400)  # every own key is older than 14 days now
    with pytest.raises(AgentError, match="no own keys"):
        await reporter(server, store, clock).run(server.issue_code(), release(store, clock))
    assert server.requests == []


async def test_consent_off_or_untrusted_clock_refuse_before_anything(
    server: LocalKeyServer, store: Store, clock: FakeClock
) -> None:
    config = Config(report=report_settings(server))
    await check_ready(config, store, clock, synchronized=True)
    with pytest.raises(ClockUntrustedError, match=r"not trusted.*nothing was sent"):
        await check_ready(config, store, clock, synchronized=False)
    await store.set_clock_lower_bound(clock.wall() + 60)
    with pytest.raises(ClockUntrustedError, match="earlier than the last known good"):
        await check_ready(config, store, clock, synchronized=True)
    relaxed = Config(report=config.report, clock=ClockConfig(require_sync=False))
    await check_ready(relaxed, store, clock, synchronized=False)
    await store.set_consent(False, 0.0)
    with pytest.raises(ConsentError, match="consent is off"):
        await check_ready(config, store, clock, synchronized=True)
    assert server.requests == []


# --- interrupted uploads --------------------------------------------------------------------


async def test_lost_publish_answer_is_retried_at_once_with_the_same_certificate(
    server: LocalKeyServer, store: Store, clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    server.fail_next("/v1/publish", 0, after_processing=True)  # stored, answer lost
    result = await reporter(server, store, clock).run(server.issue_code(), release(store, clock))
    # the second try meets keys the server already holds (missing_revision_token): after
    # a try whose outcome was unknown, that means the first one got through
    assert result.already_published and not result.resumed and result.keys_published == 15
    first, second = (r.json() for r in server.requests_to("/v1/publish"))
    for field in ("verificationPayload", "hmacKey", "temporaryExposureKeys"):
        assert first[field] == second[field]
    assert [len(e) for e in await served_exports(http, server)] == [15]  # published once
    assert await load_pending(store) is None and await store.get_state(LAST_REPORT_STATE_KEY)


async def test_busy_servers_are_tried_again_on_the_backoff_or_as_they_ask(
    server: LocalKeyServer, store: Store, clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    """429 at verify (nothing done: safe to send again) waits the Retry-After; a 503 at
    publish waits the agent's backoff; the report then goes through, published once."""
    server.fail_next("/api/verify", 429, retry_after="7")
    server.fail_next("/v1/publish", 503)
    start = clock.wall()
    result = await reporter(server, store, clock).run(server.issue_code(), release(store, clock))
    assert result.keys_published == 15 and not result.already_published
    assert len(server.requests_to("/api/verify")) == 2
    assert len(server.requests_to("/api/certificate")) == 1
    assert len(server.requests_to("/v1/publish")) == 2
    waited = clock.wall() - start
    assert 7 + STEP_BACKOFF.base(0) * 0.8 <= waited <= 7 + STEP_BACKOFF.base(0) * 1.2
    assert [len(e) for e in await served_exports(http, server)] == [15]


@pytest.mark.parametrize(
    ("path", "status", "retry_after"),
    [
        ("/api/verify", 503, ""),  # the code may be used up: never sent twice
        ("/api/verify", 0, ""),
        ("/api/certificate", 503, "3600"),  # asks for longer than a run waits
        ("/api/certificate", 503, "Wed, 21 Oct 2099 07:28:00 GMT"),
    ],
)
async def test_a_step_is_not_tried_again_when_that_could_harm_or_the_wait_is_long(
    server: LocalKeyServer,
    store: Store,
    clock: FakeClock,
    path: str,
    status: int,
    retry_after: str,
) -> None:
    server.fail_next(path, status, retry_after=retry_after)
    with pytest.raises((ServerFailureError, ServerUnreachableError)):
        await reporter(server, store, clock).run(server.issue_code(), release(store, clock))
    assert len(server.requests_to(path)) == 1


async def test_lost_publish_answer_is_resumed_by_the_next_run_with_the_same_certificate(
    server: LocalKeyServer, store: Store, clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    server.fail_next("/v1/publish", 0, after_processing=True)  # stored, answer lost
    server.fail_next("/v1/publish", 0, times=STEP_ATTEMPTS - 1)  # and no answer again
    with pytest.raises(ServerUnreachableError, match="retries it with the same certificate"):
        await reporter(server, store, clock).run(server.issue_code(), release(store, clock))
    pending = await load_pending(store)
    assert pending is not None and pending.certificate
    result = await reporter(server, store, clock).run(None, release(store, clock))
    # the retry meets keys the server already holds: Google's server answers
    # missing_revision_token, which for a resumed upload means the first one got through
    assert result.resumed and result.keys_published == 15 and result.already_published
    assert await store.get_state(LAST_REPORT_STATE_KEY)
    sent = [r.json() for r in server.requests_to("/v1/publish")]
    assert len(sent) == STEP_ATTEMPTS + 1
    for field in ("verificationPayload", "hmacKey", "temporaryExposureKeys"):
        assert len({json.dumps(body[field]) for body in sent}) == 1
    assert len(server.requests_to("/api/verify")) == 1
    assert [len(e) for e in await served_exports(http, server)] == [15]  # published once
    assert await load_pending(store) is None


async def test_pending_record_is_written_before_the_certificate_request(
    server: LocalKeyServer, store: Store, clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    server.fail_next("/api/certificate", 0, times=STEP_ATTEMPTS)  # dropped, nothing processed
    with pytest.raises(ServerUnreachableError):
        await reporter(server, store, clock).run(server.issue_code(), release(store, clock))
    pending = await load_pending(store)
    assert pending is not None and not pending.certificate
    assert len(pending.keys) == 15
    # a new code given now is not used: the saved upload is finished first
    result = await reporter(server, store, clock).run(server.issue_code(), release(store, clock))
    assert result.resumed
    sent = [r.json() for r in server.requests_to("/api/certificate")]
    assert len(sent) == STEP_ATTEMPTS + 1
    assert len({(body["token"], body["ekeyhmac"]) for body in sent}) == 1
    publish = server.requests_to("/v1/publish")[0].json()
    sent = [base64.b64decode(k["key"]) for k in publish["temporaryExposureKeys"]]
    assert sent == [k.key_data for k in pending.keys]  # same keys, same order
    assert len(server.requests_to("/api/verify")) == 1


async def test_hmac_mismatch_is_reported_clearly_and_the_record_dropped(
    server: LocalKeyServer, store: Store, clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    server.fail_next("/v1/publish", 503, times=STEP_ATTEMPTS)
    with pytest.raises(ServerFailureError, match="HTTP 503"):
        await reporter(server, store, clock).run(server.issue_code(), release(store, clock))
    pending = await load_pending(store)
    assert pending is not None
    # the saved keys no longer match the certificate (a corrupted or tampered record)
    await save_pending(store, PendingUpload(**{**_fields(pending), "keys": pending.keys[1:]}))
    with pytest.raises(RequestRefusedError, match="HMAC mismatch") as info:
        await reporter(server, store, clock).run(None, release(store, clock))
    # Google's key server answers 401 with this one code for bad certificates and HMACs
    assert info.value.error_code == "health_authority_verification_certificate_invalid"
    assert info.value.status == 401
    assert "\n" not in str(info.value)
    assert await load_pending(store) is None
    assert await served_exports(http, server) == []


def _fields(pending: PendingUpload) -> dict[str, object]:
    return {name: getattr(pending, name) for name in PendingUpload.__dataclass_fields__}


async def test_stale_or_unreadable_records_are_purged(store: Store, clock: FakeClock) -> None:
    pending = PendingUpload("t", b"s" * 32, tuple(day_keys(2)), created=clock.wall())
    await save_pending(store, pending)
    assert not await purge_stale_pending(store, clock.wall() - 1)
    assert await purge_stale_pending(store, clock.wall() + 1)
    assert await store.get_state(PENDING_STATE_KEY) is None
    await store.set_state(PENDING_STATE_KEY, json.dumps({"version": 99}))
    assert await purge_stale_pending(store, 0)


# --- a running daemon owns the key schedule ----------------------------------------------


@pytest.fixture
def socket_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A short control-socket path (Unix socket paths are limited to 107 bytes)."""
    with tempfile.TemporaryDirectory(prefix="ca-", dir="/tmp") as tmp:
        path = Path(tmp) / SOCKET_NAME
        monkeypatch.setenv("CONTACT_AGENT_SOCKET", str(path))
        yield path


async def test_a_daemon_without_the_release_command_keeps_todays_key_out(
    server: LocalKeyServer,
    store: Store,
    clock: FakeClock,
    http: aiohttp.ClientSession,
    socket_path: Path,
) -> None:
    async def status(request: Mapping[str, Any], peer: Peer) -> Mapping[str, Any]:
        return {}

    control = ControlServer(socket_path, {"status": status})
    await control.start()
    try:
        before = await own_identities(store)
        code = server.issue_code()
        result = await reporter(server, store, clock).run(code, release(store, clock))
    finally:
        await control.close()
    assert result.keys_published == 14
    assert await own_identities(store) == before  # the store was left to the daemon
    [export] = await served_exports(http, server)
    assert TODAY not in {k.rolling_start_interval_number for k in export}


async def test_a_daemon_that_fails_to_release_stops_the_upload(
    server: LocalKeyServer, store: Store, clock: FakeClock, socket_path: Path
) -> None:
    async def refuse(request: Mapping[str, Any], peer: Peer) -> Mapping[str, Any]:
        raise AgentError("the radio is restarting")

    control = ControlServer(socket_path, {RELEASE_COMMAND: refuse})
    await control.start()
    try:
        with pytest.raises(AgentError, match=r"radio is restarting.*nothing was published"):
            await reporter(server, store, clock).run(server.issue_code(), release(store, clock))
    finally:
        await control.close()
    assert server.requests_to("/api/certificate") == []
    assert await load_pending(store) is None
