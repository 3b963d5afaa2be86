"""Notification channels: a real private session bus, real hook processes."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

from agent.daemon.notify import Notice, Notifier, session_bus_address
from tests.daemon.buses import FakeNotifications, serve

DAY = 1_700_006_400  # 2023-11-15
NOTICE = Notice(day=DAY, minutes=25, windows=2, risk_level="high", days=(DAY - 86_400, DAY))


def _hook_script(tmp_path: Path, name: str, body: str) -> str:
    script = tmp_path / f"{name}.py"
    script.write_text(body)
    return f"{sys.executable} {script}"


async def test_desktop_and_hook_get_one_message_each(
    session_bus: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeNotifications()
    bus = await serve(
        session_bus, "org.freedesktop.Notifications", "/org/freedesktop/Notifications", fake
    )
    out = tmp_path / "hook.json"
    hook = _hook_script(
        tmp_path,
        "hook",
        f"import sys, pathlib; pathlib.Path({str(out)!r}).write_text(sys.stdin.read())",
    )
    notifier = Notifier(language="ru", hooks=[hook], session_bus=session_bus)
    with caplog.at_level(logging.INFO):
        results = await notifier.notify(NOTICE, now=DAY + 3600)
    bus.disconnect()
    assert results == {"journal": True, "desktop": True, "exec[0]": True}
    assert len(fake.calls) == 1
    call = fake.calls[0]
    assert call["app_name"] == "contact-agent"
    assert call["summary"] == "Возможный контакт"
    assert "примерно 25 минут." in call["body"]
    assert call["hints"] == {"urgency": 2}
    payload = json.loads(out.read_text())
    assert payload == {
        "event": "exposure",
        "time": DAY + 3600,
        "risk_level": "high",
        "day": "2023-11-15",
        "days": ["2023-11-14", "2023-11-15"],
        "minutes": 25,
        "windows": 2,
        "possibly_relayed": False,
        "language": "ru",
        "title": "Возможный контакт",
        "body": call["body"],
    }
    journal = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(journal) == 1 and "Возможный контакт" in journal[0].getMessage()


@pytest.mark.slow
async def test_failing_channels_do_not_stop_the_others(
    tmp_path: Path, short_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "ok.json"
    good = _hook_script(
        tmp_path,
        "good",
        f"import sys, pathlib; pathlib.Path({str(out)!r}).write_text(sys.stdin.read())",
    )
    bad = _hook_script(tmp_path, "bad", "import sys; sys.stdin.read(); sys.exit(3)")
    slow = _hook_script(tmp_path, "slow", "import time; time.sleep(30)")
    notifier = Notifier(
        language="en",
        hooks=[bad, "/nonexistent/hook --flag", slow, good],
        session_bus=f"unix:path={short_dir}/no-bus-here",
        hook_timeout=1.0,
    )
    results = await notifier.notify(NOTICE)
    assert results == {
        "journal": True,
        "desktop": False,
        "exec[0]": False,
        "exec[1]": False,
        "exec[2]": False,
        "exec[3]": True,
    }
    assert json.loads(out.read_text())["title"] == "Possible exposure"
    messages = " | ".join(r.getMessage() for r in caplog.records)
    assert "exited with status 3" in messages
    assert "timed out" in messages


async def test_desktop_without_service_on_the_bus(session_bus: str) -> None:
    results = await Notifier(session_bus=session_bus).notify(NOTICE)
    assert results["desktop"] is False


async def test_desktop_disabled_by_config() -> None:
    results = await Notifier(desktop=False).notify(NOTICE)
    assert "desktop" not in results


def test_session_bus_discovery(tmp_path: Path) -> None:
    assert session_bus_address({"DBUS_SESSION_BUS_ADDRESS": "unix:path=/x"}) == "unix:path=/x"
    assert session_bus_address({"XDG_RUNTIME_DIR": str(tmp_path)}) is None
    assert session_bus_address({}) is None
