"""``contact-agent keyserver`` and ``report`` as real processes: the whole story on loopback."""

from __future__ import annotations

import asyncio
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.clock import en_interval_number
from agent.export import PublicKeyRing, read_verified_export
from agent.store import Store
from tests.report.conftest import broadcast_history


class ServerProcess:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "keyserver", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def read_until(self, prefix: str, timeout: float = 30.0) -> list[str]:
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                stderr = self.proc.stderr.read() if self.proc.poll() is not None else ""
                pytest.fail(f"no {prefix!r} line from the key server; got {seen}, {stderr}")
            seen.append(line)
            if line.startswith(prefix):
                return seen


@pytest.fixture
def keyserver(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(
        "--port", "0", "--issue-code", "--no-embargo", "--api-key", "k1",
        "--data-dir-for-server", str(tmp_path / "server"),
    )  # fmt: skip
    try:
        yield server
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
        server.proc.wait(10)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.slow
def test_keyserver_and_report_as_processes(keyserver: ServerProcess, tmp_path: Path) -> None:
    lines = keyserver.read_until("verification code:")
    url = lines[0].removeprefix("test key server at ")
    assert url.startswith("http://127.0.0.1:")
    code = lines[-1].split(":", 1)[1].strip()
    assert len(code) == 10 and code.isdigit()
    pem_file = tmp_path / "server" / "export-public-key.pem"
    pem = pem_file.read_bytes()
    assert pem.decode().strip() in "\n".join(lines)
    snippet = lines[lines.index("config for agents:") + 1 : -1]

    data_dir = tmp_path / "agent"

    async def setup() -> set[bytes]:
        async with await Store.open(data_dir) as store:
            await store.save_own_teks(
                broadcast_history(en_interval_number(time.time())).pop_dirty()
            )
            return {t.key_data for t in await store.load_own_teks()}

    own = asyncio.run(setup())
    config = tmp_path / "agent.toml"
    config.write_text("\n".join(snippet) + "\n[clock]\nrequire_sync = false\n", encoding="utf-8")
    consent_off = run_cli("--data-dir", str(data_dir), "--config", str(config), "report",
                          "--code", code, "--yes")  # fmt: skip
    assert consent_off.returncode == 1 and "consent is off" in consent_off.stderr
    enable = run_cli("--data-dir", str(data_dir), "--config", str(config), "enable")
    assert enable.returncode == 0, enable.stderr

    result = run_cli("--data-dir", str(data_dir), "--config", str(config), "report",
                     "--code", code, "--yes")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "published 15 keys" in result.stdout

    with urllib.request.urlopen(f"{url}/exports/index.txt", timeout=10) as response:
        [line] = response.read().decode().split()
    with urllib.request.urlopen(f"{url}/{line}", timeout=10) as response:
        export = read_verified_export(response.read(), PublicKeyRing.from_pem(pem, "test", "v1"))
    assert {k.key_data for k in export.keys} == own

    # the same code again: refused, one line, exit 1
    again = run_cli("--data-dir", str(data_dir), "--config", str(config), "report",
                    "--code", code, "--yes")  # fmt: skip
    assert again.returncode == 1
    assert again.stderr.strip().splitlines() == [
        "contact-agent: the verification code is not valid or was already used; ask for a new code"
    ]

    keyserver.proc.send_signal(signal.SIGTERM)
    assert keyserver.proc.wait(10) == 0


@pytest.mark.slow
def test_keyserver_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("keyserver", "--port", str(port), "--public-key-file",
                         str(tmp_path / "pk.pem"))  # fmt: skip
    assert result.returncode == 1
    assert (
        result.stderr.strip().splitlines()
        == [f"contact-agent: cannot listen on 127.0.0.1:{port}: address already in use"]
        or "cannot listen" in result.stderr
    )
