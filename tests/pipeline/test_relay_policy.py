"""Relay guard reasons through the whole cycle: stored sightings -> windows -> notification,
with the ``flag`` and ``exclude`` policies, and the time-shift mark at match time."""

from __future__ import annotations

import functools
from dataclasses import replace

import pytest

from agent.config import RiskConfig
from agent.export import PublicKeyRing, public_key_pem
from agent.pipeline import ExportInput, match_exports
from agent.relayguard import Reason
from agent.store import Store
from tests.pipeline.conftest import CONTACT, NOW, Authority, Notifications, Radio, new_key


def _ring(authority: Authority) -> functools.partial[PublicKeyRing]:
    return functools.partial(
        PublicKeyRing.from_pem, public_key_pem(authority.signing_key), "310", "v1"
    )


async def _heard(store: Store, *, relay: int = 0, drift: int = 0) -> bytes:
    key = new_key()
    radio = Radio()
    radio.heard(key.key_data, CONTACT, scans=4, drift=drift)
    if relay:  # the scanner's guard noticed something on the second scan
        radio.sightings[1] = replace(radio.sightings[1], relay=relay)
    await radio.store_into(store)
    return key.key_data


@pytest.mark.parametrize("policy", ["flag", "exclude"])
async def test_a_flagged_window_is_shown_or_left_out_by_policy(
    store: Store, authority: Authority, notifications: Notifications, policy: str
) -> None:
    tek = await _heard(store, relay=int(Reason.MULTI_RPI))
    key = replace(new_key(), key_data=tek)
    risk = RiskConfig(relay_policy=policy)
    report = await match_exports(
        store,
        [ExportInput("1.zip", authority.export([key]))],
        ring=_ring(authority),
        risk=risk,
        now=NOW,
        notifier=notifications,
    )
    (window,) = report.windows
    assert window.relay == Reason.MULTI_RPI
    assert report.counters["relay_multi_rpi_windows"] == 1
    (stored,) = await store.exposure_windows()
    assert stored.relay == Reason.MULTI_RPI
    if policy == "flag":
        assert window.score > 0
        (exposure,) = notifications.calls[0]
        assert [w.relay for w in exposure.windows] == [Reason.MULTI_RPI]
    else:
        assert window.score == 0 and notifications.calls == []


@pytest.mark.parametrize(("drift", "shifted"), [(0, False), (-2, False), (-5, True), (6, True)])
async def test_an_rpi_heard_far_from_its_interval_is_time_shifted(
    store: Store, authority: Authority, drift: int, shifted: bool
) -> None:
    """drift: intervals between the RPI's own interval and when it was heard (a replay an
    hour later is -6); within +-2 h it still matches, beyond 30 min it is marked."""
    tek = await _heard(store, drift=drift)
    key = replace(new_key(), key_data=tek)
    report = await match_exports(
        store,
        [ExportInput("1.zip", authority.export([key]))],
        ring=_ring(authority),
        risk=RiskConfig(),
        now=NOW,
    )
    (window,) = report.windows
    assert window.relay == (Reason.TIME_SHIFTED if shifted else 0)
