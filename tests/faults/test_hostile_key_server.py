"""The daemon against a hostile key server (scripts/hostile_keyserver.py, small sizes).

One daemon (child process, fake bluetoothd, ``NOTIFY_SOCKET`` with a 4 s watchdog) and
one server on 127.0.0.1 serving every scenario as its own source: junk files, a slow
drip, a stall, a 400-digit and an unreadable Retry-After, a signature flood, redirects
to file://, to plain http on the internet and in a circle, a forged file, and one good
file. Asserted, each by waiting for the event and never on a timing split:

- ``fetch --json`` prints strict JSON (no NaN/Infinity) and exits 1 with the reasons;
  the good source is still fetched and matched; no "internal error";
- every bad source fails alone with a clear reason; the Retry-After is capped;
- the watchdog kept being fed: no gap between two ``WATCHDOG=1`` (kernel receive
  times) over half of WatchdogSec, while drips and stalls ran into their deadlines;
- VmHWM under a cap well below the junk the server offered (24 x 3.9 MB);
- ``status`` answers, reports the refused files as a warning (``ok: false``);
- after a restart, no refused file is downloaded again; no spool file is left.
"""

from __future__ import annotations

from types import ModuleType

import pytest

from tests.faults.scripts import base as base
from tests.faults.scripts import harness as harness
from tests.faults.scripts import load_script, require_dbus_daemon

VM_HWM_CAP_MB = 160
"""The daemon idles near 75 MB; the junk offered is 94 MB. Held at once, it would not fit."""


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_daemon_survives_a_hostile_key_server(harness: ModuleType, base: object) -> None:
    require_dbus_daemon()
    hostile = load_script("hostile_keyserver")
    sizes = hostile.QUICK
    result = harness.run_in(base, "ca-h-", lambda b: hostile.run_scenarios(b, sizes))
    first = result["fetch"]
    assert result["fetch_exit"] == 1, result["fetch_stderr"]
    assert "internal error" not in result["fetch_stderr"]
    assert first is not None and first["ok"] is False
    assert first["files_processed"] == 1  # the good source, after all the bad ones
    failed = "\n".join(first["failed"])
    for reason in (
        "drip/f000.zip: http",
        "not complete within 4 s",
        "it asks to retry after 7200 s",  # 400 digits, capped at max_retry_after_seconds
        "garbage/index.txt: no listing within 4 s",
        "redirect to 'file:///etc/passwd' refused",
        "redirect to 'http://192.0.2.7/index.txt' refused",
        "more than 3 redirects",
    ):
        assert reason in failed, (reason, failed)
    rejected = "\n".join(first["rejected"])
    assert "forged/f000.zip: signature invalid" in rejected
    # too many signatures: refused by count before any ECDSA work (agent.export.signature)
    assert "sigflood/f000.zip: export.sig holds" in rejected
    assert "refused before checking any" in rejected
    assert "junk/f000.zip: not a ZIP file" in rejected
    assert first["deferred"] > 0 and "keys.max_cycle_bytes" in first["limit"]
    assert first["retry_after_seconds"] == 7200

    last = result["status_last_fetch"]
    assert last["ok"] is False and "refused" in last["warning"]
    assert result["status_fetch"]["next_in_seconds"] <= 7200 * 1.1

    gaps = result["watchdog_gaps"]
    assert gaps >= 3, "the watchdog was not fed"
    assert result["watchdog_max_gap_s"] <= sizes.watchdog_seconds / 2, result
    assert result["vm_hwm_mb"] < VM_HWM_CAP_MB, result["vm_hwm_mb"]

    assert result["spool_left"] == []
    refused = hostile.refused_names(first)
    assert not refused & set(result["downloaded_again"]), result["downloaded_again"]
    assert result["second_fetch"]["ok"] is False  # the bad sources are still bad
    assert result["internal_errors_in_log"] == 0
