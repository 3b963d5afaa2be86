"""Default locations of the data directory and the config file (README.md, "Command line")."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from agent.errors import ConfigError

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


MAX_CHECK_DEPTH = 3
"""How deep :func:`ensure_private_dir` looks into subdirectories of the data directory."""


class UnsafePathError(ConfigError):
    """A data directory or file that is a symbolic link or belongs to another user (78).

    Refused before anything is created, changed, chowned or moved: a planted link or a
    directory another user controls must not make the agent (root included) write keys
    where that user can read them, or change the mode of a file the link points to.
    """


def _refuse(path: Path, info: os.stat_result | None, what: str) -> UnsafePathError:
    if info is not None and stat.S_ISLNK(info.st_mode):
        reason = "is a symbolic link"
    elif info is not None and info.st_uid != os.geteuid():
        reason = f"belongs to uid {info.st_uid}, not to this user (uid {os.geteuid()})"
    else:
        reason = "is not a directory"
    return UnsafePathError(
        f"refusing {what} {path}: it {reason}; nothing was changed "
        "(remove or fix it, or run as the user who owns it)"
    )


def check_private_entry(path: Path) -> None:
    """Refuse a symlink or another user's file at ``path`` (absent is fine)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode) or info.st_uid != os.geteuid():
        raise _refuse(path, info, "data file")


def _check_entries(dir_fd: int, path: Path, depth: int) -> None:
    """Refuse any symlink or foreign-owned entry below an open directory."""
    with os.scandir(dir_fd) as entries:
        for entry in entries:
            info = entry.stat(follow_symlinks=False)
            child = path / entry.name
            if stat.S_ISLNK(info.st_mode) or info.st_uid != os.geteuid():
                raise _refuse(child, info, "data file")
            if stat.S_ISDIR(info.st_mode) and depth < MAX_CHECK_DEPTH:
                fd = os.open(
                    entry.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd
                )
                try:
                    _check_entries(fd, child, depth + 1)
                finally:
                    os.close(fd)


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` with mode 0700 (parents as usual) or check and tighten it.

    The directory is opened without following a symlink and checked on the open
    descriptor: it must be a directory of this user, and nothing in it (the database,
    -wal, -shm, lock, socket, spool, quarantined copies) may be a symlink or belong to
    another user. Anything else raises :class:`UnsafePathError` before a change.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        try:
            info: os.stat_result | None = os.lstat(path)
        except OSError:
            info = None
        if info is None or stat.S_ISDIR(info.st_mode):
            raise
        raise _refuse(path, info, "data directory") from exc
    try:
        info = os.fstat(fd)
        if info.st_uid != os.geteuid():
            raise _refuse(path, info, "data directory")
        _check_entries(fd, path, 1)
        if stat.S_IMODE(info.st_mode) != 0o700:
            os.fchmod(fd, 0o700)
    finally:
        os.close(fd)
    return path
