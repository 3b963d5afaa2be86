"""Diagnosis-key exports (gaen-spec §4): read and verify, validate keys, write.

The ONLY functions that return keys for matching are :func:`read_verified_export` and
its flat twin :func:`read_verified_export_arrays`; both verify the signature against
pinned keys first. :func:`inspect_export` is for ``keys show`` and marks its result
``verified=False``.
"""

from __future__ import annotations

from agent.export.arrays import read_verified_export_arrays
from agent.export.model import (
    MAX_EXPORT_BYTES,
    ExportArrays,
    ExportFile,
    ExportHeader,
    SignatureInfo,
)
from agent.export.reader import inspect_export, read_verified_export
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
    "PublicKeyRing",
    "SignatureInfo",
    "build_export_bin",
    "build_export_sig",
    "generate_signing_key",
    "inspect_export",
    "load_public_key",
    "load_signing_key",
    "private_key_pem",
    "public_key_pem",
    "read_verified_export",
    "read_verified_export_arrays",
    "validate_arrays",
    "validate_keys",
    "write_export",
    "write_key_files",
    "zip_entries",
]
