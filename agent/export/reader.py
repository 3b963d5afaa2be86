"""Reading exports: the verifying reader (the only source of keys for matching) and the
unverified inspector used by ``keys show``.

Order of checks in :func:`read_verified_export`: container (exactly two entries, caps) ->
export.sig parsed -> header -> signature verified over the exact ``export.bin`` bytes ->
only then those same bytes parsed -> the export's signature infos and batch agree with
export.sig -> keys.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from types import MappingProxyType

from agent.constants import EXPORT_HEADER
from agent.errors import ExportFileError, SignatureError
from agent.export import export_pb2 as pb
from agent.export.container import open_export_zip
from agent.export.model import MAX_EXPORT_BYTES, ExportFile, SignatureInfo
from agent.export.parse import (
    check_consistency,
    check_header,
    header_fields,
    iter_rows,
    parse_export_bin,
    parse_export_sig,
    to_keys,
)
from agent.export.signature import PublicKeyRing, Signature, verify_signatures

_LOGGER = logging.getLogger(__name__)


def verified_message(
    zip_bytes: bytes, ring: PublicKeyRing, *, max_bytes: int = MAX_EXPORT_BYTES
) -> tuple[pb.TemporaryExposureKeyExport, Signature, bytes]:
    """The parsed ``export.bin`` of a file whose signature a pinned key verifies, the
    signature that verified, and the verified ``export.bin`` bytes themselves.

    Raises:
        ExportFileError: a bad container, header or protobuf.
        SignatureError: unsigned, unknown signer, invalid signature, inconsistent claims.
    """
    if bytes(zip_bytes[: len(EXPORT_HEADER)]) == EXPORT_HEADER:
        raise SignatureError(
            "this is a raw export.bin: it carries no signature; verify the export ZIP it "
            "came from"
        )
    entries = open_export_zip(zip_bytes, max_bytes=max_bytes)
    if entries.export_sig is None:  # open_export_zip requires it; keep the guard explicit
        raise SignatureError("export is unsigned: no export.sig")
    signatures = parse_export_sig(entries.export_sig)
    check_header(entries.export_bin)
    used = verify_signatures(entries.export_bin, signatures, ring)
    message = parse_export_bin(entries.export_bin)  # the very bytes just verified
    check_consistency(message, signatures, used)
    return message, used, entries.export_bin


def _export_file(
    zip_bytes: bytes,
    message: pb.TemporaryExposureKeyExport,
    *,
    signature_count: int,
    verified_by: SignatureInfo | None = None,
) -> ExportFile:
    dropped: Counter[str] = Counter()
    keys = to_keys(iter_rows(message.keys, dropped))
    revised = to_keys(iter_rows(message.revised_keys, dropped))
    if dropped:
        _LOGGER.info("export: dropped unrepresentable keys: %s", dict(dropped))
    return ExportFile(
        **header_fields(message),
        keys=keys,
        revised_keys=revised,
        sha256=hashlib.sha256(zip_bytes).digest(),
        verified=verified_by is not None,
        dropped=MappingProxyType(dict(dropped)),
        signature_count=signature_count,
        verified_by=verified_by,
    )


def read_verified_export(
    zip_bytes: bytes, ring: PublicKeyRing, *, max_bytes: int = MAX_EXPORT_BYTES
) -> ExportFile:
    """Verify and parse an export: the ONLY way to get keys for matching.

    Keys are returned as parsed (after the parse-level drops in ``dropped``); apply
    :func:`~agent.export.validation.validate_keys` with the current interval before use.

    Raises:
        ExportFileError: a bad container, header or protobuf.
        SignatureError: unsigned, unknown signer, invalid signature, inconsistent claims.
    """
    message, used, _ = verified_message(zip_bytes, ring, max_bytes=max_bytes)
    return _export_file(
        zip_bytes, message, signature_count=len(message.signature_infos), verified_by=used.info
    )


def inspect_export(zip_bytes: bytes, *, max_bytes: int = MAX_EXPORT_BYTES) -> ExportFile:
    """Parse an export WITHOUT verifying it, for ``keys show``; never use it for matching.

    The result has ``verified=False``. A missing or unreadable export.sig is tolerated
    (``signature_count`` is then 0) so that broken files can still be looked at. A raw
    ``export.bin`` (it starts with the ``EK Export v1`` header instead of a ZIP's
    ``PK``), as unpacked from an export or kept by other tools, is read as it is.
    """
    if bytes(zip_bytes[: len(EXPORT_HEADER)]) == EXPORT_HEADER:
        if len(zip_bytes) > max_bytes:
            raise ExportFileError(
                f"export.bin is {len(zip_bytes)} bytes, over the cap of {max_bytes}"
            )
        return _export_file(zip_bytes, parse_export_bin(bytes(zip_bytes)), signature_count=0)
    entries = open_export_zip(zip_bytes, max_bytes=max_bytes, require_signature=False)
    message = parse_export_bin(entries.export_bin)
    count = 0
    if entries.export_sig is not None:
        try:
            count = len(parse_export_sig(entries.export_sig))
        except SignatureError:
            count = 0
    return _export_file(zip_bytes, message, signature_count=count)


__all__ = ["ExportFileError", "inspect_export", "read_verified_export", "verified_message"]
