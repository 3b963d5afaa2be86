"""``contact-agent match`` and ``fetch`` as a user runs them: real processes, real clock."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import pytest

from agent.clock import en_interval_number
from agent.export import generate_signing_key, write_export
from agent.store import Store
from tests.pipeline.conftest import Authority, Radio, new_key
from tests.sources.conftest import KeyServer

REPO = Path(__file__).resolve().parents[2]
TODAY = en_interval_number(time.time()) // 144 * 144
YESTERDAY = TODAY - 144
CONTACT = YESTERDAY * 600 + 10 * 3600


async def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent",
        *args,
        cwd=REPO,
        env={**os.environ, "CONTACT_AGENT_SYNC_MARKER": "/nonexistent", **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.fixture
async def heard(tmp_path: Path) -> tuple[Path, list]:
    """A data dir whose store heard two keys yesterday (20 and 10 minutes)."""
    data = tmp_path / "data"
    keys = [new_key(day=YESTERDAY), new_key(day=YESTERDAY)]
    radio = Radio()
    radio.heard(keys[0].key_data, CONTACT, scans=4)
    radio.heard(keys[1].key_data, CONTACT + 3600, scans=2, rssi=-70)
    store = await Store.open(data)
    try:
        await radio.store_into(store)
    finally:
        await store.close()
    return data, keys


def _config(tmp_path: Path, authority: Authority, extra: str = "", sync: bool = False) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f"[clock]\nrequire_sync = {'true' if sync else 'false'}\n"
        f'[keys]\npublic_keys = [{{ id = "310", version = "v1", pem_file = '
        f'"{authority.pem_file}" }}]\n{extra}'
    )
    return path


async def _match(
    data: Path, config: Path, authority: Authority, *args: str
) -> tuple[int, str, str]:
    """``match ARGS --public-key <the authority's key>`` on ``data`` with ``config``."""
    return await _run(
        "--data-dir", str(data), "--config", str(config), "match", *args,
        "--public-key", str(authority.pem_file),
    )  # fmt: skip


def _quiet(stderr: str) -> bool:
    """Only informational log lines on stderr: no warning, error or traceback."""
    return all(line.startswith("INFO ") for line in stderr.splitlines())


def _export(authority: Authority, keys: list) -> bytes:
    return authority.export(keys, batch_start=time.time() - 3600)


@pytest.mark.slow
async def test_match_json_is_exactly_the_documented_shape(
    tmp_path: Path, authority: Authority, heard: tuple[Path, list]
) -> None:
    data, keys = heard
    export = tmp_path / "keys.zip"
    export.write_bytes(_export(authority, [*keys, new_key(day=YESTERDAY)]))
    config = _config(tmp_path, authority)
    code, out, err = await _match(
        data, config, authority, str(export), "--key-id", "310", "--key-version", "v1", "--json"
    )
    assert code == 0 and _quiet(err), err
    result = json.loads(out)
    assert set(result) == {"matched_keys", "exposure_windows"}
    assert result["matched_keys"] == 2
    first, second = result["exposure_windows"]
    assert first == {
        "start": CONTACT + 1,
        "duration_seconds": 1200,
        "min_attenuation_db": 52,
        "typical_attenuation_db": 52,
        "report_type": 1,
        "score": 1200.0,
    }
    assert (second["duration_seconds"], second["typical_attenuation_db"]) == (600, 62)
    code, out, _ = await _match(data, config, authority, str(export))
    assert code == 0
    assert "keys: 3 checked, 2 matched" in out
    assert "exposure windows: 2 (0 new)" in out  # stored once


@pytest.mark.slow
async def test_match_fails_closed_on_a_forged_file(
    tmp_path: Path, authority: Authority, heard: tuple[Path, list]
) -> None:
    data, keys = heard
    good, forged = tmp_path / "good.zip", tmp_path / "forged.zip"
    good.write_bytes(_export(authority, keys))
    forged.write_bytes(
        write_export(keys, generate_signing_key(), start_timestamp=0, end_timestamp=1)
    )
    config = _config(tmp_path, authority)
    code, out, err = await _match(data, config, authority, str(good), str(forged))
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "forged.zip" in err and "signature" in err
    store = await Store.open(data)
    try:
        assert await store.exposure_windows() == []
    finally:
        await store.close()


@pytest.mark.slow
async def test_match_refuses_while_the_clock_is_untrusted(
    tmp_path: Path, authority: Authority, heard: tuple[Path, list]
) -> None:
    data, keys = heard
    export = tmp_path / "keys.zip"
    export.write_bytes(_export(authority, keys))
    config = _config(tmp_path, authority, sync=True)
    code, _, err = await _match(data, config, authority, str(export))
    assert code == 1
    assert "not synchronised" in err and "require_sync" in err


@pytest.mark.slow
async def test_fetch_from_a_local_key_server(
    tmp_path: Path, authority: Authority, heard: tuple[Path, list], server: KeyServer
) -> None:
    data, keys = heard
    server.date = None  # the real clock on both sides
    server.files["/keys/index.txt"] = b"keys/a.zip\n"
    server.files["/keys/a.zip"] = _export(authority, keys)
    source = f'sources = [{{ kind = "index", url = "{server.url("/keys/index.txt")}" }}]\n'
    config = _config(tmp_path, authority, source)
    code, _, err = await _run("--data-dir", str(data), "--config", str(config), "enable")
    assert code == 0, err  # fetch contacts no server without consent
    code, out, err = await _run("--data-dir", str(data), "--config", str(config), "fetch")
    assert code == 0 and _quiet(err), err
    assert "downloaded 1 files" in out
    assert "keys: 2 checked, 2 matched" in out
    assert "possible exposure on" in out and "about 30 weighted minutes" in out
    code, out, _ = await _run("--data-dir", str(data), "--config", str(config), "fetch", "--json")
    assert code == 0
    summary = json.loads(out)
    assert (summary["downloaded"], summary["matched_keys"], summary["ok"]) == (0, 0, True)


@pytest.mark.slow
async def test_fetch_without_sources_is_a_config_error(
    tmp_path: Path, authority: Authority
) -> None:
    code, _, err = await _run(
        "--data-dir", str(tmp_path / "d"), "--config", str(_config(tmp_path, authority)), "fetch"
    )
    assert code == 78
    assert "[keys] sources is empty" in err
