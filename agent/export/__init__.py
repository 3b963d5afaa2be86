"""Diagnosis-key exports (the GAEN export format): read and verify, validate keys, write.

Keys come as one column type, :class:`KeyArrays`. Matching reads exports only through
:func:`read_export_keys` (verify, parse, validate: the usable keys of one file), which
uses :func:`read_verified_export_arrays`; :func:`read_verified_export` gives the same
keys as objects (tests, field tools). All three verify the signature against pinned
keys first. :func:`read_export` is for ``keys show``: the keys as columns, verified
against pinned keys or, without them, not (:func:`inspect_export` is the same as objects,
``verified=False``).
"""

from __future__ import annotations

from agent.export.arrays import read_verified_export_arrays
from agent.export.columns import KeyArrays
from agent.export.model import (
    MAX_EXPORT_BYTES,
    ExportArrays,
    ExportFile,
    ExportHeader,
    SignatureInfo,
)
from agent.export.reader import (
    ParsedExport,
    ReadExport,
    inspect_export,
    read_export,
    read_export_keys,
    read_verified_export,
)
from agent.export.signature import PublicKeyRing, load_public_key
from agent.export.validation import validate_arrays, validate_keys
from agent.export.writer import (
    build_export_bin,
    build_export_sig,
    generate_signing_key,
    load_signing_key,
    private_key_pem,
    public_key_pem,
    write_export,
    write_key_files,
    zip_entries,
)

__all__ = [
    "MAX_EXPORT_BYTES",
    "ExportArrays",
    "ExportFile",
    "ExportHeader",
    "KeyArrays",
    "ParsedExport",
    "PublicKeyRing",
    "ReadExport",
    "SignatureInfo",
    "build_export_bin",
    "build_export_sig",
    "generate_signing_key",
    "inspect_export",
    "load_public_key",
    "load_signing_key",
    "private_key_pem",
    "public_key_pem",
    "read_export",
    "read_export_keys",
    "read_verified_export",
    "read_verified_export_arrays",
    "validate_arrays",
    "validate_keys",
    "write_export",
    "write_key_files",
    "zip_entries",
]
