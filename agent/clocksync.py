"""Is the system clock synchronised? The signals of Appendix A (threats doc).

systemd-timesyncd touches ``/run/systemd/timesync/synchronized`` once the clock has been
synchronised since boot. The daemon may also ask ``org.freedesktop.timedate1`` for
``NTPSynchronized``; this module holds the file-based probe used everywhere.
"""

from __future__ import annotations

import os
from pathlib import Path

SYNC_MARKER = Path("/run/systemd/timesync/synchronized")


def marker_synchronized(marker: Path | None = None) -> bool:
    """True when systemd's synchronisation marker exists.

    ``CONTACT_AGENT_SYNC_MARKER`` overrides the marker path (tests, other NTP daemons).
    """
    override = os.environ.get("CONTACT_AGENT_SYNC_MARKER")
    path = marker or (Path(override) if override else SYNC_MARKER)
    return path.exists()
