"""The one export reader: verification, then the one parser into columns.

:func:`parse_keys` never builds a Python object per key, and does not parse the keys
with protobuf at all when their records have the regular layout servers write
(:func:`~agent.export.fastparse.split_export`, a private detail of it): protobuf then
only parses the header fields, and the keys and the revised keys (the same record
layout) are decoded by numpy in chunks straight into the result arrays. Memory stays
near the file itself plus 37 bytes per key (the full protobuf message of a 1 M-key file
costs ~250 MB). Any irregular file
is parsed by protobuf as a whole, which gives the same keys and the same errors.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

from agent.constants import EXPORT_HEADER, TEK_LENGTH, TEK_ROLLING_PERIOD
from agent.errors import ExportFileError, SignatureError
from agent.export import export_pb2 as pb
from agent.export.columns import KeyArrays
from agent.export.container import open_export_zip
from agent.export.fastparse import (
    KEYS_TAG,
    REVISED_TAG,
    Buffer,
    DecodedKeys,
    KeyRun,
    decode_key_run,
    split_export,
)
from agent.export.groups import row_groups
from agent.export.model import MAX_EXPORT_BYTES, MAX_KEYS_PER_FILE, TR_MAX, TR_MIN, ExportArrays
from agent.export.parse import (
    check_consistency,
    check_header,
    header_fields,
    iter_rows,
    parse_export_bin,
    parse_export_sig,
)
from agent.export.signature import PublicKeyRing, Signature, verify_signatures
from agent.export.validation import validate_arrays

_FIELDS = 5  # rolling_start, rolling_period, tr, report_type, dso
DECODE_CHUNK = 131_072
"""Key records decoded (or parsed by protobuf, for odd runs) per step: bounds temporaries."""


def _from_protobuf(
    message: pb.TemporaryExposureKeyExport, dropped: Counter[str], *, revised: bool = False
) -> DecodedKeys:
    rows = list(iter_rows(message.revised_keys if revised else message.keys, dropped))
    has_dso = np.fromiter((r[5] is not None for r in rows), dtype=bool, count=len(rows))
    numbers = np.array(
        [(r[1], r[2], r[3], r[4], 0 if r[5] is None else r[5]) for r in rows], dtype=np.int64
    ).reshape(len(rows), _FIELDS)
    columns = numbers.astype(np.int32).T
    key_data = np.frombuffer(b"".join([r[0] for r in rows]), dtype=np.uint8)
    return DecodedKeys(
        key_data=key_data.reshape(len(rows), 16),
        rolling_start=columns[0],
        rolling_period=columns[1],
        transmission_risk=columns[2],
        report_type=columns[3],
        days_since_onset=columns[4],
        has_days_since_onset=has_dso,
    )


def _parse_drops(columns: DecodedKeys, dropped: Counter[str]) -> DecodedKeys:
    """The drops and normalisation of :func:`~agent.export.parse.iter_rows`, vectorised."""
    period = columns.rolling_period
    bad_period = (period < 1) | (period > TEK_ROLLING_PERIOD)
    negative = ~bad_period & (columns.rolling_start < 0)
    if bad_period.any():
        dropped["rolling_period"] += int(np.count_nonzero(bad_period))
    if negative.any():
        dropped["rolling_start_negative"] += int(np.count_nonzero(negative))
    keep = ~(bad_period | negative)
    tr = columns.transmission_risk
    tr = np.where((tr >= TR_MIN) & (tr <= TR_MAX), tr, 0).astype(np.int32)

    def pick(values: npt.NDArray[np.int32]) -> npt.NDArray[np.int32]:
        return np.ascontiguousarray(values[keep])

    return DecodedKeys(
        key_data=np.ascontiguousarray(columns.key_data[keep]),
        rolling_start=pick(columns.rolling_start),
        rolling_period=pick(period),
        transmission_risk=pick(tr),
        report_type=pick(columns.report_type),
        days_since_onset=pick(columns.days_since_onset),
        has_days_since_onset=np.ascontiguousarray(columns.has_days_since_onset[keep]),
    )


class _Columns:
    """Result arrays for ``capacity`` keys, filled chunk by chunk (no concatenation)."""

    def __init__(self, capacity: int) -> None:
        self.size = 0
        self.key_data = np.empty((capacity, TEK_LENGTH), dtype=np.uint8)
        self.ints = {
            name: np.empty(capacity, dtype=np.int32)
            for name in (
                "rolling_start",
                "rolling_period",
                "transmission_risk",
                "report_type",
                "days_since_onset",
            )
        }
        self.has_dso = np.empty(capacity, dtype=bool)

    def append(self, part: DecodedKeys) -> None:
        stop = self.size + len(part.rolling_start)
        self.key_data[self.size : stop] = part.key_data
        for name, column in self.ints.items():
            column[self.size : stop] = getattr(part, name)
        self.has_dso[self.size : stop] = part.has_days_since_onset
        self.size = stop

    def result(self) -> DecodedKeys:
        n = self.size
        return DecodedKeys(
            key_data=self.key_data[:n],
            has_days_since_onset=self.has_dso[:n],
            **{name: column[:n] for name, column in self.ints.items()},
        )


def _decode_run(
    payload: Buffer, run: KeyRun, dropped: Counter[str], out: _Columns, tag: int = KEYS_TAG
) -> None:
    revised = tag == REVISED_TAG
    for first in range(0, run.count, DECODE_CHUNK):
        count = min(DECODE_CHUNK, run.count - first)
        start = run.start + first * run.stride
        records = payload[start : start + count * run.stride]
        fast = decode_key_run(records, count, tag)
        if fast is not None:
            out.append(_parse_drops(fast, dropped))
        else:  # an odd run: these records only, through protobuf
            message = parse_export_bin(EXPORT_HEADER + records)
            out.append(_from_protobuf(message, dropped, revised=revised))


def _check_key_cap(count: int) -> None:
    if count > MAX_KEYS_PER_FILE:
        raise ExportFileError(
            f"export.bin holds {count} keys, over the cap of {MAX_KEYS_PER_FILE}"
        )


_Parsed = tuple[pb.TemporaryExposureKeyExport, DecodedKeys, DecodedKeys, Counter[str]]
"""Header message, keys, revised keys, and the parse drops of both together."""


def _lean_parse(
    export_bin: bytes, verify: Callable[[pb.TemporaryExposureKeyExport], None]
) -> _Parsed | None:
    """Header message, keys, revised keys and parse drops of a regular export.bin, or
    None. Regular ``revised_keys`` records are decoded like the keys (a file of a million
    revisions is never a million protobuf objects); a few long ones stay in the header
    message and go through protobuf."""
    payload = memoryview(export_bin)[len(EXPORT_HEADER) :]  # no copy of the keys
    split = split_export(payload)
    if split is None:
        return None
    header = parse_export_bin(EXPORT_HEADER + split.header)  # header fields, odd revisions
    revised_count = sum(run.count for run in split.revised_runs)
    if header.revised_keys and revised_count:
        return None  # both record shapes: let protobuf keep their order
    _check_key_cap(split.key_count + revised_count + len(header.revised_keys))
    verify(header)
    dropped: Counter[str] = Counter()
    out = _Columns(split.key_count)
    for run in split.runs:
        _decode_run(payload, run, dropped, out)
    if header.revised_keys:
        revised = _from_protobuf(header, dropped, revised=True)
    else:
        revised_out = _Columns(revised_count)
        for run in split.revised_runs:
            _decode_run(payload, run, dropped, revised_out, REVISED_TAG)
        revised = revised_out.result()
    return header, out.result(), revised, dropped


def _full_parse(
    export_bin: bytes, verify: Callable[[pb.TemporaryExposureKeyExport], None]
) -> _Parsed:
    """The same from one protobuf message of the whole file (any valid layout)."""
    message = parse_export_bin(export_bin)
    verify(message)
    dropped: Counter[str] = Counter()
    fast = decode_key_run(export_bin[len(EXPORT_HEADER) :], len(message.keys))
    columns = _parse_drops(fast, dropped) if fast is not None else _from_protobuf(message, dropped)
    revised = _from_protobuf(message, dropped, revised=True)
    return message, columns, revised, dropped


def validate_columns(
    columns: KeyArrays, now_interval: int | None, dropped: Counter[str]
) -> npt.NDArray[np.bool_]:
    """:func:`~agent.export.validation.validate_arrays` over all keys, group by group.

    Every rule but ``duplicate`` looks at one key; a duplicate has the same key_data and
    rolling start as an earlier key, so :func:`row_groups` puts it in the same group,
    after that key.
    """
    starts, key_blob = columns.rolling_start, columns.key_data
    keys = np.frombuffer(key_blob, dtype=np.uint8).reshape(-1, TEK_LENGTH)
    valid = np.zeros(len(starts), dtype=bool)
    for rows in row_groups(keys, starts):
        whole = len(rows) == len(starts)
        ok, invalid = validate_arrays(
            key_blob if whole else keys[rows].tobytes(),
            starts if whole else starts[rows],
            columns.days_since_onset if whole else columns.days_since_onset[rows],
            columns.has_days_since_onset if whole else columns.has_days_since_onset[rows],
            now_interval,
        )
        valid[rows] = ok
        dropped.update(invalid)
    return valid


@dataclass(frozen=True, slots=True, eq=False)
class ParsedBin:
    """``export.bin`` parsed: what every reader of this package starts from."""

    message: pb.TemporaryExposureKeyExport
    """The header fields and revised keys (the keys themselves only on the protobuf path)."""
    keys: KeyArrays
    revised_keys: KeyArrays
    """The ``revised_keys`` records, decoded like the keys."""
    dropped: Counter[str]
    """Keys and revised keys that could not be represented (parse-level drops), by
    reason."""


def parse_keys(
    export_bin: bytes, check: Callable[[pb.TemporaryExposureKeyExport], None]
) -> ParsedBin:
    """The one parser of ``export.bin``: the fixed-layout decode when the key records
    have the regular layout, else protobuf, with the same keys and the same errors.
    ``check`` sees the parsed header before any key is decoded (signature consistency).
    """
    message, columns, revised, dropped = _lean_parse(export_bin, check) or _full_parse(
        export_bin, check
    )
    keys = _key_arrays(columns)
    del columns
    revised_keys = _key_arrays(revised)
    del revised
    return ParsedBin(message=message, keys=keys, revised_keys=revised_keys, dropped=dropped)


def _key_arrays(columns: DecodedKeys) -> KeyArrays:
    return KeyArrays(
        key_data=columns.key_data.tobytes(),
        rolling_start=np.ascontiguousarray(columns.rolling_start),
        rolling_period=np.ascontiguousarray(columns.rolling_period),
        transmission_risk=np.ascontiguousarray(columns.transmission_risk),
        report_type=np.ascontiguousarray(columns.report_type),
        days_since_onset=np.ascontiguousarray(columns.days_since_onset),
        has_days_since_onset=np.ascontiguousarray(columns.has_days_since_onset),
    )


def verified_bin(
    zip_bytes: bytes, ring: PublicKeyRing, *, max_bytes: int = MAX_EXPORT_BYTES
) -> tuple[ParsedBin, Signature]:
    """Container, export.sig, header, the signature over the exact export.bin bytes, and
    only then those bytes parsed (:func:`parse_keys`) with the export's claims about its
    signatures and batch checked against export.sig.

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

    def consistent(message: pb.TemporaryExposureKeyExport) -> None:
        check_consistency(message, signatures, used)

    return parse_keys(entries.export_bin, consistent), used


def read_verified_export_arrays(
    zip_bytes: bytes,
    ring: PublicKeyRing,
    *,
    now_interval: int | None = None,
    max_bytes: int = MAX_EXPORT_BYTES,
) -> ExportArrays:
    """Verify an export and return its keys as columns (:func:`verified_bin`).

    ``valid`` marks the keys :func:`~agent.export.validation.validate_arrays` keeps;
    the time rules apply only when ``now_interval`` is given.

    Raises:
        ExportFileError, SignatureError: as :func:`verified_bin`.
    """
    parsed, _ = verified_bin(zip_bytes, ring, max_bytes=max_bytes)
    dropped = Counter(parsed.dropped)
    valid = validate_columns(parsed.keys, now_interval, dropped)
    return ExportArrays(
        **header_fields(parsed.message),
        sha256=hashlib.sha256(zip_bytes).digest(),
        keys=parsed.keys,
        valid=valid,
        revised_keys=parsed.revised_keys,
        dropped=MappingProxyType(dict(dropped)),
    )
