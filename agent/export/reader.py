"""Reading exports, all through the one parser (:func:`~agent.export.arrays.parse_keys`):
:func:`read_export_keys` (the only source of keys for matching: verified, validated,
as columns), :func:`read_export` (``keys show``: keys as columns, verified or not) and
:func:`read_verified_export` / :func:`inspect_export` (the same with keys as objects).

Order of checks when verifying (:func:`~agent.export.arrays.verified_bin`): container
(exactly two entries, caps) -> export.sig parsed -> header -> signature verified over
the exact ``export.bin`` bytes -> only then those same bytes parsed -> the export's
signature infos and batch agree with export.sig -> keys.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType

from agent.constants import EXPORT_HEADER
from agent.errors import ExportFileError, SignatureError
from agent.export.arrays import (
    ParsedBin,
    parse_keys,
    read_verified_export_arrays,
    validate_columns,
    verified_bin,
)
from agent.export.columns import KeyArrays
from agent.export.container import open_export_zip
from agent.export.model import MAX_EXPORT_BYTES, ExportFile, SignatureInfo
from agent.export.parse import check_header, header_fields, parse_export_sig
from agent.export.signature import PublicKeyRing
from agent.memory import trim_heap

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, eq=False)
class ReadExport:
    """One export as the one parser gives it (keys as columns), with what ``keys show``
    prints besides; :class:`ExportFile` is the same with its keys as objects."""

    parsed: ParsedBin
    sha256: bytes
    """SHA-256 of the file's bytes."""
    signature_count: int
    """Signatures in export.sig (0 when absent or unreadable, or for a raw export.bin)."""
    verified_by: SignatureInfo | None
    """The signature a pinned key verified; None when nothing was verified."""


def read_export(
    zip_bytes: bytes, ring: PublicKeyRing | None, *, max_bytes: int = MAX_EXPORT_BYTES
) -> ReadExport:
    """Read an export with its keys as columns: verified against ``ring``
    (:func:`~agent.export.arrays.verified_bin`), or with ``ring`` None NOT verified (for
    ``keys show`` of a file without its key; never for matching).

    Unverified, a missing or unreadable export.sig is tolerated (``signature_count`` is
    then 0) so that broken files can still be looked at, and a raw ``export.bin`` (it
    starts with the ``EK Export v1`` header instead of a ZIP's ``PK``), as unpacked from
    an export or kept by other tools, is read as it is. Verifying a raw export.bin fails:
    it carries no signature.

    Raises:
        ExportFileError: a bad container, header or protobuf.
        SignatureError: (only with ``ring``) unsigned, unknown signer, invalid signature,
            inconsistent claims, a raw export.bin.
    """
    sha256 = hashlib.sha256(zip_bytes).digest()
    verified_by: SignatureInfo | None = None
    if ring is not None:
        parsed, used = verified_bin(zip_bytes, ring, max_bytes=max_bytes)
        count, verified_by = len(parsed.message.signature_infos), used.info
    elif bytes(zip_bytes[: len(EXPORT_HEADER)]) == EXPORT_HEADER:
        if len(zip_bytes) > max_bytes:
            raise ExportFileError(
                f"export.bin is {len(zip_bytes)} bytes, over the cap of {max_bytes}"
            )
        check_header(bytes(zip_bytes))
        parsed, count = parse_keys(bytes(zip_bytes), _unchecked), 0
    else:
        entries = open_export_zip(zip_bytes, max_bytes=max_bytes, require_signature=False)
        check_header(entries.export_bin)
        count = 0
        if entries.export_sig is not None:
            try:
                count = len(parse_export_sig(entries.export_sig))
            except SignatureError:
                count = 0
        export_bin = entries.export_bin
        del entries
        parsed = parse_keys(export_bin, _unchecked)
    if parsed.dropped:
        _LOGGER.info("export: dropped unrepresentable keys: %s", dict(parsed.dropped))
    return ReadExport(
        parsed=parsed, sha256=sha256, signature_count=count, verified_by=verified_by
    )


