"""``contact-agent report`` through click, against the test key server in a thread."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from agent.cli import main
from agent.clock import en_interval_number
from agent.lab.keyserver import LocalKeyServer
from agent.report.client import STEP_ATTEMPTS
from agent.report.pending import PendingUpload, load_pending, save_pending
from agent.store import Store
from tests.report.conftest import API_KEY, broadcast_history


class ThreadedServer:
    """A LocalKeyServer on its own event loop in a thread (the CLI runs asyncio.run)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = LocalKeyServer(api_key=API_KEY, embargo=False)
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def threaded() -> Iterator[LocalKeyServer]:
    ts = ThreadedServer()
    try:
        yield ts.server
    finally:
        ts.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data dir with consent on and 15 days of own keys up to the real current time."""

    async def setup() -> None:
        async with await Store.open(tmp_path / "data") as store:
            now_interval = en_interval_number(time.time())
            await store.save_own_teks(broadcast_history(now_interval).pop_dirty())
            await store.set_consent(True, 0.0)

    asyncio.run(setup())
    return tmp_path / "data"


def write_config(path: Path, server: LocalKeyServer, *, require_sync: bool = False) -> Path:
    path.write_text(
        "[report]\n"
        f'verification_url = "{server.verification_url}"\n'
        f'publish_url = "{server.publish_url}"\n'
        f'api_key = "{API_KEY}"\n'
        f'health_authority_id = "{server.health_authority_id}"\n'
        "[clock]\n"
        f"require_sync = {'true' if require_sync else 'false'}\n",
        encoding="utf-8",
    )
    return path


def invoke(data_dir: Path, config: Path, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(
        main,
        ["--data-dir", str(data_dir), "--config", str(config), "report", *args],
        input=stdin,
    )


def one_line_error(result: Result, exit_code: int = 1) -> str:
    assert result.exit_code == exit_code, (result.output, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("contact-agent: ")
    return lines[0]


def test_report_with_yes_publishes(
    threaded: LocalKeyServer, data_dir: Path, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "c.toml", threaded)
    result = invoke(data_dir, config, "--code", threaded.issue_code(), "--yes")
    assert result.exit_code == 0, result.stderr
    assert "published 15 keys" in result.stdout
    assert [r.path for r in threaded.requests] == ["/api/verify", "/api/certificate", "/v1/publish"]
    assert [len(b.keys) for b in threaded.exports.batches] == [15]


def test_a_busy_server_is_waited_for_and_the_wait_is_said(
    threaded: LocalKeyServer, data_dir: Path, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "c.toml", threaded)
    threaded.fail_next("/api/certificate", 503, retry_after="0")
    result = invoke(data_dir, config, "--code", threaded.issue_code(), "--yes")
    assert result.exit_code == 0, result.stderr
    assert "busy or out of reach; trying again in 0 s" in result.stdout
    assert "published 15 keys" in result.stdout
    assert [len(b.keys) for b in threaded.exports.batches] == [15]


def test_confirmation_explains_what_publishing_reveals(
    threaded: LocalKeyServer, data_dir: Path, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "c.toml", threaded)
    code = threaded.issue_code()
    refused = invoke(data_dir, config, "--code", code, stdin="n\n")
    assert refused.exit_code == 1
    notice = " ".join(refused.stdout.split())
    assert "a positive test" in notice and "follow your device" in notice
    assert "nothing was sent" in one_line_error(refused)
    assert threaded.requests == []
    accepted = invoke(data_dir, config, "--code", code, stdin="y\n")
    assert accepted.exit_code == 0, accepted.stderr
    assert "published 15 keys" in accepted.stdout


@pytest.mark.parametrize("case", ["unknown", "expired", "reused", "http500", "refused"])
def test_failures_are_one_line_and_send_nothing_more(
    threaded: LocalKeyServer, data_dir: Path, tmp_path: Path, case: str
) -> None:
    config = write_config(tmp_path / "c.toml", threaded)
    code = threaded.issue_code()
    expected = {
        "unknown": "unknown",
        "expired": "expired",
        "reused": "already used",
        "http500": "HTTP 500",
        "refused": "cannot reach the verification server",
    }[case]
    if case == "unknown":
        code = "9" * 10 if code != "9" * 10 else "8" * 10
    elif case == "expired":
        threaded.verification.expire_code(code)
    elif case == "reused":
        threaded.verification.verify(code, None)
    elif case == "http500":
        threaded.fail_next("/api/verify", 500)
    else:
        config = write_config(tmp_path / "c.toml", threaded)
        config.write_text(
            config.read_text().replace(threaded.url, "http://127.0.0.1:9"), encoding="utf-8"
        )
    line = one_line_error(invoke(data_dir, config, "--code", code, "--yes"))
    assert expected in line
    assert all(r.path == "/api/verify" for r in threaded.requests)
    assert threaded.exports.batches == []


def test_untrusted_clock_and_consent_off_send_nothing(
    threaded: LocalKeyServer, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONTACT_AGENT_SYNC_MARKER", str(tmp_path / "no-such-marker"))
    strict = write_config(tmp_path / "strict.toml", threaded, require_sync=True)
    line = one_line_error(invoke(data_dir, strict, "--code", threaded.issue_code(), "--yes"))
    assert "clock is not trusted" in line
    (tmp_path / "marker").touch()
    monkeypatch.setenv("CONTACT_AGENT_SYNC_MARKER", str(tmp_path / "marker"))

    async def consent_off() -> None:
        async with await Store.open(data_dir) as store:
            await store.set_consent(False, 0.0)

    asyncio.run(consent_off())
    line = one_line_error(invoke(data_dir, strict, "--code", threaded.issue_code(), "--yes"))
    assert "consent is off" in line
    assert threaded.requests == []


def test_missing_report_config_is_exit_78(data_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "empty.toml"
    config.write_text("[report]\n", encoding="utf-8")
    result = invoke(data_dir, config, "--code", "1234567890", "--yes")
    assert result.exit_code == 78
    assert "report.verification_url" in result.stderr


def test_hmac_mismatch_exits_1_with_one_line(
    threaded: LocalKeyServer, data_dir: Path, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "c.toml", threaded)
    threaded.fail_next("/v1/publish", 503, times=STEP_ATTEMPTS, retry_after="0")  # every try
    line = one_line_error(invoke(data_dir, config, "--code", threaded.issue_code(), "--yes"))
    assert "HTTP 503" in line and "retries it with the same certificate" in line

    async def tamper() -> None:
        async with await Store.open(data_dir) as store:
            pending = await load_pending(store)
            assert pending is not None and pending.certificate
            fields = {n: getattr(pending, n) for n in PendingUpload.__dataclass_fields__}
            await save_pending(store, PendingUpload(**{**fields, "keys": pending.keys[:-1]}))

    asyncio.run(tamper())
    result = invoke(data_dir, config)  # no code needed: the saved upload is retried
    line = one_line_error(result)
    assert "HMAC mismatch" in line and "nothing was published" in line
    assert "earlier upload was interrupted" in result.stdout
    assert threaded.exports.batches == []


def test_discard_pending(threaded: LocalKeyServer, data_dir: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", threaded)
    threaded.fail_next("/api/certificate", 503, times=STEP_ATTEMPTS, retry_after="0")
    one_line_error(invoke(data_dir, config, "--code", threaded.issue_code(), "--yes"))
    result = invoke(data_dir, config, "--discard-pending")
    assert result.exit_code == 0 and "discarded" in result.stdout
    line = one_line_error(invoke(data_dir, config), exit_code=2)  # usage: no --code
    assert "--code" in line
