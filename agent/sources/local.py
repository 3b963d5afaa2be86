"""A local directory of export ZIPs as a key source (``kind = "dir"``).

A file counts as new until it has been delivered with the same name, size and
modification time. File system work runs in a thread so the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

from agent.errors import NetworkError
from agent.sources.base import Candidate, FetchLimits

_CHUNK = 1024 * 1024


class LocalDirectory:
    def __init__(self, path: str, *, limits: FetchLimits) -> None:
        self._path = Path(path).expanduser()
        self._limits = limits
        self._identities: dict[str, str] = {}

    def identities(self) -> set[str]:
        """Identities (name:size:mtime) of the files seen by the last listing."""
        return set(self._identities.values())

    def identity(self, candidate: Candidate) -> str:
        return self._identities.get(candidate.name, candidate.name)

    def _scan(self) -> list[tuple[str, str]]:
        try:
            entries = list(os.scandir(self._path))
        except OSError as exc:
            raise NetworkError(
                f"key directory {self._path} cannot be listed: {exc.strerror}"
            ) from None
        found = []
        for entry in entries:
            if not entry.name.endswith(".zip"):
                continue
            try:
                info = entry.stat()
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                found.append((entry.name, f"{entry.name}:{info.st_size}:{info.st_mtime_ns}"))
        found.sort()
        return found

    async def candidates(self, done: set[str]) -> list[Candidate]:
        found = await asyncio.to_thread(self._scan)
        if len(found) > self._limits.max_local_files:
            found = found[-self._limits.max_local_files :]
        self._identities = dict(found)
        return [
            Candidate((self._path / name).resolve().as_uri(), name)
            for name, identity in found
            if identity not in done
        ]

    def _copy(self, name: str, target: Path, max_bytes: int) -> int:
        path = self._path / name
        size = 0
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
        try:
            with path.open("rb") as stream, os.fdopen(os.open(target, flags, 0o600), "wb") as out:
                if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
                    raise NetworkError(f"{path} is not a regular file")
                while chunk := stream.read(_CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise NetworkError(f"{path} is over the cap of {max_bytes} bytes")
                    out.write(chunk)
        except OSError as exc:
            raise NetworkError(f"{path} cannot be read: {exc.strerror}") from None
        return size

    async def copy(self, candidate: Candidate, target: Path, max_bytes: int) -> int:
        """Copy a candidate (at most ``max_bytes``) into the new file ``target``; its size."""
        if "/" in candidate.name or candidate.name in ("", ".", ".."):
            raise NetworkError(f"not a file name of this directory: {candidate.name!r}")
        return await asyncio.to_thread(self._copy, candidate.name, target, max_bytes)
