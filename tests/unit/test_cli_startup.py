"""Start-up: `--help` and `status` import only what they use; `status` finds the daemon.

Every command runs as a real subprocess (`python -m agent`); a fake daemon answers on a
real Unix socket. Speed is measured by ``scripts/bench`` as ratios, not here; the peak
memory of a command is checked against a generous cap.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from agent.cli import COMMANDS, main

HEAVY = ("numpy", "aiohttp", "cryptography", "agent.pipeline", "agent.lab")
"""Never imported by `--help` or by `status` asking a running daemon."""

PEAK_CAP_KB = 30 * 1024 + 8 * 1024
"""30 MB measured on a quiet machine, plus a budget for other Python builds."""

_PROBE = """
import json, sys
sys.argv = ["contact-agent", *json.loads(sys.argv[1])]
from agent.cli import main
try:
    main()
except SystemExit as exc:
    code = exc.code
sys.stdout.flush()
with open("/proc/self/status") as status:  # VmHWM: the peak since exec
    peak = [int(line.split()[1]) for line in status if line.startswith("VmHWM:")][0]
print("\\n@@" + json.dumps({"code": code, "modules": sorted(sys.modules), "peak_kb": peak}))
"""


def probe(args: list[str], env: dict[str, str] | None = None) -> tuple[str, dict[str, Any]]:
    """Run the CLI in a fresh interpreter; its output and what it imported."""
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    output, _, tail = result.stdout.rpartition("\n@@")
    assert tail, result.stderr
    return output, json.loads(tail)


def heavy_imports(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)]


@contextlib.contextmanager
def fake_daemon(path: Path, answer: dict[str, Any]) -> Iterator[list[str]]:
    """A daemon's control socket that answers every request with ``answer``."""
    requests: list[str] = []
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(4)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                requests.append(json.loads(data)["cmd"])
                conn.sendall(json.dumps({"ok": True, "result": answer}).encode() + b"\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield requests
    finally:
        server.shutdown(socket.SHUT_RDWR)
        server.close()
        thread.join(timeout=10)




LIVE = {
    "daemon": {"running": True, "pid": 4242, "version": "0.1.0", "uptime_seconds": 60},
    "consent": "on",
    "advertising": False,
    "scanning": False,
    "radio": {"adapter_state": "bluetoothd not running"},
    "data_dir": "/var/lib/contact-agent",
}


# --- the command list ----------------------------------------------------------------
def test_every_command_is_listed_with_its_own_help_line() -> None:
    """COMMANDS (what --help shows without importing) agrees with the modules."""
    defined: dict[str, click.Command] = {}
    for module_name in sorted({module for module, _ in COMMANDS.values()}):
        module = importlib.import_module(f"agent.cli.{module_name}")
        for command in module.COMMANDS:
            assert command.name is not None
            defined[command.name] = command
            assert COMMANDS.get(command.name, ("?",))[0] == module_name, command.name
    assert set(defined) == set(COMMANDS)
    for name, command in defined.items():
        assert command.get_short_help_str(1000) == COMMANDS[name][1], name


def test_every_cli_module_is_reachable() -> None:
    """A new command module whose commands are not in COMMANDS would be unreachable."""
    package = Path(importlib.import_module("agent.cli").__file__ or "").parent
    modules = {p.stem for p in package.glob("*.py") if not p.stem.startswith("_")}
    assert modules == {module for module, _ in COMMANDS.values()}


# --- what start-up imports -------------------------------------------------------------
def test_help_imports_no_command_module() -> None:
    output, seen = probe(["--help"])
    assert seen["code"] == 0
    assert "status" in output and "demo" in output
    assert heavy_imports(seen["modules"]) == []
    assert not [m for m in seen["modules"] if m.startswith("agent.cli.")]
    assert seen["peak_kb"] < PEAK_CAP_KB


def test_status_with_a_running_daemon_imports_no_heavy_part(short_dir: Path) -> None:
    sock = short_dir / "control.sock"
    with fake_daemon(sock, LIVE) as requests:
        output, seen = probe(
            ["--data-dir", str(short_dir / "data"), "status"],
            env={"CONTACT_AGENT_SOCKET": str(sock)},
        )
    assert seen["code"] == 0, output
    assert requests == ["status"]
    assert heavy_imports(seen["modules"]) == []
    assert seen["peak_kb"] < PEAK_CAP_KB
    # Text mode says why the radio is off, which socket answered and whose data it is.
    assert "bluetoothd not running" in output
    assert str(sock) in output
    assert "/var/lib/contact-agent" in output


def test_status_without_daemon_or_data_imports_no_pipeline(short_dir: Path) -> None:
    missing = short_dir / "nothing-here"
    output, seen = probe(["--data-dir", str(missing), "status"], env={"CONTACT_AGENT_SOCKET": ""})
    assert seen["code"] == 0, output
    assert heavy_imports(seen["modules"]) == []
    assert seen["peak_kb"] < PEAK_CAP_KB
    assert f"{missing} (does not exist yet: no data)" in output
    assert "none answered" in output
    assert not missing.exists()


# --- where status looks ------------------------------------------------------------------
def test_status_prefers_the_system_daemon_without_a_data_dir(
    short_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Root and members of the service's group reach /run/contact-agent/control.sock
    before any per-user path; an explicit --data-dir skips it."""
    system = short_dir / "run"
    system.mkdir()
    user_data = short_dir / "user"
    monkeypatch.setattr("agent.control.SYSTEM_RUNTIME_DIR", system)
    monkeypatch.delenv("CONTACT_AGENT_SOCKET", raising=False)
    monkeypatch.setenv("CONTACT_AGENT_DATA_DIR", "")
    monkeypatch.setattr("agent.cli.default_data_dir", lambda: user_data)
    runner = CliRunner()
    with fake_daemon(system / "control.sock", LIVE) as requests:
        result = runner.invoke(main, ["status", "--json"])
        assert result.exit_code == 0, result.output
        assert requests == ["status"]
        shown = json.loads(result.output)
        assert shown["socket"] == str(system / "control.sock")
        assert shown["data_dir"] == "/var/lib/contact-agent"
        # With an explicit data directory the system daemon is not asked.
        result = runner.invoke(main, ["--data-dir", str(user_data), "status", "--json"])
        assert result.exit_code == 0, result.output
        assert requests == ["status"]
        assert json.loads(result.output)["socket"] is None


def test_status_skips_a_system_socket_this_user_may_not_use(
    short_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent.control import client_socket_paths

    system = short_dir / "run"
    system.mkdir()
    monkeypatch.setattr("agent.control.SYSTEM_RUNTIME_DIR", system)
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    paths = client_socket_paths(short_dir / "d", {}, prefer_system=True)
    assert system / "control.sock" not in paths


def test_keys_derive_imports_neither_the_export_reader_nor_the_store() -> None:
    output, seen = probe(
        ["keys", "derive", "--tek", "75c734c6dd1a782de7a965da5eb93125", "--start", "1",
         "--count", "2"]
    )  # fmt: skip
    assert seen["code"] == 0 and output.startswith("RPIK ")
    unwanted = ("numpy", "aiohttp", "aiosqlite", "agent.pipeline", "agent.lab.demo", "agent.store")
    loaded = [m for m in seen["modules"] if any(m == u or m.startswith(u + ".") for u in unwanted)]
    assert loaded == []


def test_report_does_not_load_the_test_key_server(tmp_path: Path) -> None:
    """Product commands never import the lab tools; only `keyserver` does."""
    _, seen = probe(["--data-dir", str(tmp_path / "data"), "report", "--help"])
    assert seen["code"] == 0
    assert not [m for m in seen["modules"] if m.startswith("agent.lab")]
