"""Loading and validating the TOML configuration of docs/daemon.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import Config, load_config
from agent.errors import ConfigError

FULL = """
[radio]
adapter = "hci1"
tx_power_dbm = -8
rssi_correction_db = 3
[clock]
require_sync = false
[keys]
sources = [{ kind = "index", url = "https://keys.example/v1/index.txt" },
           { kind = "cwa", url = "https://cwa.example", country = "DE" },
           { kind = "dir", path = "/var/cache/keys" }]
public_keys = [{ id = "310", version = "v1", pem_file = "/etc/contact-agent/310.pem" }]
fetch_interval_hours = 4
[risk]
attenuation_thresholds_db = [55, 63, 73]
attenuation_weights = [1.0, 1.0, 0.5, 0.0]
minimum_window_score = 0
notify_threshold_minutes = 15
[report]
verification_url = "http://127.0.0.1:8080"
publish_url = "https://keys.example/v1/publish"
api_key = "k"
health_authority_id = "kz.saqbol"
[notify]
desktop = false
exec = ["/usr/local/bin/buzz"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_missing_file_gives_defaults(tmp_path: Path) -> None:
    assert load_config(tmp_path / "absent.toml") == Config()
    assert load_config(None).clock.require_sync is True


def test_full_example_loads(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, FULL))
    assert cfg.radio.adapter == "hci1"
    assert cfg.radio.rssi_correction_db == 3
    assert cfg.clock.require_sync is False
    assert [s.kind for s in cfg.keys.sources] == ["index", "cwa", "dir"]
    assert cfg.keys.sources[1].country == "DE"
    assert cfg.keys.public_keys[0].id == "310"
    assert cfg.risk.attenuation_weights == (1.0, 1.0, 0.5, 0.0)
    assert cfg.risk.minimum_window_score == 0.0
    assert (cfg.risk.relay_policy, cfg.risk.time_shift_minutes) == ("flag", 30.0)
    assert cfg.report.verification_url == "http://127.0.0.1:8080"
    assert cfg.notify.exec == ("/usr/local/bin/buzz",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[radio\n", "not valid TOML"),
        ("[radio]\ntx_power_dbm = 'loud'\n", "radio.tx_power_dbm must be int"),
        ("[radio]\ntx_power_dbm = 30\n", "tx_power_dbm must be in -50..20"),
        ("[radio]\nscan_mode = 'sometimes'\n", "scan_mode must be"),
        ("[clock]\nrequire_sync = 'yes'\n", "clock.require_sync must be bool"),
        ("[keys]\nsources = [{ kind = 'ftp', url = 'x' }]\n", "kind must be 'index'"),
        ("[keys]\nsources = [{ kind = 'index' }]\n", "url is required"),
        ("[keys]\nsources = [{ kind = 'index', url = 'http://keys.example/i' }]\n", "https URL"),
        ("[keys]\nsources = [{ kind = 'cwa', url = 'https://x.example' }]\n", "country is"),
        ("[keys]\npublic_keys = [{ id = '310' }]\n", "needs pem_file, and version"),
        ("[keys]\nfetch_interval_hours = 0\n", "fetch_interval_hours must be > 0"),
        ("[risk]\nattenuation_thresholds_db = [70, 60, 50]\n", "3 increasing integers"),
        ("[risk]\nattenuation_weights = [1, 1, 1]\n", "list of 4 numbers"),
        ("[risk]\nattenuation_weights = [1, 1, 1, 3]\n", "must be in 0..2.5"),
        ("[risk]\nrelay_policy = 'drop'\n", "relay_policy must be 'flag' or 'exclude'"),
        ("[risk]\ntime_shift_minutes = 120\n", "time_shift_minutes must be > 0 and < 120"),
        ("[report]\npublish_url = 'http://keys.example/v1/publish'\n", "https URL"),
        ("[notify]\nexec = 'buzz'\n", "notify.exec must be a list"),
        ("[notify]\nlanguage = 'de'\n", "notify.language"),
        ("[sirens]\nloud = true\n", "unknown section"),
        ("radio = 3\n", r"\[radio\] must be a table"),
    ],
)
def test_bad_config_is_a_clear_config_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_config(write(tmp_path, text))
    assert info.value.exit_code == 78
    assert "\n" not in str(info.value).strip()


def test_http_is_accepted_for_loopback_only(tmp_path: Path) -> None:
    for url in ("http://127.0.0.1:9/x", "http://localhost/x", "http://[::1]:8/x"):
        cfg = load_config(write(tmp_path, f"[report]\npublish_url = '{url}'\n"))
        assert cfg.report.publish_url == url


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b"\xff\xfe[radio]")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)
