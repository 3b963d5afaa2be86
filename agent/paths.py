"""Default locations of the data directory and the config file (README.md, "Command line")."""

from __future__ import annotations

import os
from pathlib import Path

SYSTEM_DATA_DIR = Path("/var/lib/contact-agent")
SYSTEM_CONFIG = Path("/etc/contact-agent/config.toml")


def _system_mode() -> bool:
    return os.geteuid() == 0 or "INVOCATION_ID" in os.environ


def default_data_dir() -> Path:
    """``CONTACT_AGENT_DATA_DIR``, else the system or XDG state location."""
    env = os.environ.get("CONTACT_AGENT_DATA_DIR")
    if env:
        return Path(env)
    if _system_mode():
        return SYSTEM_DATA_DIR
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "contact-agent"


def default_config_path() -> Path:
    """``CONTACT_AGENT_CONFIG``, else the system or XDG config location."""
    env = os.environ.get("CONTACT_AGENT_CONFIG")
    if env:
        return Path(env)
    if _system_mode():
        return SYSTEM_CONFIG
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "contact-agent" / "config.toml"


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) with mode 0700 and tighten an existing one."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path
