"""Decoy uploads: same endpoints, same body and header sizes as a real report, ignored."""

from __future__ import annotations

import asyncio
import itertools
import math
import random

import aiohttp
import pytest

from agent.clock import FakeClock
from agent.lab.keyserver import LocalKeyServer
from agent.lab.keyserver.server import RecordedRequest
from agent.report.chaff import (
    CHAFF_MEAN_INTERVAL_SECONDS,
    chaff_enabled,
    fake_keys,
    next_chaff_delay,
    run_chaff,
    send_chaff,
)
from agent.store import Store
from tests.report.conftest import release, report_settings, reporter, served_exports

PATHS = ("/api/verify", "/api/certificate", "/v1/publish")


async def no_sleep(seconds: float) -> None:
    assert seconds >= 0


def header_bytes(request: RecordedRequest) -> int:
    """Bytes of the headers the client chose (Host and Content-Length differ by nature)."""
    ignore = {"host", "content-length"}
    return sum(len(k) + len(v) + 4 for k, v in request.headers.items() if k.lower() not in ignore)


async def test_real_and_decoy_requests_have_the_same_sizes(
    server: LocalKeyServer, store: Store, clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    settings = report_settings(server)
    for _ in range(3):
        assert await send_chaff(settings, clock, sleep=no_sleep) == 3
    await reporter(server, store, clock).run(server.issue_code(), release(store, clock))
    for _ in range(3):
        assert await send_chaff(settings, clock, sleep=no_sleep) == 3
    for path in PATHS:
        real = server.requests_to(path, chaff=False)
        decoys = server.requests_to(path, chaff=True)
        assert len(real) == 1 and len(decoys) == 6
        # identical distributions: every body and header block has one and the same size
        assert {len(r.body) for r in real + decoys} == {len(real[0].body)}
        assert {header_bytes(r) for r in real + decoys} == {header_bytes(real[0])}
        assert all(r.headers.get("X-Chaff") == "1" for r in decoys)
        assert all("X-Chaff" not in r.headers for r in real)
    # the decoys published nothing: the one export holds the real report only
    assert [len(e) for e in await served_exports(http, server)] == [15]


async def test_decoys_to_an_unreachable_server_fail_quietly(clock: FakeClock) -> None:
    server = LocalKeyServer(clock=clock)
    server.url = "http://127.0.0.1:9"  # discard port: nobody listens
    assert await send_chaff(report_settings(server), clock, sleep=no_sleep) == 0


def test_decoy_waits_are_exponential_with_a_mean_of_one_day() -> None:
    rng = random.Random(7)
    waits = [next_chaff_delay(rng) for _ in range(20_000)]
    mean = sum(waits) / len(waits)
    assert abs(mean / CHAFF_MEAN_INTERVAL_SECONDS - 1) < 0.03
    # memoryless: P(wait > mean) = 1/e for an exponential distribution
    above = sum(w > CHAFF_MEAN_INTERVAL_SECONDS for w in waits) / len(waits)
    assert abs(above - math.exp(-1)) < 0.015


def test_fake_keys_look_like_a_real_history(clock: FakeClock) -> None:
    keys = fake_keys(clock.wall())
    assert len(keys) == 15 and len({k.key_data for k in keys}) == 15
    starts = sorted(k.rolling_start_interval_number for k in keys)
    assert [b - a for a, b in itertools.pairwise(starts)] == [144] * 14
    assert sum(k.rolling_period < 144 for k in keys) == 1  # today's, ended early


async def test_run_chaff_is_off_by_default_and_loops_when_on(
    server: LocalKeyServer, clock: FakeClock
) -> None:
    await asyncio.wait_for(run_chaff(report_settings(server), clock), 1.0)  # returns at once
    assert not chaff_enabled(report_settings(server))
    assert server.requests == []

    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(server.requests_to("/v1/publish")) >= 2:
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await run_chaff(report_settings(server, chaff=True), clock, sleep=sleep)
    assert len(server.requests_to("/v1/publish", chaff=True)) == 2
    assert all(r.chaff for r in server.requests)
