"""Text from a server (or from a file it listed), made safe to quote in a message or log.

A key or verification server chooses its error texts, reason phrases and file names. A
hostile one could put an identifier into the journal that way, or escape sequences, or a
wall of text. :func:`server_text` is the one place such text passes through before it
reaches a message: control and other non-printable characters go, whitespace collapses to
single spaces, every identifier-looking run that the one detector
:mod:`agent.identifiers` finds (hex of 16 digits or more, also split; base64-looking
runs of identifier length; bytes reprs; device addresses) becomes ``…``, and the result
is cut to a short length.
"""

from __future__ import annotations

from typing import Final

from agent.identifiers import elide_identifiers

ELIDED: Final = "…"
DEFAULT_LIMIT: Final = 60
"""Characters kept of a single server-supplied field (a reason, an error code)."""
MESSAGE_LIMIT: Final = 240
"""Characters kept of a whole message that quotes server text (a URL and a reason)."""


def server_text(value: object, limit: int = DEFAULT_LIMIT) -> str:
    """``value`` as one short printable line with identifier-like runs elided."""
    text = " ".join(str(value).split())
    text = "".join(c for c in text if c.isprintable())
    text = elide_identifiers(text, ELIDED)
    if len(text) > limit:
        text = text[: max(0, limit - 1)] + ELIDED
    return text
