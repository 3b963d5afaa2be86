"""Daemon figures for ``scripts/bench``: CPU while idle, and ``status`` latency.

``contact-agent run`` is started as a process against the fake bluetoothd
(``python -m agent.lab.sim``, on its own private dbus-daemon) with consent given, so it
advertises and scans continuously but hears nobody. After it answers ``status``, its
CPU time (utime + stime from ``/proc/PID/stat``) over ``seconds`` of wall time is the
idle load, as a fraction of one core.

``contact-agent status`` against that daemon is timed ``rounds`` times, interleaved with
``python -c pass`` (interpreter start-up, the in-run reference); reported as the ratio
of the medians.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_refs import ROOT

START_TIMEOUT = 60.0


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` (``VmRSS``), MB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def _start_sim(base: Path) -> tuple[subprocess.Popen[str], str]:
    sim = subprocess.Popen(
        [sys.executable, "-m", "agent.lab.sim", "--adapters", "hci0"],
        stdout=subprocess.PIPE,
        stderr=(base / "sim.log").open("w"),
        text=True,
        cwd=ROOT,
    )
    assert sim.stdout is not None
    line = sim.stdout.readline().strip()  # export DBUS_SYSTEM_BUS_ADDRESS=...
    if "=" not in line:
        sim.kill()
        raise RuntimeError(f"the fake bluetoothd did not start: {(base / 'sim.log').read_text()}")
    return sim, line.split("=", 1)[1]


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def daemon(seconds: float, rounds: int) -> dict[str, Any]:
    """Idle CPU over ``seconds`` and ``status`` latency over ``rounds`` calls."""
    with tempfile.TemporaryDirectory(prefix="ca-bench-", dir="/tmp") as scratch:
        base = Path(scratch)
        (base / "config.toml").write_text(
            "[radio]\nadapter = 'hci0'\n[clock]\nrequire_sync = false\n"
        )
        sim, address = _start_sim(base)
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("INVOCATION_ID", "NOTIFY_SOCKET", "WATCHDOG_USEC", "RUNTIME_DIRECTORY")
        }
        env.update(
            DBUS_SYSTEM_BUS_ADDRESS=address,
            CONTACT_AGENT_DATA_DIR=str(base / "data"),
            CONTACT_AGENT_CONFIG=str(base / "config.toml"),
            CONTACT_AGENT_SYNC_MARKER=str(base / "no-sync-marker"),
            LANG="C.UTF-8",
        )
        env.pop("DBUS_SESSION_BUS_ADDRESS", None)
        agent: subprocess.Popen[str] | None = None
        try:
            if _cli(env, "enable").returncode != 0:
                raise RuntimeError("contact-agent enable failed")
            agent = subprocess.Popen(
                [sys.executable, "-m", "agent", "run"],
                env=env,
                stderr=(base / "daemon.log").open("w"),
                text=True,
                cwd=ROOT,
            )
            deadline = time.monotonic() + START_TIMEOUT
            while '"running": true' not in _cli(env, "status", "--json").stdout:
                if agent.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the daemon did not start: {(base / 'daemon.log').read_text()[-800:]}"
                    )
                time.sleep(0.2)
            time.sleep(2.0)  # settle: first scan, first advertisement
            cpu_before, wall_before = _cpu_seconds(agent.pid), time.monotonic()
            time.sleep(seconds)
            cpu = _cpu_seconds(agent.pid) - cpu_before
            wall = time.monotonic() - wall_before
            rss_mb = _rss_mb(agent.pid)
            status, startup = [], []
            for _ in range(rounds):
                began = time.perf_counter()
                answer = _cli(env, "status")
                status.append(time.perf_counter() - began)
                if answer.returncode != 0:
                    raise RuntimeError(f"status failed: {answer.stderr.strip()}")
                began = time.perf_counter()
                subprocess.run([sys.executable, "-c", "pass"], check=True)
                startup.append(time.perf_counter() - began)
        finally:
            if agent is not None:
                _stop(agent)
            _stop(sim)
    status_s, startup_s = statistics.median(status), statistics.median(startup)
    return {
        "idle_seconds": wall,
        "idle_cpu_seconds": cpu,
        "idle_cpu_fraction": cpu / wall,
        "idle_rss_mb": rss_mb,
        "status_rounds": rounds,
        "status_seconds": status_s,
        "python_startup_seconds": startup_s,
        "status_over_startup": status_s / startup_s,
    }
