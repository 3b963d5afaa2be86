"""fetch against misbehaving sources: spool files, budgets, deadlines, redirects, refused
files remembered, and the other sources of the cycle still fetched (issue 14)."""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import stat
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp import web

from agent.clock import ClockTrust, FakeClock, TrustDecision
from agent.config import Config, KeySource
from agent.export import generate_signing_key, write_export
from agent.pipeline import LAST_FETCH_STATE_KEY, SOURCES_STATE_KEY, FetchReport, config_ring
from agent.pipeline.fetch import FetchActivity, fetch_and_match, spool_root
from agent.sources import make_session
from agent.sources.http import redirect_target
from agent.store import Store
from tests.pipeline.conftest import NOW, Authority, new_key
from tests.sources.conftest import KeyServer

TRUSTED = TrustDecision(ClockTrust.SYNCED, "test: synchronised")


async def _fetch(
    store: Store, config: Config, clock: FakeClock, activity: FetchActivity | None = None
) -> FetchReport:
    async with make_session() as session:
        return await fetch_and_match(
            store,
            config,
            session,
            clock=clock,
            trust=TRUSTED,
            ring=config_ring(config, None),
            workers=1,
            activity=activity,
        )


def _publish(server: KeyServer, folder: str, files: dict[str, bytes]) -> KeySource:
    for name, content in files.items():
        server.files[f"/{folder}/{name}"] = content
    server.files[f"/{folder}/index.txt"] = "".join(f"{folder}/{n}\n" for n in files).encode()
    return KeySource(kind="index", url=server.url(f"/{folder}/index.txt"))


def _with_keys(config: Config, **changes: object) -> Config:
    return replace(config, keys=replace(config.keys, **changes))


def _junk(size: int, seed: int) -> bytes:
    return b"PK\x03\x04" + bytes([seed]) * (size - 4)


