"""``contact-agent config check [FILE]``: the effective configuration and where it comes from."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import click

from agent.cli import CliContext, pass_cli
from agent.config import Config, config_value, parse_config, read_config_data, valid_keys
from agent.errors import ConfigError
from agent.jsonout import dumps


@click.group("config")
def config_group() -> None:
    """Check a configuration file and show where each setting comes from."""


def _toml(value: Any) -> str:
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = ", ".join(
            f"{f.name} = {_toml(getattr(value, f.name))}" for f in dataclasses.fields(value)
        )
        return "{ " + fields + " }"
    return dumps(value, ensure_ascii=False)


def effective_lines(config: Config, data: dict[str, Any], origin: str) -> list[str]:
    """Every setting as TOML, each with ``# from FILE`` or ``# default``."""
    lines: list[str] = []
    for section, keys in valid_keys().items():
        if "." in section:
            continue
        lines.append(f"[{section}]")
        table = data.get(section, {})
        for key in sorted(keys):
            value = config_value(config, section, key)
            where = f"from {origin}" if key in table else "default"
            lines.append(f"{key} = {_toml(value)}  # {where}")
        lines.append("")
    return lines


def useless_settings(config: Config) -> list[str]:
    """Settings with which the agent can never tell its user anything."""
    warnings = []
    if not config.keys.sources:
        warnings.append(
            "keys.sources is empty: no diagnosis keys are ever downloaded, so no one is "
            "ever notified; add your health authority's server, e.g.\n"
            '    [[keys.sources]]\n    kind = "index"\n'
            '    url = "https://keys.example.org/v1/index.txt"'
        )
    if not config.keys.public_keys:
        warnings.append(
            "keys.public_keys is empty: no export can be verified, so every download is "
            "refused; pin the health authority's signing key, e.g.\n"
            '    [[keys.public_keys]]\n    id = "310"\n    version = "v1"\n'
            '    pem_file = "/etc/contact-agent/ha-key.pem"'
        )
    if not config.notify.desktop and not config.notify.exec:
        warnings.append(
            "notify.desktop is false and notify.exec is empty: an exposure is only written "
            "to the journal, where no one may look; set desktop = true or add an exec hook"
        )
    return warnings


@config_group.command("check")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@pass_cli
def check(cli: CliContext, file: Path | None) -> None:
    """Validate FILE (default: the config in use), print every setting with its origin,
    and warn about settings that make the agent useless. Exit 78 when invalid."""
    path = file or cli.config_path
    if path.exists():
        data = read_config_data(path)
        origin = str(path)
    elif file is not None:
        raise ConfigError(f"config: {path} does not exist")
    else:
        data, origin = {}, "nowhere"
    config = parse_config(data)
    if origin == "nowhere":
        click.echo(f"# {path} does not exist: every setting is the default")
    else:
        click.echo(f"# {path}: valid")
    for line in effective_lines(config, data, origin):
        click.echo(line)
    for warning in useless_settings(config):
        click.echo(f"contact-agent: warning: {warning}", err=True)


COMMANDS = [config_group]
