"""The agent's report client against the test key server, case by case, as the real
servers answer (google/exposure-notifications-server ``pkg/api/v1/exposure_types.go``,
``internal/publish/publish.go``, ``internal/jsonutil/unmarshal.go``;
google/exposure-notifications-verification-server ``pkg/api/api.go``).

Each case names what the real server does and what the agent must make of it.
"""

from __future__ import annotations

import dataclasses

import aiohttp
import pytest

from agent.clock import FakeClock
from agent.lab.keyserver import LocalKeyServer
from agent.models import TemporaryExposureKey
from agent.report.client import REVISION_STATE_KEY, STEP_ATTEMPTS, ReportResult
from agent.report.errors import RequestRefusedError, ServerFailureError
from agent.report.padding import BodyKind
from agent.report.pending import load_pending
from agent.report.transport import post_json
from agent.store import Store
from tests.report.conftest import TODAY, release, report_settings, reporter, served_exports


class WithStaleKey:
    """The store's keys plus one that expired more than 15 days ago (a buggy app)."""

    def __init__(self, store: Store, clock: FakeClock) -> None:
        self._inner = release(store, clock)

    async def available(self, withhold_days: frozenset[int] = frozenset()) -> int:
        return await self._inner.available(withhold_days)

    async def release(self) -> list[TemporaryExposureKey]:
        stale = TemporaryExposureKey(b"\x42" * 16, TODAY - 17 * 144, 144)
        return [*(await self._inner.release()), stale]


async def run(
    server: LocalKeyServer, store: Store, clock: FakeClock, keys: object = None
) -> ReportResult:
    return await reporter(server, store, clock).run(
        server.issue_code(),
        keys or release(store, clock),  # type: ignore[arg-type]
    )


async def test_success_stores_the_revision_token(
    server: LocalKeyServer, store: Store, clock: FakeClock
) -> None:
    result = await run(server, store, clock)
    assert result.inserted == result.keys_published == 15 and not result.partial  # 14 days + today
    assert await store.get_state(REVISION_STATE_KEY)
    assert await load_pending(store) is None


async def test_partial_failure_is_a_success_and_keeps_the_revision_token(
    server: LocalKeyServer, store: Store, clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    # real server: HTTP 200, code "partial_failure", insertedExposures for the rest
    result = await run(server, store, clock, WithStaleKey(store, clock))
    assert result.partial and result.keys_published == 16 and result.inserted == 15
    assert await store.get_state(REVISION_STATE_KEY)
    assert await load_pending(store) is None
    [export] = await served_exports(http, server)
    assert len(export) == 15


async def test_a_second_report_sends_the_revision_token_and_only_new_keys_count(
    server: LocalKeyServer, store: Store, clock: FakeClock
) -> None:
    first = await run(server, store, clock)
    second = await run(server, store, clock)  # the same keys again, with the saved token
    assert first.inserted == 15 and second.inserted == 0
    assert server.requests_to("/v1/publish")[-1].json()["revisionToken"]


async def test_keys_already_published_without_the_token_are_a_clear_refusal(
    server: LocalKeyServer, store: Store, clock: FakeClock
) -> None:
    await run(server, store, clock)
    await store.set_state(REVISION_STATE_KEY, "")  # the token was lost
    with pytest.raises(RequestRefusedError, match="revision token") as info:
        await run(server, store, clock)
    assert (info.value.status, info.value.error_code) == (400, "missing_revision_token")


async def test_hmac_mismatch_and_expired_certificate_show_the_friendly_message(
    server: LocalKeyServer, store: Store, clock: FakeClock
) -> None:
    # real server: 401 health_authority_verification_certificate_invalid for both
    server.fail_next("/v1/publish", 503, times=STEP_ATTEMPTS)  # every try of this run
    with pytest.raises(ServerFailureError):
        await run(server, store, clock)
    clock.advance(16 * 60)  # the saved certificate expires (15 minutes)
    with pytest.raises(RequestRefusedError, match="certificate: it is invalid or expired") as info:
        await reporter(server, store, clock).run(None, release(store, clock))
    assert (info.value.status, info.value.error_code) == (
        401,
        "health_authority_verification_certificate_invalid",
    )
    assert "refused the request (HTTP" not in str(info.value)
    assert await load_pending(store) is None


async def test_an_unknown_field_is_refused_with_the_servers_reason(
    server: LocalKeyServer, http: aiohttp.ClientSession
) -> None:
    settings = report_settings(server)
    with pytest.raises(RequestRefusedError, match='unknown field "nonsense"') as info:
        await post_json(
            http,
            f"{server.url}/api/verify",
            {"code": server.issue_code(), "nonsense": 1},
            kind=BodyKind.VERIFY,
            server="verification server",
            api_key=settings.api_key,
            padding_bytes=settings.padding_bytes,
        )
    assert (info.value.status, info.value.error_code) == (400, "unparsable_request")


async def test_the_agent_sends_the_content_type_the_servers_require(
    server: LocalKeyServer, store: Store, clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    await run(server, store, clock)
    for request in server.requests_to("/api/verify") + server.requests_to("/v1/publish"):
        assert request.headers["Content-Type"] == "application/json"
    # what a client without it gets: 415, a refusal the agent reports as such
    async with http.post(
        f"{server.url}/api/verify", data=b'{"code": "1"}', headers={"X-API-Key": server.api_key}
    ) as response:
        assert response.status == 415


def test_report_result_fields_are_documented() -> None:
    assert {f.name for f in dataclasses.fields(ReportResult)} >= {"partial", "inserted"}
