"""The export ZIP: exactly one ``export.bin`` and one ``export.sig``, read in memory.

Everything is checked before a byte is decompressed (``docs/bad-input-coverage.md``, cases 20-23):
the entry count from the end-of-central-directory record, names (each exactly once),
encryption, compression method, declared sizes and the compression ratio. Entries are
taken from ``infolist()``, never by name, because ``zipfile`` accepts duplicate names and
``read(name)`` returns the last one: an attacker could get one copy verified and another
parsed. Nothing is ever extracted to disk.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from dataclasses import dataclass

from agent.constants import EXPORT_BIN_NAME, EXPORT_SIG_NAME
from agent.errors import ExportFileError
from agent.export.model import MAX_COMPRESSION_RATIO, MAX_SIG_BYTES, RATIO_CHECK_MIN_BYTES

_EOCD_SIGNATURE = b"PK\x05\x06"
_EOCD_SIZE = 22
_MAX_COMMENT = 0xFFFF
_LOCAL_HEADER_SIZE = 30
_ALLOWED_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
_MAX_ENTRIES = 2


@dataclass(frozen=True, slots=True)
class ExportEntries:
    """The two payloads of an export ZIP."""

    export_bin: bytes
    export_sig: bytes | None
    """None only when the caller allowed a missing signature (``keys show``)."""


def _declared_entry_count(data: bytes) -> int:
    """Entries announced by the end-of-central-directory record (before zipfile parses)."""
    tail = data[-(_EOCD_SIZE + _MAX_COMMENT) :]
    pos = tail.rfind(_EOCD_SIGNATURE)
    if pos < 0 or len(tail) - pos < _EOCD_SIZE:
        raise ExportFileError("not a ZIP file (an HTML error page or a truncated download?)")
    (total,) = struct.unpack_from("<H", tail, pos + 10)
    if total == 0xFFFF:
        raise ExportFileError("export ZIP uses ZIP64 entry counts, which exports never need")
    return int(total)


def _check_entry(info: zipfile.ZipInfo, max_bytes: int) -> None:
    name = info.filename
    if info.flag_bits & 0x1:
        raise ExportFileError(f"export ZIP entry {name} is encrypted")
    if info.compress_type not in _ALLOWED_METHODS:
        raise ExportFileError(
            f"export ZIP entry {name} uses compression method {info.compress_type}; "
            "only stored and deflate are allowed"
        )
    cap = max_bytes if name == EXPORT_BIN_NAME else MAX_SIG_BYTES
    if info.file_size > cap:
        raise ExportFileError(
            f"export ZIP entry {name} declares {info.file_size} bytes, over the cap of {cap}"
        )
    if info.file_size > max(
        RATIO_CHECK_MIN_BYTES, MAX_COMPRESSION_RATIO * max(info.compress_size, 1)
    ):
        raise ExportFileError(
            f"export ZIP entry {name} would expand {info.file_size} / {info.compress_size} "
            f"bytes, more than {MAX_COMPRESSION_RATIO}:1 (zip bomb?)"
        )


def _check_no_overlap(infos: list[zipfile.ZipInfo], total: int) -> None:
    """Entries must occupy disjoint byte ranges (no 'overlapping entry' bombs)."""
    spans = sorted(
        (
            i.header_offset,
            i.header_offset + _LOCAL_HEADER_SIZE + len(i.orig_filename.encode()) + i.compress_size,
        )
        for i in infos
    )
    end = 0
    for start, stop in spans:
        if start < end or stop > total:
            raise ExportFileError("export ZIP entries overlap or run past the end of the file")
        end = stop


def _read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    with archive.open(info) as stream:
        data = stream.read(info.file_size + 1)
    if len(data) != info.file_size:
        raise ExportFileError(f"export ZIP entry {info.filename} has the wrong size")
    return data


def open_export_zip(
    zip_bytes: bytes, *, max_bytes: int, require_signature: bool = True
) -> ExportEntries:
    """Check the container and return the bytes of ``export.bin`` and ``export.sig``.

    Raises:
        ExportFileError: anything but a clean two-entry ZIP within the size caps.
    """
    if not isinstance(zip_bytes, bytes | bytearray | memoryview):
        raise ExportFileError(f"export must be bytes, got {type(zip_bytes).__name__}")
    data = bytes(zip_bytes)
    if len(data) > max_bytes:
        raise ExportFileError(f"export file is {len(data)} bytes, over the cap of {max_bytes}")
    if not data.startswith(b"PK\x03\x04"):
        raise ExportFileError("not a ZIP file (an HTML error page or a truncated download?)")
    count = _declared_entry_count(data)
    if count > _MAX_ENTRIES:
        raise ExportFileError(
            f"export ZIP has {count} entries; expected exactly {EXPORT_BIN_NAME} "
            f"and {EXPORT_SIG_NAME}"
        )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            found: dict[str, zipfile.ZipInfo] = {}
            for info in infos:
                if info.filename not in (EXPORT_BIN_NAME, EXPORT_SIG_NAME):
                    raise ExportFileError(
                        f"export ZIP contains an unexpected entry {info.filename[:64]!r}"
                    )
                if info.filename in found:
                    raise ExportFileError(f"export ZIP contains {info.filename} twice")
                found[info.filename] = info
            if EXPORT_BIN_NAME not in found:
                raise ExportFileError(f"export ZIP has no {EXPORT_BIN_NAME}")
            if require_signature and EXPORT_SIG_NAME not in found:
                raise ExportFileError(f"export ZIP has no {EXPORT_SIG_NAME} (unsigned export)")
            for info in infos:
                _check_entry(info, max_bytes)
            _check_no_overlap(infos, len(data))
            export_bin = _read_entry(archive, found[EXPORT_BIN_NAME])
            sig_info = found.get(EXPORT_SIG_NAME)
            export_sig = _read_entry(archive, sig_info) if sig_info is not None else None
    except ExportFileError:
        raise
    except zipfile.BadZipFile as exc:
        raise ExportFileError(f"export ZIP is corrupt: {exc}") from None
    except (zlib.error, EOFError, OSError, ValueError, NotImplementedError, RuntimeError) as exc:
        raise ExportFileError(
            f"export ZIP cannot be decompressed: {type(exc).__name__}: {exc}"
        ) from None
    except (struct.error, KeyError, IndexError, OverflowError) as exc:
        raise ExportFileError(f"export ZIP is malformed: {type(exc).__name__}") from None
    return ExportEntries(export_bin=export_bin, export_sig=export_sig)
