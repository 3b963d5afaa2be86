"""The test key server under guessing and flooding: throttled, codes burnt after wrong
guesses, a bounded request log, and a device API key generated at first start."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from agent.clock import FakeClock
from agent.lab.keyserver import LocalKeyServer
from agent.lab.keyserver import server as server_module
from agent.lab.keyserver.throttle import TokenBuckets, WrongGuesses
from tests.report.conftest import post


async def test_guessing_codes_is_throttled_with_retry_after(
    server: LocalKeyServer, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    url = f"{server.url}/api/verify"
    statuses = []
    for i in range(server_module.CLIENT_ATTEMPTS + 5):
        status, _ = await post(http, url, {"code": f"{i:010d}"})
        statuses.append(status)
    assert statuses[: server_module.CLIENT_ATTEMPTS] == [400] * server_module.CLIENT_ATTEMPTS
    assert set(statuses[server_module.CLIENT_ATTEMPTS :]) == {429}
    async with http.post(
        url,
        json={"code": "0000000000"},
        headers={"X-API-Key": server.api_key, "Content-Type": "application/json"},
    ) as response:
        assert response.status == 429
        assert 1 <= int(response.headers["Retry-After"]) <= server_module.CLIENT_REFILL_SECONDS
    # the bucket refills on the server's clock
    clock.advance(server_module.CLIENT_REFILL_SECONDS)
    status, _ = await post(http, url, {"code": "0000000000"})
    assert status == 400


async def test_a_code_is_burnt_after_a_few_wrong_guesses(
    server: LocalKeyServer, http: aiohttp.ClientSession
) -> None:
    url = f"{server.url}/api/verify"
    code = server.issue_code()
    for i in range(server_module.WRONG_GUESSES_BEFORE_BURN):
        status, answer = await post(http, url, {"code": f"{i:010d}"})
        assert (status, answer["errorCode"]) == (400, "code_not_found")
    status, answer = await post(http, url, {"code": code})
    assert (status, answer["errorCode"]) == (400, "code_invalid")  # a hit after guesses
    status, answer = await post(http, url, {"code": code})
    assert (status, answer["errorCode"]) == (400, "code_invalid")  # and it stays used


async def test_a_user_who_mistypes_once_still_gets_the_token(
    server: LocalKeyServer, http: aiohttp.ClientSession
) -> None:
    url = f"{server.url}/api/verify"
    code = server.issue_code()
    status, _ = await post(http, url, {"code": code[::-1] if code[::-1] != code else "1"})
    assert status == 400
    status, answer = await post(http, url, {"code": code})
    assert status == 200 and answer["token"]


def test_throttle_maps_stay_bounded() -> None:
    buckets = TokenBuckets(2, 1.0, max_keys=100)
    guesses = WrongGuesses(60.0, max_keys=100)
    for i in range(10_000):
        buckets.take(f"10.0.{i // 256}.{i % 256}", float(i))
        guesses.add(f"10.0.{i // 256}.{i % 256}", float(i))
    assert len(buckets) == 100 and len(guesses) == 100


async def test_the_request_log_is_bounded(
    server: LocalKeyServer, http: aiohttp.ClientSession
) -> None:
    body = b"x" * 60_000
    for _ in range(server_module.REQUEST_LOG_LIMIT + 20):
        async with http.get(f"{server.url}/public-key.pem", data=body) as response:
            await response.read()
    assert len(server.requests) == server_module.REQUEST_LOG_LIMIT
    assert max(len(r.body) for r in server.requests) <= server_module.REQUEST_LOG_BODY_BYTES


async def test_the_device_api_key_is_generated_once_and_kept_private(
    clock: FakeClock, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    first = LocalKeyServer(clock=clock, data_dir=tmp_path)
    assert first.api_key_created and len(first.api_key) >= 24
    path = tmp_path / server_module.API_KEY_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_text().strip() == first.api_key
    again = LocalKeyServer(clock=clock, data_dir=tmp_path)
    assert again.api_key == first.api_key and not again.api_key_created
    assert LocalKeyServer(clock=clock).api_key != LocalKeyServer(clock=clock).api_key
    async with again:
        status, _ = await post(http, f"{again.url}/api/verify", {"code": "1"}, api_key="x")
        assert status == 401


def test_the_cli_prints_a_generated_key_once_and_keeps_it(tmp_path: Path) -> None:
    from tests.report.test_cli_keyserver import ServerProcess

    def start() -> list[str]:
        proc = ServerProcess("--port", "0", "--data-dir-for-server", str(tmp_path / "srv"))
        try:
            return proc.read_until("public_keys")
        finally:
            proc.proc.kill()
            proc.proc.wait(10)

    first = start()
    key = (tmp_path / "srv" / server_module.API_KEY_FILE).read_text().strip()
    assert f'api_key = "{key}"' in first
    second = start()
    assert not any(key in line for line in second)
    assert any("kept in" in line for line in second)
    assert "test-api-key" not in "\n".join(first + second)