async def test_downloads_are_spooled_privately_and_removed(
    store: Store, server: KeyServer, authority: Authority, clock: FakeClock
) -> None:
    seen: list[int] = []
    good = authority.export([new_key()])
    source = _publish(server, "a", {"1.zip": good})

    async def watched(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Date": email.utils.formatdate(NOW, usegmt=True)})
        await response.prepare(request)
        await response.write(good[:100])
        await asyncio.sleep(0.2)  # the client has written the first bytes by now
        for folder in spool_root(store.data_dir).iterdir():
            seen.append(stat.S_IMODE(folder.stat().st_mode))
            seen.extend(stat.S_IMODE(spooled.stat().st_mode) for spooled in folder.iterdir())
        await response.write(good[100:])
        return response

    server.handlers["/a/1.zip"] = watched
    report = await _fetch(store, authority.config(source), clock)
    assert report.cycle is not None and len(report.cycle.files_processed) == 1
    assert seen == [0o700, 0o600]  # the cycle's folder, the file being downloaded
    assert list(spool_root(store.data_dir).iterdir()) == []  # removed when done


async def test_a_forged_file_is_refused_once_and_remembered_by_hash(
    store: Store, server: KeyServer, authority: Authority, clock: FakeClock
) -> None:
    forged = write_export(
        [new_key()], generate_signing_key(), start_timestamp=int(NOW) - 7200, end_timestamp=int(NOW)
    )
    source = _publish(server, "f", {"1.zip": forged})
    config = authority.config(source)
    report = await _fetch(store, config, clock)
    summary = json.loads(await store.get_state(LAST_FETCH_STATE_KEY) or "{}")
    assert summary["ok"] is False and summary["files_rejected"] == 1
    assert "signature invalid" in summary["warning"]
    assert report.cycle is not None and report.cycle.files_rejected
    # marked done and saved: not downloaded again
    assert "f/1.zip" in (await store.get_state(SOURCES_STATE_KEY) or "")
    again = await _fetch(store, config, clock)
    assert again.downloaded == [] and server.requests("/f/1.zip") == [200]
    # the same bytes under another name: refused without being verified again
    source = _publish(server, "f", {"1.zip": forged, "2.zip": forged})
    third = await _fetch(store, authority.config(source), clock)
    assert third.cycle is not None
    ((name, reason),) = third.cycle.files_rejected
    assert name.endswith("f/2.zip") and reason.startswith("refused before: signature invalid")


async def test_budget_and_file_cap_defer_files_with_one_log_line(
    store: Store,
    server: KeyServer,
    authority: Authority,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    junk = _publish(server, "j", {f"{n}.zip": _junk(50_000, n) for n in range(6)})
    good = _publish(server, "g", {"1.zip": authority.export([new_key()])})
    config = _with_keys(authority.config(junk, good), max_cycle_bytes=120_000)
    caplog.set_level(logging.WARNING)
    report = await _fetch(store, config, clock)
    # 3 junk files reach the budget; the good source still gets its first file
    assert report.downloaded == ["j/0.zip", "j/1.zip", "j/2.zip", "g/1.zip"]
    assert report.deferred == 3 and "keys.max_cycle_bytes" in (report.limit or "")
    assert report.cycle is not None and len(report.cycle.files_processed) == 1
    assert sum("max_cycle_bytes" in r.message for r in caplog.records) == 1
    capped = _with_keys(config, max_files_per_source=2, max_cycle_bytes=10**9)
    later = await _fetch(store, capped, clock)
    assert later.downloaded == ["j/3.zip", "j/4.zip"] and later.deferred == 1
    assert "keys.max_files_per_source" in (later.limit or "")


async def test_a_slow_file_meets_its_deadline_and_progress_is_shown(
    store: Store, server: KeyServer, authority: Authority, clock: FakeClock
) -> None:
    activity = FetchActivity()
    shown: list[tuple[str | None, int]] = []

    async def drip(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"PK\x03\x04")
        for _ in range(600):
            await response.write(b"x" * 100)
            shown.append((activity.file, activity.file_bytes))
            await asyncio.sleep(0.05)
        return response

    slow = _publish(server, "s", {"1.zip": b""})
    server.handlers["/s/1.zip"] = drip
    good = _publish(server, "g", {"1.zip": authority.export([new_key()])})
    config = _with_keys(authority.config(slow, good), file_deadline_seconds=1.5)
    report = await _fetch(store, config, clock, activity)
    ((name, reason),) = report.failed
    assert name == "s/1.zip" and "not complete within 2 s" in reason
    assert report.cycle is not None and len(report.cycle.files_processed) == 1
    assert any(file == "s/1.zip" and size > 0 for file, size in shown)


async def test_bad_redirects_fail_only_their_source(
    store: Store, server: KeyServer, authority: Authority, clock: FakeClock
) -> None:
    targets = {
        "file": "file:///etc/passwd",
        "http": "http://192.0.2.7/index.txt",
        "ftp": "ftp://127.0.0.1/index.txt",
    }
    sources = []
    for name, location in targets.items():

        async def redirect(request: web.Request, location: str = location) -> web.Response:
            return web.Response(status=302, headers={"Location": location})

        server.handlers[f"/{name}/index.txt"] = redirect
        sources.append(KeySource(kind="index", url=server.url(f"/{name}/index.txt")))

    async def circle(request: web.Request) -> web.Response:
        return web.Response(status=307, headers={"Location": "/loop/index.txt"})

    server.handlers["/loop/index.txt"] = circle
    sources.append(KeySource(kind="index", url=server.url("/loop/index.txt")))
    good = _publish(server, "g", {"1.zip": authority.export([new_key()])})
    # a loopback -> loopback redirect is followed
    moved = _publish(server, "moved", {"1.zip": b""})
    server.files["/elsewhere/1.zip"] = authority.export([new_key()])
    server.handlers["/moved/1.zip"] = lambda r: _moved(server.url("/elsewhere/1.zip"))
    report = await _fetch(store, authority.config(*sources, moved, good), clock)
    reasons = [reason for _, reason in report.failed]
    assert len(reasons) == 4, reasons
    assert "redirect to 'file:///etc/passwd' refused" in reasons[0]
    assert "redirect to 'http://192.0.2.7/index.txt' refused" in reasons[1]
    assert "redirect to 'ftp://127.0.0.1/index.txt' refused" in reasons[2]
    assert "more than 3 redirects" in reasons[3]
    assert report.cycle is not None and len(report.cycle.files_processed) == 2


async def _moved(location: str) -> web.Response:
    return web.Response(status=301, headers={"Location": location})


@pytest.mark.parametrize(
    ("current", "location", "followed"),
    [
        ("https://a.example/x", "https://b.example/y", True),
        ("https://a.example/x", "/y", True),
        ("http://127.0.0.1:8/x", "http://127.0.0.1:9/y", True),
        ("http://127.0.0.1:8/x", "http://[::1]/y", True),
        ("https://a.example/x", "http://a.example/y", False),
        ("https://a.example/x", "http://127.0.0.1/y", False),  # internet -> loopback
        ("http://127.0.0.1/x", "http://example.com/y", False),
        ("https://a.example/x", "file:///etc/passwd", False),
        ("https://a.example/x", "data:text/plain,hi", False),
        ("https://a.example/x", "", False),
        ("https://a.example/x", "https://[::1/", False),
    ],
)
def test_redirect_rules(current: str, location: str, followed: bool) -> None:
    from agent.sources.http import RedirectRefusedError

    if followed:
        assert redirect_target(current, location).startswith(("https://", "http://"))
    else:
        with pytest.raises(RedirectRefusedError):
            redirect_target(current, location)


def test_spool_is_cleared_at_start_up(tmp_path: Path) -> None:
    from agent.pipeline.fetch import clear_spool

    left = spool_root(tmp_path) / "cycle-x"
    left.mkdir(parents=True)
    (left / "00001.zip").write_bytes(b"PK")
    clear_spool(tmp_path)
    assert not spool_root(tmp_path).exists()
