"""The one detector of identifier-looking runs in text (keys, RPIs, device addresses).

Both ways text leaves the agent use it: the log formatter (:func:`agent.logs.redact`)
and the quoting of server-supplied text (:func:`agent.servertext.server_text`); each
keeps its own replacement string. A run counts as an identifier when it is:

- a run of 16 or more hex digits (8 bytes), in either case, wherever it stands;
- hex split by ``-`` or ``:`` with 16 or more digits and a letter (a UUID, a full IPv6
  address, ``a0:a1:...``), except a Bluetooth SIG UUID: ``xxxxxxxx-0000-1000-8000-
  00805f9b34fb`` carries a 16- or 32-bit assigned number (the Exposure Notification
  service, the battery service), not an identifier;
- 16 or more hex pairs split by spaces, colons or dashes (a hex dump);
- a Bluetooth device address, six hex pairs split by ``:``, ``-`` or ``_`` (the last as
  in a BlueZ object path ``/org/bluez/hci0/dev_AA_BB_CC_DD_EE_FF``; the adapter path
  ``/org/bluez/hci0`` stays);
- a Python bytes repr ``b'...'`` of 16 or more characters, a list of 16 or more byte
  values ``[1, 254, ...]``;
- a base64-looking run of 20 or more characters (16 bytes are 22) that looks random.

"Looks random" is the one heuristic here. Padded base64 (``=`` or ``==`` ending a run
whose length is a multiple of 4) counts when it holds two upper-case letters or digits.
Otherwise the run is cut into segments at ``+ / _ -`` and each segment into words
(``Word``, ``word``, ``WORD``, ``123``): text has few, long words (``ExposureKeyExport``,
``DE/date/2020-07-01/hour/5``, ``X-Content-Type-Options``), base64 of random bytes
changes word every two characters. A run counts when it has, per 22 characters, at
least 3 word changes inside segments and 2 words of one or two characters; or 5 word
changes, 8 capitals and 5 small letters (random base64 is about 40 % capitals, text
rarely a third). Unpadded, a random 16-byte value is caught with a probability of about
99.93 % (padded: always); class names such as ``BluetoothAccessDeniedError`` or
``HTTPRequestURITooLong`` stay. Unpadded base64 of letters in one case only cannot be
told from a word; nothing writes identifiers that way.
"""

from __future__ import annotations

import re
from typing import Final

_HEX_RUN: Final = re.compile(r"[0-9A-Fa-f]{16,}")
_HEX_SPLIT: Final = re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]+(?:[-:][0-9A-Fa-f]+)+")
"""Checked by :func:`_split_hex_is_identifier` (a date or a time is split hex too)."""
_STRUCTURED: Final = re.compile(
    r"""
      (?:[0-9A-Fa-f]{2}[:\ -]){15,}[0-9A-Fa-f]{2}                   # hex dump
    | (?<![0-9A-Za-z])[0-9A-Fa-f]{2}(?P<sep>[:_-])
      (?:[0-9A-Fa-f]{2}(?P=sep)){4}[0-9A-Fa-f]{2}(?![0-9A-Za-z])     # device address
    | \bb(?P<q>['"])(?:\\.|(?!(?P=q)).){16,}?(?P=q)                # b'\x01...' / b"..."
    | \[(?:\s*\d{1,3}\s*,){15,}\s*\d{1,3}\s*\]                       # [1, 254, ...]
    """,
    re.VERBOSE,
)
_BLUETOOTH_UUID: Final = re.compile(r"[0-9A-Fa-f]{8}-0000-1000-8000-00805[Ff]9[Bb]34[Ff][Bb]")
_BASE64_RUN: Final = re.compile(
    r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{20,}(?:={1,2}(?![A-Za-z0-9+/=_-]))?"
)
_SEGMENT_SPLIT: Final = re.compile(r"[+/_-]")
_WORD: Final = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")


def _split_hex_is_identifier(run: str) -> bool:
    digits = sum(1 for c in run if c not in "-:")
    has_letter = any(c.isalpha() for c in run)
    return digits >= 16 and has_letter and not _BLUETOOTH_UUID.fullmatch(run)


def looks_random(run: str) -> bool:
    """Whether a base64-alphabet run looks like encoded random bytes (see the module)."""
    body = run.rstrip("=")
    if len(body) < 20:
        return False
    if run.endswith("=") and len(run) % 4 == 0:  # padded: the length says base64
        return sum(c.isupper() or c.isdigit() for c in body) >= 2
    changes = short = 0
    for segment in _SEGMENT_SPLIT.split(body):
        words = _WORD.findall(segment)
        if len(words) > 1:
            changes += len(words) - 1
            short += sum(len(w) <= 2 for w in words)
    size = len(body)
    if changes * 22 >= 3 * size and short * 11 >= size:
        return True
    upper = sum(c.isupper() for c in body)
    lower = sum(c.islower() for c in body)
    return changes * 22 >= 5 * size and upper * 22 >= 8 * size and lower * 22 >= 5 * size


def identifier_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of every identifier-looking run in ``text``, sorted, merged."""
    spans = [m.span() for m in _HEX_RUN.finditer(text)]
    spans += [m.span() for m in _HEX_SPLIT.finditer(text) if _split_hex_is_identifier(m[0])]
    spans += [m.span() for m in _STRUCTURED.finditer(text)]
    masked = list(text)
    kept = [m.span() for m in _BLUETOOTH_UUID.finditer(text)]
    for start, end in spans + kept:
        masked[start:end] = " " * (end - start)
    for match in _BASE64_RUN.finditer("".join(masked)):
        if looks_random(match.group(0)):
            spans.append(match.span())
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def elide_identifiers(text: str, replacement: str) -> str:
    """``text`` with every identifier-looking run replaced by ``replacement``."""
    parts: list[str] = []
    last = 0
    for start, end in identifier_spans(text):
        parts.extend((text[last:start], replacement))
        last = end
    parts.append(text[last:])
    return "".join(parts)
