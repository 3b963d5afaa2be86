"""The one backoff schedule, Retry-After against hostile values, and JSON without NaN."""

from __future__ import annotations

import json
import math
import random

import pytest

from agent.backoff import Backoff, Retries, http_date, retry_after
from agent.jsonout import dumps

NOW = 1_700_000_000.0
CAP = 86_400.0


def test_backoff_doubles_to_the_maximum_with_jitter() -> None:
    backoff = Backoff(2.0, 60.0, 0.2)
    assert [backoff.base(a) for a in range(7)] == [2, 4, 8, 16, 32, 60, 60]
    rng = random.Random(5)
    delays = [backoff.delay(3, rng) for _ in range(2000)]
    assert 16 * 0.8 <= min(delays) < 16 * 0.85 and 16 * 1.15 < max(delays) <= 16 * 1.2
    assert backoff.base(10**9) == 60.0  # no overflow, however many failures


@pytest.mark.parametrize(
    ("initial", "maximum", "jitter"),
    [(0, 1, 0.1), (2, 1, 0.1), (1, math.inf, 0.1), (1, math.nan, 0.1), (1, 2, 1.0)],
)
def test_backoff_refuses_nonsense(initial: float, maximum: float, jitter: float) -> None:
    with pytest.raises(ValueError):
        Backoff(initial, maximum, jitter)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", 120.0),
        ("  7 ", 7.0),
        ("0", 0.0),
        ("9" * 400, CAP),  # float("9" * 400) would be inf
        ("99999999999", CAP),
        ("000000000000000000000000000030", 30.0),
        ("1e999", None),
        ("-5", None),
        ("inf", None),
        ("nan", None),
        ("soon, maybe", None),
        ("", None),
        ("١٢٣", None),  # non-ASCII digits
        ("Fri, 31 Dec 9999 23:59:59 GMT", CAP),
        ("Mon, 01 Jan 1990 00:00:00 GMT", 0.0),  # in the past: now
        ("Wed, 15 Nov 2023 00:13:20 GMT", 7200.0),
        ("Tue, 14 Nov 2023 22:15:20", None),  # no zone
        ("x" * 10_000, None),
    ],
)
def test_retry_after_is_always_finite_and_capped(header: str, expected: float | None) -> None:
    value = retry_after(header, NOW, CAP)
    assert value == expected
    assert value is None or (math.isfinite(value) and 0 <= value <= CAP)


def test_http_date_of_hostile_values() -> None:
    assert http_date("Tue, 14 Nov 2023 22:13:20 GMT") == NOW
    for bad in ("", "yesterday", "Fri, 31 Dec 99999 23:59:59 GMT", "Sun, 00 Foo 0000 GMT"):
        assert http_date(bad) is None


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_json_refuses_non_finite_numbers(bad: float) -> None:
    for value in (bad, {"retry_after_seconds": bad}, [1, {"x": [bad]}]):
        with pytest.raises(ValueError):
            dumps(value)
    assert json.loads(dumps({"ok": 1.5, "n": None})) == {"ok": 1.5, "n": None}


def test_no_json_dumps_bypasses_the_helper() -> None:
    """Every JSON the product writes goes through agent.jsonout.dumps."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "agent"
    lab = {"lab"}  # the test key server, demo and fake bluetoothd
    offenders = [
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if path.relative_to(root).parts[0] not in lab
        and path.name != "jsonout.py"
        and ("json.dumps(" in path.read_text() or "json.dump(" in path.read_text())
    ]
    assert offenders == []


def test_status_drops_non_finite_numbers_saved_by_an_older_version() -> None:
    from agent.daemon.status import _fetch_line, _json_state
    from agent.daemon.status_json import last_fetch_from_json
    from agent.daemon.status_model import KeyFetchReport

    saved = '{"at": 1.0, "ok": false, "retry_after_seconds": Infinity}'
    assert _json_state(saved) is None  # shown as "never", not a malformed answer
    assert last_fetch_from_json(_json_state(saved)) is None
    assert _fetch_line(KeyFetchReport(at=float("inf"), failed=("x",))).startswith("never")
    line = _fetch_line(KeyFetchReport(at=0, failed=(), warning="1 files refused"))
    assert line.endswith("warning: 1 files refused")


def test_status_shows_the_running_download() -> None:
    from agent.daemon.status import render
    from agent.daemon.status_json import status_from_json

    running = {"source": "index:https://k.example/i.txt", "file": "a/1.zip"}
    running |= {"file_bytes": 2_500_000, "cycle_bytes": 9_000_000}
    text = render(status_from_json({"daemon": {}, "fetch": {"running": running}}))
    assert "index:https://k.example/i.txt: a/1.zip, 2.5 MB" in text
    assert "(9.0 MB this cycle)" in text
    idle = status_from_json({"daemon": {}, "fetch": {"running": None}})
    assert "key fetch running" not in render(idle)


def test_retries_start_over_after_a_healthy_run_or_a_reset() -> None:
    retries = Retries(Backoff(1.0, 300.0, jitter=0.0), healthy_after=60.0)
    assert [retries.next_delay() for _ in range(4)] == [1.0, 2.0, 4.0, 8.0]
    retries.ran_for(59.0)  # not long enough: the next delay keeps growing
    assert retries.next_delay() == 16.0
    retries.ran_for(60.0)
    assert retries.next_delay() == 1.0
    retries.reset()
    assert retries.failures == 0
    never = Retries(Backoff(1.0, 4.0, jitter=0.0))
    never.ran_for(10_000.0)  # without healthy_after only reset starts over
    assert [never.next_delay() for _ in range(4)] == [1.0, 2.0, 4.0, 4.0]