def _unchecked(message: object) -> None:
    """Nothing to check the header against: the file is not being verified."""
    del message


def _export_file(read: ReadExport) -> ExportFile:
    parsed = read.parsed
    return ExportFile(
        **header_fields(parsed.message),
        keys=tuple(parsed.keys),
        revised_keys=tuple(parsed.revised_keys),
        sha256=read.sha256,
        verified=read.verified_by is not None,
        dropped=MappingProxyType(dict(parsed.dropped)),
        signature_count=read.signature_count,
        verified_by=read.verified_by,
    )


def read_verified_export(
    zip_bytes: bytes, ring: PublicKeyRing, *, max_bytes: int = MAX_EXPORT_BYTES
) -> ExportFile:
    """Verify and parse an export (:func:`read_export` with a ring), keys as objects: for
    tests and the field tools; matching uses :func:`read_export_keys`.

    Keys are returned as parsed (after the parse-level drops in ``dropped``); apply
    :func:`~agent.export.validation.validate_keys` with the current interval before use.

    Raises:
        ExportFileError: a bad container, header or protobuf.
        SignatureError: unsigned, unknown signer, invalid signature, inconsistent claims.
    """
    return _export_file(read_export(zip_bytes, ring, max_bytes=max_bytes))


def inspect_export(zip_bytes: bytes, *, max_bytes: int = MAX_EXPORT_BYTES) -> ExportFile:
    """Parse an export WITHOUT verifying it (:func:`read_export` without a ring), keys as
    objects; never use it for matching. The result has ``verified=False``."""
    return _export_file(read_export(zip_bytes, None, max_bytes=max_bytes))


# --- The reader matching uses: verified, validated keys as columns ----------------------------


@dataclass(frozen=True, slots=True, eq=False)
class ParsedExport:
    """The usable keys of one verified export."""

    sha256: bytes
    keys: KeyArrays
    """Valid first-release keys, then the valid revised keys (revisions come later so
    that :meth:`KeyArrays.dedupe` lets them win)."""
    key_count: int
    """Keys and revised keys parsed from the file, before validation."""
    dropped: dict[str, int]
    """Keys dropped by parse or validation, by reason."""


def read_export_keys(
    zip_bytes: bytes,
    ring: PublicKeyRing | Callable[[], PublicKeyRing],
    now_interval: int,
    max_bytes: int = MAX_EXPORT_BYTES,
) -> ParsedExport:
    """Verify an export and return its usable keys (CPU-bound: run it in a thread).

    ``ring`` may also be a factory (``functools.partial(PublicKeyRing.from_pem, ...)``),
    called once here.

    Raises:
        ExportFileError, SignatureError: the file is rejected; no key of it is returned.
    """
    pinned = ring if isinstance(ring, PublicKeyRing) else ring()
    export = read_verified_export_arrays(
        zip_bytes, pinned, now_interval=now_interval, max_bytes=max_bytes
    )
    dropped = Counter(export.dropped)
    keys = export.keys if bool(export.valid.all()) else export.keys.select(export.valid)
    sha256, key_count = export.sha256, len(export) + len(export.revised_keys)
    revised = export.revised_keys
    del export
    parts = [keys.compact()]
    del keys
    if len(revised):
        dropped_revised: Counter[str] = Counter()
        ok = validate_columns(revised, now_interval, dropped_revised)  # group by group
        dropped.update({f"revised_{reason}": n for reason, n in dropped_revised.items()})
        if not ok.all():
            revised = revised.select(ok)
        parts.append(revised.compact())
    del revised
    parts = [part for part in parts if len(part)]  # an empty part would widen the types
    keys = KeyArrays.merge(parts)  # frees each part once copied
    trim_heap()  # the file, its export.bin and the parse temporaries are gone now
    return ParsedExport(
        sha256=sha256,
        keys=keys,
        key_count=key_count,
        dropped=dict(dropped),
    )


__all__ = [
    "ExportFileError",
    "ParsedExport",
    "ReadExport",
    "inspect_export",
    "read_export",
    "read_export_keys",
    "read_verified_export",
]
