"""The TOML configuration (reference: ``docs/daemon.md``): frozen dataclasses, loaded and validated.

Every problem becomes a :class:`~agent.errors.ConfigError` naming the key and what is
expected, which the CLI turns into one line on stderr and exit status 78.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agent.errors import ConfigError


@dataclass(frozen=True, slots=True)
class RadioConfig:
    adapter: str = "hci0"
    tx_power_dbm: int = -8
    rssi_correction_db: int = 0
    scan_mode: str = "continuous"
    """``continuous`` (mains power) or ``duty`` (GAEN-like short scans)."""
    duty_scan_seconds: float = 4.0
    duty_period_seconds: float = 300.0
    passive: bool = True
    """Use passive scanning with or_patterns when BlueZ offers it."""


@dataclass(frozen=True, slots=True)
class ClockConfig:
    require_sync: bool = True


@dataclass(frozen=True, slots=True)
class KeySource:
    kind: str
    """``index`` (Google key server), ``cwa`` (Corona-Warn-App) or ``dir`` (local)."""
    url: str = ""
    country: str = ""
    path: str = ""


@dataclass(frozen=True, slots=True)
class PublicKeyConfig:
    id: str
    version: str
    pem_file: str
    pin: str = "id"
    """``id``: signatures must carry exactly this key id and version (either may be the
    empty string, as the Corona-Warn-App server's are); ``key``: the public key alone is
    pinned and any id and version it signs with is accepted."""


@dataclass(frozen=True, slots=True)
class KeysConfig:
    sources: tuple[KeySource, ...] = ()
    public_keys: tuple[PublicKeyConfig, ...] = ()
    fetch_interval_hours: float = 4.0
    max_download_bytes: int = 20 * 1024 * 1024
    max_cycle_bytes: int = 64 * 1024 * 1024
    """Bytes downloaded per fetch cycle, all sources together; the rest waits for the next
    cycle (64 MiB: about 3.5 M keys, whose matching stays within the memory budget)."""
    max_files_per_source: int = 39
    """Export files taken from one source per cycle (15 daily + 24 hourly)."""
    file_deadline_seconds: float = 300.0
    """One download, retries included (20 MiB over 100 KB/s takes 210 s)."""
    cycle_deadline_seconds: float = 1800.0
    """Every download of one cycle together."""
    max_retry_after_seconds: float = 86_400.0
    """A server's Retry-After is honoured up to this (24 h), never beyond."""


@dataclass(frozen=True, slots=True)
class RiskConfig:
    attenuation_thresholds_db: tuple[int, int, int] = (55, 63, 73)
    attenuation_weights: tuple[float, float, float, float] = (1.0, 1.0, 0.5, 0.0)
    minimum_window_score: float = 0.0
    notify_threshold_minutes: float = 15.0
    report_type_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 0.0, 0.0)
    """Weights for report types UNKNOWN..REVOKED (index = ReportType)."""
    infectiousness_weights: tuple[float, float, float] = (0.0, 1.0, 1.0)
    """Weights for infectiousness NONE, STANDARD, HIGH."""
    report_type_when_missing: int = 1
    infectiousness_when_dso_missing: int = 1
    relay_policy: str = "flag"
    """Windows the relay guard flagged: ``flag`` (scored, shown as possibly relayed) or
    ``exclude`` (left out of the risk score and notifications)."""
    time_shift_minutes: float = 30.0
    """A matched RPI heard further than this from its own interval is time-shifted."""


@dataclass(frozen=True, slots=True)
class ReportConfig:
    verification_url: str = ""
    publish_url: str = ""
    api_key: str = ""
    health_authority_id: str = ""
    chaff: bool = False
    padding_bytes: int = 2048


@dataclass(frozen=True, slots=True)
class NotifyConfig:
    desktop: bool = True
    exec: tuple[str, ...] = ()
    language: str = ""
    """``en``, ``ru`` or ``kk``; empty means from the locale."""


