"""Index, CWA and local-directory sources against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from agent.clock import FakeClock
from agent.config import KeySource
from agent.errors import NetworkError
from agent.sources import FetchLimits, make_session
from agent.sources.layouts import index_file_url
from tests.sources.conftest import KeyServer
from tests.sources.util import FAST, client, export_bytes, verified_count

INDEX = "/exposureKeyExport-ZZ/index.txt"


def _publish_index(server: KeyServer, key: ec.EllipticCurvePrivateKey, names: list[str]) -> None:
    for name in names:
        server.files[f"/{name}"] = export_bytes(key)
    server.files[INDEX] = "".join(f"{n}\n" for n in names).encode()


async def test_index_source_offers_new_files_once(
    key_server: KeyServer, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    names = [f"exposureKeyExport-ZZ/{1000 + i}-{1001 + i}-00001.zip" for i in range(3)]
    _publish_index(key_server, signing_key, names)
    state: dict[str, str] = {}
    source = KeySource(kind="index", url=key_server.url(INDEX))
    async with make_session(FAST) as session:
        c = client(source, session, state)
        candidates = await c.candidates()
        assert [x.name for x in candidates] == names
        assert candidates[0].url == key_server.url("/" + names[0])
        for candidate in candidates:
            download = await c.download(candidate)
            assert verified_count(download, signing_key) == 3
            assert not download.clock_skewed
        # Unchanged index: a conditional GET answered 304, and no new work.
        assert await c.candidates() == []
        assert key_server.requests(INDEX) == [200, 304]
        # A new line appears: only it is offered, also to a fresh client on the saved state.
        names.append("exposureKeyExport-ZZ/2000-2001-00001.zip")
        _publish_index(key_server, signing_key, names)
        again = client(source, session, dict(state))
        assert [x.name for x in await again.candidates()] == names[-1:]


async def test_index_offers_the_newest_files_up_to_the_cap(
    key_server: KeyServer, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    names = [f"f{i:03d}.zip" for i in range(60)]
    key_server.files[INDEX] = "\n".join(names).encode()
    limits = FetchLimits(max_daily_files=15, max_hourly_files=24, retries=0)
    async with make_session(FAST) as session:
        c = client(KeySource(kind="index", url=key_server.url(INDEX)), session, {}, limits=limits)
        candidates = await c.candidates()
    assert [x.name for x in candidates] == names[-39:]
    assert candidates[0].url == key_server.url("/exposureKeyExport-ZZ/f021.zip")


def test_index_line_urls() -> None:
    base = "https://keys.example/exposureKeyExport-US/index.txt"
    assert index_file_url(base, "exposureKeyExport-US/1-2-00001.zip") == (
        "https://keys.example/exposureKeyExport-US/1-2-00001.zip"
    )
    assert index_file_url(base, "1-2-00001.zip") == (
        "https://keys.example/exposureKeyExport-US/1-2-00001.zip"
    )
    assert (
        index_file_url(base, "sub/1.zip") == "https://keys.example/exposureKeyExport-US/sub/1.zip"
    )


@pytest.mark.parametrize(
    ("index_url", "line", "url"),
    [
        # Google's exporter: lines relative to the bucket root, export folder v1/us
        (
            "https://storage.example/bucket/v1/us/index.txt",
            "v1/us/1590159600-1590246000-00001.zip",
            "https://storage.example/bucket/v1/us/1590159600-1590246000-00001.zip",
        ),
        (
            "https://cdn.example/v1/us/index.txt",
            "v1/us/1-2-00001.zip",
            "https://cdn.example/v1/us/1-2-00001.zip",
        ),
        # one segment, at the host root and below a bucket prefix
        (
            "https://keys.example/exposureKeyExport-US/index.txt",
            "exposureKeyExport-US/1-2-00001.zip",
            "https://keys.example/exposureKeyExport-US/1-2-00001.zip",
        ),
        (
            "https://storage.example/bucket/exposureKeyExport-US/index.txt",
            "exposureKeyExport-US/1-2-00001.zip",
            "https://storage.example/bucket/exposureKeyExport-US/1-2-00001.zip",
        ),
        # bare names and sub-folders stay in the index's folder
        ("https://cdn.example/v1/us/index.txt", "3-4.zip", "https://cdn.example/v1/us/3-4.zip"),
        ("https://cdn.example/v1/us/index.txt", "us/x.zip", "https://cdn.example/v1/us/x.zip"),
        ("https://cdn.example/v1/us/index.txt", "eu/x.zip", "https://cdn.example/v1/us/eu/x.zip"),
    ],
)
def test_google_bucket_root_lines(index_url: str, line: str, url: str) -> None:
    assert index_file_url(index_url, line) == url


CWA_ROOT = "/version/v1/diagnosis-keys/country/DE/date"


def _cwa_clock(day: dt.date, server: KeyServer) -> FakeClock:
    """A clock at noon of ``day``, and the server's Date in agreement with it."""
    noon = dt.datetime(day.year, day.month, day.day, 12, tzinfo=dt.UTC).timestamp()
    server.date = noon + 3
    return FakeClock(wall=noon)


