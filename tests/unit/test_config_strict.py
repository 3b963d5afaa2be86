"""Strict configuration: misspelled keys are refused, `config check` shows the truth."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from agent.cli.config import effective_lines
from agent.config import Config, parse_config, valid_keys
from agent.errors import EXIT_CONFIG


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CONTACT_AGENT_CONFIG": "", **(env or {})},
    )


@pytest.mark.parametrize(
    ("text", "key", "section", "closest"),
    [
        ('[radio]\nadaptor = "hci0"\n', "adaptor", "[radio]", "adapter"),
        ("[clock]\nrequire_snyc = false\n", "require_snyc", "[clock]", "require_sync"),
        ("[risk]\nnotify_threshold_minute = 5\n", "notify_threshold_minute", "[risk]",
         "notify_threshold_minutes"),
        ('[[keys.sources]]\nkind = "dir"\npth = "/srv"\n', "pth", "keys.sources[0]", "path"),
        ("[radoi]\n", "radoi", "section", "radio"),
    ],
)  # fmt: skip
def test_misspelled_key_is_refused_with_the_closest_valid_key(
    tmp_path: Path, text: str, key: str, section: str, closest: str
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    for args in (["--config", str(path), "status"], ["config", "check", str(path)]):
        result = run("--data-dir", str(tmp_path / "data"), *args)
        assert result.returncode == EXIT_CONFIG, result.stderr
        line = result.stderr.strip()
        assert "\n" not in line
        assert repr(key) in line or f"[{key}]" in line
        assert section in line
        assert f"did you mean {closest!r}" in line


def test_an_explicit_config_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    data = str(tmp_path / "data")
    for result in (
        run("--data-dir", data, "--config", str(missing), "status"),
        run("--data-dir", data, "status", env={"CONTACT_AGENT_CONFIG": str(missing)}),
        run("config", "check", str(missing)),
    ):
        assert result.returncode == EXIT_CONFIG
        assert f"{missing} does not exist" in result.stderr


def test_every_dataclass_field_is_a_valid_key() -> None:
    """Keys come from the dataclasses, so a field added to one is accepted at once."""
    keys = valid_keys()
    for field in dataclasses.fields(Config):
        value = getattr(Config(), field.name)
        if dataclasses.is_dataclass(value):
            names = {f.name for f in dataclasses.fields(value)}
            assert keys[field.name] == names
    assert keys["keys.sources[]"] == {"kind", "url", "country", "path"}


def test_config_check_prints_every_setting_with_its_origin(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        '[radio]\nadapter = "hci1"\n\n[[keys.sources]]\nkind = "dir"\npath = "/srv/keys"\n'
        '\n[[keys.public_keys]]\nid = "310"\nversion = "v1"\npem_file = "k.pem"\n'
    )
    result = run("config", "check", str(path))
    assert result.returncode == 0, result.stderr
    assert f'adapter = "hci1"  # from {path}' in result.stdout
    assert "tx_power_dbm = -8  # default" in result.stdout
    # The printout is itself a valid config with the same effective values.
    assert parse_config(tomllib.loads(result.stdout)) == parse_config(
        tomllib.loads(path.read_text())
    )
    assert "warning" not in result.stderr


def test_config_check_of_defaults_round_trips_every_key(tmp_path: Path) -> None:
    result = run("config", "check", str(tmp_path / "absent.toml"))
    assert result.returncode == EXIT_CONFIG  # asked for by name, so it must exist
    data = tomllib.loads("\n".join(effective_lines(Config(), {}, "nowhere")))
    assert parse_config(data) == Config()
    for section, keys in valid_keys().items():
        if "." not in section:
            assert set(data[section]) == keys


def test_config_check_warns_about_a_useless_agent(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[notify]\ndesktop = false\nexec = []\n")
    result = run("config", "check", str(path))
    assert result.returncode == 0
    assert "keys.sources is empty" in result.stderr
    assert "[[keys.sources]]" in result.stderr  # shows how to add one
    assert "keys.public_keys is empty" in result.stderr
    assert "notify.desktop is false and notify.exec is empty" in result.stderr