@dataclass(frozen=True, slots=True)
class Config:
    radio: RadioConfig = field(default_factory=RadioConfig)
    clock: ClockConfig = field(default_factory=ClockConfig)
    keys: KeysConfig = field(default_factory=KeysConfig)
    risk: RiskConfig = field(default_factory=RiskConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    metrics_textfile: str = ""
    """Path of a Prometheus textfile-collector file; empty disables it."""


def _table(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"config: [{name}] must be a table")
    return value


def _get(table: Mapping[str, Any], section: str, key: str, kind: type, default: Any) -> Any:
    if key not in table:
        return default
    value = table[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is int and isinstance(value, bool):
        raise ConfigError(f"config: {section}.{key} must be an integer, got {value!r}")
    if not isinstance(value, kind):
        raise ConfigError(f"config: {section}.{key} must be {kind.__name__}, got {value!r}")
    return value


def _numbers(table: Mapping[str, Any], section: str, key: str, count: int, default: Any) -> Any:
    if key not in table:
        return default
    value = table[key]
    if (
        not isinstance(value, list)
        or len(value) != count
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        raise ConfigError(f"config: {section}.{key} must be a list of {count} numbers")
    return tuple(value)


def _check_url(section: str, key: str, url: str) -> None:
    if not url:
        return
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname:
        host = parts.hostname
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if loopback:
            return
    raise ConfigError(
        f"config: {section}.{key} must be an https URL (http only for loopback), got {url!r}"
    )


def _radio(t: Mapping[str, Any]) -> RadioConfig:
    d = RadioConfig()
    cfg = RadioConfig(
        adapter=_get(t, "radio", "adapter", str, d.adapter),
        tx_power_dbm=_get(t, "radio", "tx_power_dbm", int, d.tx_power_dbm),
        rssi_correction_db=_get(t, "radio", "rssi_correction_db", int, d.rssi_correction_db),
        scan_mode=_get(t, "radio", "scan_mode", str, d.scan_mode),
        duty_scan_seconds=_get(t, "radio", "duty_scan_seconds", float, d.duty_scan_seconds),
        duty_period_seconds=_get(t, "radio", "duty_period_seconds", float, d.duty_period_seconds),
        passive=_get(t, "radio", "passive", bool, d.passive),
    )
    if not -50 <= cfg.tx_power_dbm <= 20:
        raise ConfigError("config: radio.tx_power_dbm must be in -50..20 (phones drop others)")
    if not -60 <= cfg.rssi_correction_db <= 60:
        raise ConfigError("config: radio.rssi_correction_db must be in -60..60")
    if cfg.scan_mode not in ("continuous", "duty"):
        raise ConfigError("config: radio.scan_mode must be 'continuous' or 'duty'")
    if not 0 < cfg.duty_scan_seconds < cfg.duty_period_seconds:
        raise ConfigError("config: radio.duty_scan_seconds must be > 0 and < duty_period_seconds")
    return cfg


def _keys(t: Mapping[str, Any]) -> KeysConfig:
    d = KeysConfig()
    sources = []
    raw_sources = t.get("sources", [])
    if not isinstance(raw_sources, list):
        raise ConfigError("config: keys.sources must be a list of tables")
    for i, s in enumerate(raw_sources):
        where = f"keys.sources[{i}]"
        if not isinstance(s, dict):
            raise ConfigError(f"config: {where} must be a table")
        src = KeySource(
            kind=_get(s, where, "kind", str, ""),
            url=_get(s, where, "url", str, ""),
            country=_get(s, where, "country", str, ""),
            path=_get(s, where, "path", str, ""),
        )
        if src.kind in ("index", "cwa"):
            if not src.url:
                raise ConfigError(f"config: {where}.url is required for kind {src.kind!r}")
            _check_url(where, "url", src.url)
            if src.kind == "cwa" and not src.country:
                raise ConfigError(f"config: {where}.country is required for kind 'cwa'")
        elif src.kind == "dir":
            if not src.path:
                raise ConfigError(f"config: {where}.path is required for kind 'dir'")
        else:
            raise ConfigError(f"config: {where}.kind must be 'index', 'cwa' or 'dir'")
        sources.append(src)
    public_keys = []
    raw_keys = t.get("public_keys", [])
    if not isinstance(raw_keys, list):
        raise ConfigError("config: keys.public_keys must be a list of tables")
    for i, k in enumerate(raw_keys):
        where = f"keys.public_keys[{i}]"
        if not isinstance(k, dict):
            raise ConfigError(f"config: {where} must be a table")
        pk = PublicKeyConfig(
            id=str(_get(k, where, "id", str, "")),
            version=_get(k, where, "version", str, ""),
            pem_file=_get(k, where, "pem_file", str, ""),
            pin=_get(k, where, "pin", str, "id"),
        )
        if pk.pin not in ("id", "key"):
            raise ConfigError(f"config: {where}.pin must be 'id' or 'key'")
        if not pk.pem_file or (pk.pin == "id" and "version" not in k):
            raise ConfigError(
                f'config: {where} needs pem_file, and version (may be "") unless pin = "key"'
            )
        public_keys.append(pk)
    cfg = KeysConfig(
        sources=tuple(sources),
        public_keys=tuple(public_keys),
        fetch_interval_hours=_get(t, "keys", "fetch_interval_hours", float, d.fetch_interval_hours),
        max_download_bytes=_get(t, "keys", "max_download_bytes", int, d.max_download_bytes),
        max_cycle_bytes=_get(t, "keys", "max_cycle_bytes", int, d.max_cycle_bytes),
        max_files_per_source=_get(t, "keys", "max_files_per_source", int, d.max_files_per_source),
        file_deadline_seconds=_get(
            t, "keys", "file_deadline_seconds", float, d.file_deadline_seconds
        ),
        cycle_deadline_seconds=_get(
            t, "keys", "cycle_deadline_seconds", float, d.cycle_deadline_seconds
        ),
        max_retry_after_seconds=_get(
            t, "keys", "max_retry_after_seconds", float, d.max_retry_after_seconds
        ),
    )
    if not 0 < cfg.fetch_interval_hours <= 24 * 366:
        raise ConfigError("config: keys.fetch_interval_hours must be > 0 (at most a year)")
    for name in ("max_download_bytes", "max_cycle_bytes", "max_files_per_source"):
        if getattr(cfg, name) <= 0:
            raise ConfigError(f"config: keys.{name} must be > 0")
    for name in ("file_deadline_seconds", "cycle_deadline_seconds", "max_retry_after_seconds"):
        if not 0 < getattr(cfg, name) <= 31_622_400:  # finite: nan and inf fail too
            raise ConfigError(f"config: keys.{name} must be > 0 seconds (at most a year)")
    return cfg


def _risk(t: Mapping[str, Any]) -> RiskConfig:
    d = RiskConfig()
    thresholds = _numbers(t, "risk", "attenuation_thresholds_db", 3, d.attenuation_thresholds_db)
    if not all(isinstance(v, int) and 0 <= v <= 255 for v in thresholds) or not (
        thresholds[0] < thresholds[1] < thresholds[2]
    ):
        raise ConfigError(
            "config: risk.attenuation_thresholds_db must be 3 increasing integers in 0..255"
        )
    weights = _numbers(t, "risk", "attenuation_weights", 4, d.attenuation_weights)
    rt_weights = _numbers(t, "risk", "report_type_weights", 6, d.report_type_weights)
    inf_weights = _numbers(t, "risk", "infectiousness_weights", 3, d.infectiousness_weights)
    for name, values in (
        ("attenuation_weights", weights),
        ("report_type_weights", rt_weights),
        ("infectiousness_weights", inf_weights),
    ):
        if not all(0 <= v <= 2.5 for v in values):
            raise ConfigError(f"config: risk.{name} must be in 0..2.5")
    cfg = RiskConfig(
        attenuation_thresholds_db=tuple(int(v) for v in thresholds),  # type: ignore[arg-type]
        attenuation_weights=tuple(float(v) for v in weights),  # type: ignore[arg-type]
        minimum_window_score=_get(t, "risk", "minimum_window_score", float, 0.0),
        notify_threshold_minutes=_get(t, "risk", "notify_threshold_minutes", float, 15.0),
        report_type_weights=tuple(float(v) for v in rt_weights),
        infectiousness_weights=tuple(float(v) for v in inf_weights),  # type: ignore[arg-type]
        report_type_when_missing=_get(t, "risk", "report_type_when_missing", int, 1),
        infectiousness_when_dso_missing=_get(t, "risk", "infectiousness_when_dso_missing", int, 1),
        relay_policy=_get(t, "risk", "relay_policy", str, d.relay_policy),
        time_shift_minutes=_get(t, "risk", "time_shift_minutes", float, d.time_shift_minutes),
    )
    if cfg.relay_policy not in ("flag", "exclude"):
        raise ConfigError("config: risk.relay_policy must be 'flag' or 'exclude'")
    if not 0 < cfg.time_shift_minutes < 120:
        raise ConfigError("config: risk.time_shift_minutes must be > 0 and < 120 (the 2 h rule)")
    if cfg.minimum_window_score < 0 or cfg.notify_threshold_minutes < 0:
        raise ConfigError("config: risk scores and minutes must not be negative")
    if not 1 <= cfg.report_type_when_missing <= 5:
        raise ConfigError("config: risk.report_type_when_missing must be 1..5 (not UNKNOWN)")
    if not 0 <= cfg.infectiousness_when_dso_missing <= 2:
        raise ConfigError("config: risk.infectiousness_when_dso_missing must be 0..2")
    return cfg


def _report(t: Mapping[str, Any]) -> ReportConfig:
    d = ReportConfig()
    cfg = ReportConfig(
        verification_url=_get(t, "report", "verification_url", str, ""),
        publish_url=_get(t, "report", "publish_url", str, ""),
        api_key=_get(t, "report", "api_key", str, ""),
        health_authority_id=_get(t, "report", "health_authority_id", str, ""),
        chaff=_get(t, "report", "chaff", bool, False),
        padding_bytes=_get(t, "report", "padding_bytes", int, d.padding_bytes),
    )
    _check_url("report", "verification_url", cfg.verification_url)
    _check_url("report", "publish_url", cfg.publish_url)
    if not 0 <= cfg.padding_bytes <= 32_768:
        raise ConfigError("config: report.padding_bytes must be in 0..32768")
    return cfg


def _notify(t: Mapping[str, Any]) -> NotifyConfig:
    exec_cmds = t.get("exec", [])
    if not isinstance(exec_cmds, list) or not all(isinstance(c, str) for c in exec_cmds):
        raise ConfigError("config: notify.exec must be a list of command strings")
    cfg = NotifyConfig(
        desktop=_get(t, "notify", "desktop", bool, True),
        exec=tuple(exec_cmds),
        language=_get(t, "notify", "language", str, ""),
    )
    if cfg.language not in ("", "en", "ru", "kk"):
        raise ConfigError("config: notify.language must be 'en', 'ru', 'kk' or empty")
    return cfg


# --- which keys exist: derived from the dataclasses above ----------------------------
_TOML_ONLY: dict[str, dict[str, str]] = {"metrics": {"textfile": "metrics_textfile"}}
"""Sections that are not a dataclass of their own: TOML key -> :class:`Config` field.
Every other section is a :class:`Config` field holding a dataclass, and its keys are that
dataclass's fields (a new field is a valid key at once)."""


def _table_classes(cls: type) -> dict[str, type]:
    """Fields of ``cls`` that hold a list of tables (``tuple[SomeDataclass, ...]``)."""
    nested: dict[str, type] = {}
    for name, hint in typing.get_type_hints(cls).items():
        args = typing.get_args(hint)
        inner = args[0] if typing.get_origin(hint) is tuple and args else None
        if isinstance(inner, type) and dataclasses.is_dataclass(inner):
            nested[name] = inner
    return nested


def _field_names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls))


def valid_keys() -> dict[str, frozenset[str]]:
    """Every section and its keys, as the parser accepts them, in file order; the keys
    of a list of tables such as ``keys.sources`` appear under ``keys.sources[]``."""
    sections: dict[str, frozenset[str]] = {}
    for name, cls in typing.get_type_hints(Config).items():
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            continue
        sections[name] = _field_names(cls)
        for key, inner in _table_classes(cls).items():
            sections[f"{name}.{key}[]"] = _field_names(inner)
    sections.update({name: frozenset(keys) for name, keys in _TOML_ONLY.items()})
    return sections


def config_value(config: Config, section: str, key: str) -> Any:
    """The effective value of ``section.key`` in ``config``."""
    if section in _TOML_ONLY:
        return getattr(config, _TOML_ONLY[section][key])
    return getattr(getattr(config, section), key)


def _closest(name: str, choices: frozenset[str]) -> str:
    close = difflib.get_close_matches(name, sorted(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_known_keys(data: Mapping[str, Any]) -> None:
    """Refuse a section or key the agent does not know, naming the closest valid one."""
    sections = valid_keys()
    top = frozenset(name for name in sections if "." not in name)
    for section, table in data.items():
        if section not in top:
            raise ConfigError(f"config: unknown section [{section}]{_closest(section, top)}")
        if not isinstance(table, dict):
            continue  # _table() names the type error
        for key, value in table.items():
            if key not in sections[section]:
                raise ConfigError(
                    f"config: unknown key {key!r} in [{section}]"
                    f"{_closest(key, sections[section])}"
                )
            inner = sections.get(f"{section}.{key}[]")
            if inner is None or not isinstance(value, list):
                continue
            for i, entry in enumerate(value):
                for entry_key in entry if isinstance(entry, dict) else ():
                    if entry_key not in inner:
                        raise ConfigError(
                            f"config: unknown key {entry_key!r} in {section}.{key}[{i}]"
                            f"{_closest(entry_key, inner)}"
                        )


def parse_config(data: Mapping[str, Any]) -> Config:
    """Build a validated :class:`Config` from parsed TOML."""
    check_known_keys(data)
    metrics = _table(data, "metrics")
    return Config(
        radio=_radio(_table(data, "radio")),
        clock=ClockConfig(
            require_sync=_get(_table(data, "clock"), "clock", "require_sync", bool, True)
        ),
        keys=_keys(_table(data, "keys")),
        risk=_risk(_table(data, "risk")),
        report=_report(_table(data, "report")),
        notify=_notify(_table(data, "notify")),
        metrics_textfile=_get(metrics, "metrics", "textfile", str, ""),
    )


def read_config_data(path: Path) -> dict[str, Any]:
    """The parsed TOML of ``path`` (ConfigError when unreadable or not TOML)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"config: cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config: {path} is not UTF-8 text") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config: {path} is not valid TOML: {exc}") from exc
    return data


def load_config(path: Path | None) -> Config:
    """Load the config file; a missing file means defaults (the CLI refuses a missing
    file that was asked for by name before it gets here)."""
    if path is None or not path.exists():
        return Config()
    return parse_config(read_config_data(path))