async def test_cwa_source_offers_daily_and_hourly_files(
    key_server: KeyServer, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    today = dt.date(2020, 7, 10)
    days = [(today - dt.timedelta(days=d)).isoformat() for d in (3, 2)]  # yesterday not yet daily
    key_server.files[CWA_ROOT] = json.dumps(days).encode()
    for d in days:
        key_server.files[f"{CWA_ROOT}/{d}"] = export_bytes(signing_key)
    yesterday = (today - dt.timedelta(days=1)).isoformat()
    key_server.files[f"{CWA_ROOT}/{yesterday}/hour"] = b"[22, 23]"
    key_server.files[f"{CWA_ROOT}/{today}/hour"] = b'["0", "1", "2"]'
    for day, hours in ((yesterday, (22, 23)), (today.isoformat(), (0, 1, 2))):
        for h in hours:
            key_server.files[f"{CWA_ROOT}/{day}/hour/{h}"] = export_bytes(signing_key, 2)
    state: dict[str, str] = {}
    source = KeySource(kind="cwa", url=key_server.url("/"), country="DE")
    async with make_session(FAST) as session:
        c = client(source, session, state, clock=_cwa_clock(today, key_server))
        candidates = await c.candidates()
        assert [x.name for x in candidates] == [
            f"DE/date/{days[0]}",
            f"DE/date/{days[1]}",
            f"DE/date/{yesterday}/hour/22",
            f"DE/date/{yesterday}/hour/23",
            f"DE/date/{today}/hour/0",
            f"DE/date/{today}/hour/1",
            f"DE/date/{today}/hour/2",
        ]
        total = 0
        for candidate in candidates:
            total += verified_count(await c.download(candidate), signing_key)
        assert total == 2 * 3 + 5 * 2
        assert await c.candidates() == []
        assert key_server.requests(CWA_ROOT) == [200, 304]
        # Next day: yesterday's daily file is out, but all of its hours were not: offered.
        key_server.files[CWA_ROOT] = json.dumps([*days, yesterday]).encode()
        c = client(source, session, state, clock=_cwa_clock(today, key_server))
        assert [x.name for x in await c.candidates()] == [f"DE/date/{yesterday}"]


async def test_cwa_daily_file_is_skipped_when_all_its_hours_were_done(
    key_server: KeyServer, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    today = dt.date(2020, 7, 10)
    yesterday = (today - dt.timedelta(days=1)).isoformat()
    key_server.files[CWA_ROOT] = b"[]"
    key_server.files[f"{CWA_ROOT}/{yesterday}/hour"] = json.dumps(list(range(24))).encode()
    for h in range(24):
        key_server.files[f"{CWA_ROOT}/{yesterday}/hour/{h}"] = export_bytes(signing_key, 1)
    state: dict[str, str] = {}
    source = KeySource(kind="cwa", url=key_server.url("/version/v1"), country="DE")
    async with make_session(FAST) as session:
        c = client(source, session, state, clock=_cwa_clock(today, key_server))
        candidates = await c.candidates()
        assert len(candidates) == 24  # today's hour list is 404: nothing yet
        for candidate in candidates:
            await c.download(candidate)
        key_server.files[CWA_ROOT] = json.dumps([yesterday]).encode()
        assert (
            await client(source, session, state, clock=_cwa_clock(today, key_server)).candidates()
            == []
        )


async def test_cwa_caps_daily_files(key_server: KeyServer) -> None:
    today = dt.date(2020, 7, 30)
    days = [(today - dt.timedelta(days=d)).isoformat() for d in range(20, 0, -1)]
    key_server.files[CWA_ROOT] = json.dumps(days).encode()
    source = KeySource(kind="cwa", url=key_server.url("/"), country="DE")
    async with make_session(FAST) as session:
        candidates = await client(
            source, session, {}, clock=_cwa_clock(today, key_server)
        ).candidates()
    assert [x.name for x in candidates] == [f"DE/date/{d}" for d in days[-15:]]


async def test_local_directory_source(
    tmp_path: Path, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    (tmp_path / "a.zip").write_bytes(export_bytes(signing_key))
    (tmp_path / "b.zip").write_bytes(export_bytes(signing_key, 4))
    (tmp_path / "notes.txt").write_text("not an export")
    (tmp_path / "dir.zip").mkdir()
    state: dict[str, str] = {}
    source = KeySource(kind="dir", path=str(tmp_path))
    async with make_session(FAST) as session:
        c = client(source, session, state)
        candidates = await c.candidates()
        assert [x.name for x in candidates] == ["a.zip", "b.zip"]
        counts = [verified_count(await c.download(x), signing_key) for x in candidates]
        assert counts == [3, 4]
        assert await c.candidates() == []
        (tmp_path / "a.zip").write_bytes(export_bytes(signing_key, 5))
        os.utime(tmp_path / "a.zip", ns=(1, 1))
        assert [x.name for x in await c.candidates()] == ["a.zip"]
        with pytest.raises(NetworkError, match="over the cap of 100 bytes"):
            await client(source, session, {}, max_bytes=100).download(candidates[1])
        missing = client(KeySource(kind="dir", path=str(tmp_path / "nope")), session, {})
        with pytest.raises(NetworkError, match="cannot be listed"):
            await missing.candidates()
