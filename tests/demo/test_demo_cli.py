"""``contact-agent demo`` as a user runs it: real processes, real D-Bus, real HTTP.

The text run and the ``--json`` run start together (each mostly waits on its simulated
clock) and each runs in its own session with its own TMPDIR, so the tests can prove that
nothing is left behind: no process of the demo's process group, no temporary directory.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import require_dbus_daemon

ROOT = Path(__file__).resolve().parents[2]
STORY_LINE = "B was notified and C was not: the story held"
RUN_TIMEOUT = 100.0


@dataclass
class Run:
    proc: subprocess.Popen[str]
    tmpdir: Path
    out: str = ""
    err: str = ""

    def finish(self) -> Run:
        if self.proc.returncode is None:
            try:
                self.out, self.err = self.proc.communicate(timeout=RUN_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.out, self.err = self.proc.communicate()
                pytest.fail(f"the demo did not finish within {RUN_TIMEOUT:.0f} s:\n{self.out}")
        return self

    def assert_nothing_left(self) -> None:
        with pytest.raises(ProcessLookupError):  # no member of its process group survives
            os.killpg(self.proc.pid, 0)
        assert sorted(p.name for p in self.tmpdir.iterdir()) == []
        self.tmpdir.rmdir()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    cmdline = (entry / "cmdline").read_bytes()
                except OSError:
                    continue
                assert str(self.tmpdir).encode() not in cmdline, cmdline


def start(tmp: Path, *args: str, path: str | None = None) -> Run:
    # its own TMPDIR, short enough for the sockets the demo puts there
    tmpdir = Path(tempfile.mkdtemp(prefix="ca-demo-", dir="/tmp"))
    env = {**os.environ, "TMPDIR": str(tmpdir), "MPLCONFIGDIR": str(tmp / "mpl")}
    if path is not None:
        env["PATH"] = path
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "demo", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    return Run(proc, tmpdir)


def stop_all(started: list[Run]) -> None:
    for run in started:
        if run.proc.returncode is None:
            os.killpg(run.proc.pid, signal.SIGKILL)
            run.proc.communicate()
        shutil.rmtree(run.tmpdir, ignore_errors=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Run]]:
    """The text run (with a report) and the JSON run, started together."""
    require_dbus_daemon()
    base = tmp_path_factory.mktemp("demo")
    started = {
        "text": start(base / "text", "--report", str(base / "report")),
        "json": start(base / "json", "--json"),
    }
    try:
        yield started
    finally:
        stop_all(list(started.values()))


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., Run]]:
    """``launch(*args, path=None)``: one demo run, stopped and cleaned up after the test."""
    started: list[Run] = []

    def launch_one(*args: str, path: str | None = None) -> Run:
        started.append(start(tmp_path, *args, path=path))
        return started[-1]

    try:
        yield launch_one
    finally:
        stop_all(started)


@pytest.mark.slow
def test_the_story_holds_and_the_report_tells_it(
    runs: dict[str, Run], tmp_path_factory: pytest.TempPathFactory
) -> None:
    run = runs["text"].finish()
    assert run.proc.returncode == 0, run.out + run.err
    lines = run.out.splitlines()
    assert lines[-1].startswith(STORY_LINE), run.out
    for step in (
        "A reports a positive test",
        "ok: same-day release",
        "ok: B: index.txt read, 1 export(s) downloaded and verified, 1 key(s) matched",
        "ok: B was notified: On ",
        "C was not notified",
    ):
        assert any(step in line for line in lines), (step, run.out)
    report = Path(lines[-2].split("report: ", 1)[1].split(" (and", 1)[0])
    assert f"open {(report.parent / 'demo.html').resolve().as_uri()}" in lines[-2]
    text = report.read_text(encoding="utf-8")
    page = (report.parent / "demo.html").read_text(encoding="utf-8")
    assert '<a href="A-B/report.html">' in page and '<a href="A-C/report.html">' in page
    assert "## Links: what each agent heard" in text
    assert "### B: notified" in text and "### C: not notified" in text
    document = json.loads((report.parent / "demo.json").read_text(encoding="utf-8"))
    links = {(k["receiver"], k["transmitter"]): k for k in document["links"]}
    # B heard A close by (attenuation ~55 dB), C heard A far away behind walls (~83 dB)
    assert (
        links[("B", "A")]["attenuation_median_db"] < 63 < links[("C", "A")]["attenuation_median_db"]
    )
    b_windows = document["results"]["B"]["exposure_windows"]
    c_windows = document["results"]["C"]["exposure_windows"]
    assert sum(w["weighted_minutes"] for w in b_windows) >= 15
    assert c_windows and all(w["score"] == 0 for w in c_windows)
    for pair in ("A-B", "A-C"):
        assert (report.parent / pair / "report.md").is_file()
    run.assert_nothing_left()


@pytest.mark.slow
def test_json_says_who_was_notified(runs: dict[str, Run]) -> None:
    run = runs["json"].finish()
    assert run.proc.returncode == 0, run.out + run.err
    document = json.loads(run.out)
    assert document["ok"] is True
    assert document["notified"] == ["B"]
    assert document["not_notified"] == ["C"]
    assert document["failed_step"] is None and document["kept"] is None
    [notice] = document["results"]["B"]["notifications"]
    assert notice["event"] == "exposure" and notice["env_event"] == "exposure"
    assert notice["minutes"] >= 15
    assert document["results"]["C"]["notifications"] == []
    assert document["published_keys"] >= 1
    kinds = [e["kind"] for e in document["timeline"]]
    assert "fail" not in kinds and kinds.count("ok") >= 5
    run.assert_nothing_left()


@pytest.mark.slow
def test_a_failing_step_is_named_and_nothing_is_left(
    tmp_path: Path, launch: Callable[..., Run]
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()  # no dbus-daemon on this PATH
    run = launch("--json", path=str(empty)).finish()
    assert run.proc.returncode == 1
    document = json.loads(run.out)
    assert document["ok"] is False
    assert document["failed_step"] == "start a private D-Bus system bus and the fake bluetoothd"
    assert "dbus-daemon is not installed" in document["reason"]
    assert run.err.startswith(
        "contact-agent: demo step 'start a private D-Bus system bus and the fake bluetoothd' "
        "failed: "
    )
    run.assert_nothing_left()


@pytest.mark.slow
def test_keep_in_a_folder_that_cannot_be_created_fails_clearly(
    tmp_path: Path, launch: Callable[..., Run]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder", encoding="utf-8")
    run = launch("--keep", str(blocker / "sub")).finish()
    assert run.proc.returncode == 1
    assert "cannot create" in run.err and str(blocker / "sub") in run.err
    run.assert_nothing_left()


@pytest.mark.slow
def test_sigterm_mid_story_stops_everything(launch: Callable[..., Run]) -> None:
    require_dbus_daemon()
    run = launch()
    assert run.proc.stdout is not None
    seen = []
    for line in run.proc.stdout:  # wait until the agents are on air and B arrived
        seen.append(line)
        if "comes to A's table" in line:
            break
    run.proc.send_signal(signal.SIGTERM)
    run.finish()
    assert run.proc.returncode == 130, "".join(seen) + run.out + run.err
    assert "demo interrupted; everything it started was stopped" in run.err
    run.assert_nothing_left()
