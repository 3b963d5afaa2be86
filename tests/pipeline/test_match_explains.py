"""``contact-agent match`` explains its count and looks at the file before the clock."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from tests.pipeline.conftest import Authority, new_key
from tests.pipeline.test_cli import (
    CONTACT,
    TODAY,
    YESTERDAY,
    _config,
    _export,
    _match,
    heard,  # noqa: F401  (the fixture)
)


async def test_not_a_zip_is_reported_before_the_clock(
    tmp_path: Path, authority: Authority, heard: tuple[Path, list]  # noqa: F811
) -> None:
    data, _ = heard
    page = tmp_path / "notazip.zip"
    page.write_text("<html>Service Unavailable</html>")
    config = _config(tmp_path, authority, sync=True)  # the clock is not trusted here
    code, out, err = await _match(data, config, authority, str(page))
    assert code == 1 and out == ""
    assert err.strip().splitlines() == [
        "contact-agent: notazip.zip: not a ZIP file (an HTML error page or a truncated "
        "download?)"
    ]


async def test_match_says_why_keys_did_not_match(
    tmp_path: Path, authority: Authority, heard: tuple[Path, list]  # noqa: F811
) -> None:
    """Too old for the rules, outside every sighting's window, or matched: each counted,
    with the date range of the stored sightings."""
    data, keys = heard
    old = [new_key(day=TODAY - 20 * 144) for _ in range(3)]
    unseen = [new_key(day=YESTERDAY - 5 * 144) for _ in range(4)]
    export = tmp_path / "keys.zip"
    export.write_bytes(_export(authority, [*keys, *old, *unseen]))
    code, out, err = await _match(data, _config(tmp_path, authority), authority, str(export))
    assert code == 0, err
    assert "keys: 6 checked, 2 matched" in out
    assert "  3 keys dropped by the rules: rolling start older than 15 days" in out
    assert "  4 keys checked but outside the time window of every sighting" in out
    assert "none of their identifiers was heard" not in out  # every other key matched
    first = dt.datetime.fromtimestamp(CONTACT, dt.UTC).strftime("%Y-%m-%d")
    assert f"sightings: from {first} " in out


async def test_match_without_sightings_says_so(tmp_path: Path, authority: Authority) -> None:
    export = tmp_path / "keys.zip"
    export.write_bytes(_export(authority, [new_key(day=YESTERDAY)]))
    data = tmp_path / "empty"
    code, out, err = await _match(data, _config(tmp_path, authority), authority, str(export))
    assert code == 0, err
    assert "keys: 1 checked, 0 matched" in out
    assert "sightings: none stored in the last 14 days, so no key can match" in out


async def test_google_sample_says_its_keys_are_too_old(tmp_path: Path) -> None:
    """The real Google sample (140 verified keys from 2020): no longer `0 checked` and
    nothing else, but why."""
    from tests.export.test_google_sample import GOOGLE_TEST_KEY_310_V1, KEY_COUNT
    from tests.pipeline.test_cli import _run
    from tests.shared import shared_path

    sample = shared_path("testdata/google-sample-diagnosis-key-file.zip")
    key = tmp_path / "google-310-v1.b64"
    key.write_text(GOOGLE_TEST_KEY_310_V1 + "\n")
    config = tmp_path / "config.toml"
    config.write_text("[clock]\nrequire_sync = false\n")
    code, out, err = await _run(
        "--data-dir", str(tmp_path / "data"), "--config", str(config),
        "match", str(sample), "--public-key", str(key),
    )  # fmt: skip
    assert code == 0, err
    assert "keys: 0 checked, 0 matched" in out
    assert f"  {KEY_COUNT} keys dropped by the rules: rolling start older than 15 days" in out
