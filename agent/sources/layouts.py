"""Pure parsing of key-server listings: Google's ``index.txt`` and the Corona-Warn-App
date and hour lists. Bytes in, names and URLs out; no I/O.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from urllib.parse import urljoin, urlsplit, urlunsplit

from agent.errors import NetworkError

_INDEX_LINE = re.compile(r"[A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*\.zip")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
CWA_API_PREFIX = "/version/v1"


def parse_index(body: bytes, *, max_entries: int) -> list[str]:
    """The lines of an ``index.txt``: relative ``.zip`` paths, oldest first.

    Raises:
        NetworkError: not ASCII, a line that is not a relative .zip path (an HTML page
            answered with 200, for example), or more than ``max_entries`` lines.
    """
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise NetworkError("index is not US-ASCII text (an HTML page or binary?)") from None
    lines = [line.strip() for line in text.splitlines()]
    names = [line for line in lines if line]
    if len(names) > max_entries:
        raise NetworkError(f"index lists {len(names)} files, over the cap of {max_entries}")
    for number, name in enumerate(names, start=1):
        if not _INDEX_LINE.fullmatch(name) or ".." in name.split("/"):
            raise NetworkError(
                f"index line {number} is not a relative .zip path: {name[:60]!r} "
                "(an HTML page instead of index.txt?)"
            )
    if len(set(names)) != len(names):
        raise NetworkError("index lists the same file more than once")
    return names


def index_file_url(index_url: str, name: str) -> str:
    """URL of an index line.

    Google's exporter and mirror (google/exposure-notifications-server
    ``internal/export``, ``internal/mirror``: each line is ``FilenameRoot`` joined with
    the file name) list each file by its path from the bucket root:
    ``v1/us/1590159600-1590246000-00001.zip`` in ``.../v1/us/index.txt``. When a line's
    folders are the last folders of the index's own path, the line is resolved against
    the root they leave (``.../v1/us`` minus ``v1/us``); any other line (a bare file
    name, or a sub-folder of the index's folder) against the index's folder.
    """
    parts = urlsplit(index_url)
    folders = [segment for segment in parts.path.split("/")[:-1] if segment]
    line_folders = name.split("/")[:-1]
    count = len(line_folders)
    if count and folders[-count:] == line_folders:
        root = "/" + "".join(f"{segment}/" for segment in folders[:-count])
        return urljoin(urlunsplit((parts.scheme, parts.netloc, root, "", "")), name)
    return urljoin(index_url, name)


def cwa_root(url: str, country: str) -> str:
    """``{server}/version/v1/diagnosis-keys/country/{CC}/date`` for a CWA base URL."""
    base = url.rstrip("/")
    if not base.endswith(CWA_API_PREFIX):
        base += CWA_API_PREFIX
    return f"{base}/diagnosis-keys/country/{country}/date"


def _json_list(body: bytes, what: str, max_entries: int) -> list[object]:
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise NetworkError(f"{what} is not JSON (an HTML page?)") from None
    if not isinstance(value, list):
        raise NetworkError(f"{what} is not a JSON list")
    if len(value) > max_entries:
        raise NetworkError(f"{what} has {len(value)} entries, over the cap of {max_entries}")
    return value


def parse_cwa_dates(body: bytes, *, max_entries: int) -> list[str]:
    """The CWA date list: ``["2020-07-01", ...]``, returned sorted oldest first."""
    dates: set[str] = set()
    for item in _json_list(body, "CWA date list", max_entries):
        if not isinstance(item, str) or not _DATE.fullmatch(item):
            raise NetworkError(f"CWA date list holds {str(item)[:30]!r}, not a YYYY-MM-DD date")
        try:
            dt.date.fromisoformat(item)
        except ValueError:
            raise NetworkError(f"CWA date list holds an impossible date {item!r}") from None
        dates.add(item)
    return sorted(dates)


def parse_cwa_hours(body: bytes) -> list[int]:
    """The CWA hour list of a date: ``[0, 1, ...]`` or ``["0", ...]`` (0..23), sorted."""
    hours: set[int] = set()
    for item in _json_list(body, "CWA hour list", 24):
        if isinstance(item, str) and item.isdigit() and len(item) <= 2:
            item = int(item)
        if isinstance(item, bool) or not isinstance(item, int) or not 0 <= item <= 23:
            raise NetworkError(f"CWA hour list holds {str(item)[:30]!r}, not an hour 0..23")
        hours.add(item)
    return sorted(hours)
