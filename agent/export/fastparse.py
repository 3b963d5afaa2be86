"""Fixed-stride numpy decoding of the keys of an ``export.bin`` (``docs/performance.md``).

Servers write every key with the same fields and the same varint widths, so the
``keys`` field is a run of equally long records. This module checks that, byte column by
byte column, for every record, and then decodes all records at once (several million
keys per second instead of ~1 M through protobuf objects).

It is only an accelerator: the caller has already parsed the same bytes with protobuf
and passes the key count; any record that does not fit the first record's layout
exactly (another field set, width, duplicate or unknown field, a key not 16 bytes)
makes :func:`decode_key_run` return None, and the caller uses the protobuf path. The
result then equals the protobuf path's, which the tests check with Hypothesis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from agent.constants import TEK_LENGTH, TEK_ROLLING_PERIOD

Buffer = bytes | memoryview
"""export.bin bytes, or a view into them (slicing a view copies nothing)."""

KEYS_TAG = 0x3A  # field 7, wire type 2
REVISED_TAG = 0x42  # field 8 (revised_keys), wire type 2: the same record layout
_VARINT_FIELDS = {2, 3, 4, 5, 6}  # tr, rsin, rp, report_type, dso (all wire type 0)
_REPORT_TYPE_MAX = 5


@dataclass(frozen=True, slots=True)
class DecodedKeys:
    """Decoded key records, before the parse-level drops: an intermediate of the reader
    (:mod:`agent.export.arrays`), which returns :class:`~agent.export.columns.KeyArrays`."""

    key_data: npt.NDArray[np.uint8]
    """(n, 16)."""
    rolling_start: npt.NDArray[np.int32]
    rolling_period: npt.NDArray[np.int32]
    transmission_risk: npt.NDArray[np.int32]
    report_type: npt.NDArray[np.int32]
    days_since_onset: npt.NDArray[np.int32]
    has_days_since_onset: npt.NDArray[np.bool_]


def _varint(data: Buffer, pos: int) -> tuple[int, int] | None:
    value = shift = 0
    while pos < len(data) and shift < 70:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return value, pos
        shift += 7
    return None


def _find_key_run(payload: Buffer, tag: int = KEYS_TAG) -> int | None:
    """Offset of the first ``keys`` record, walking the top-level fields before it."""
    pos = 0
    while pos < len(payload):
        if payload[pos] == tag:
            return pos
        field_tag = _varint(payload, pos)
        if field_tag is None:
            return None
        key, pos = field_tag
        wire = key & 7
        if wire == 0:
            skipped = _varint(payload, pos)
            if skipped is None:
                return None
            pos = skipped[1]
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            length = _varint(payload, pos)
            if length is None:
                return None
            pos = length[1] + length[0]
        else:
            return None
    return None


def _layout(record: Buffer) -> list[tuple[int, int, int]] | None:
    """(field, offset of the value, value width) of each field of one key record."""
    fields: list[tuple[int, int, int]] = []
    pos = 0
    while pos < len(record):
        key = record[pos]
        field, wire = key >> 3, key & 7
        if key & 0x80 or field in {f for f, _, _ in fields}:
            return None
        if field == 1 and wire == 2:
            if pos + 1 >= len(record) or record[pos + 1] != TEK_LENGTH:
                return None
            fields.append((1, pos + 2, TEK_LENGTH))
            pos += 2 + TEK_LENGTH
        elif field in _VARINT_FIELDS and wire == 0:
            end = _varint(record, pos + 1)
            if end is None:
                return None
            fields.append((field, pos + 1, end[1] - pos - 1))
            pos = end[1]
        else:
            return None
    if pos != len(record) or 1 not in {f for f, _, _ in fields}:
        return None
    return fields


def _decode_varints(columns: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint32] | None:
    """Low 32 bits of equally wide varints, or None when a width differs."""
    width = columns.shape[1]
    if width > 10:
        return None
    if width > 1 and not np.all(columns[:, :-1] & 0x80):
        return None
    if np.any(columns[:, -1] & 0x80):
        return None
    value = np.zeros(len(columns), dtype=np.uint64)
    for j in range(min(width, 5)):  # bytes past the 5th only hold bits above 32
        value |= (columns[:, j] & 0x7F).astype(np.uint64) << np.uint64(7 * j)
    return (value & np.uint64(0xFFFFFFFF)).astype(np.uint32)


def decode_key_run(payload: Buffer, count: int, tag: int = KEYS_TAG) -> DecodedKeys | None:
    """Decode ``count`` key records of ``payload`` (export.bin after its header), or None;
    ``tag`` :data:`REVISED_TAG` decodes the ``revised_keys`` records instead (the same
    record layout, field 8 instead of 7)."""
    if count == 0:
        return None
    start = _find_key_run(payload, tag)
    if start is None or start + 2 > len(payload):
        return None
    length = payload[start + 1]
    if length & 0x80 or length == 0:
        return None
    stride = 2 + length
    if start + count * stride > len(payload):
        return None
    fields = _layout(payload[start + 2 : start + stride])
    if fields is None:
        return None
    block = np.frombuffer(payload, dtype=np.uint8, count=count * stride, offset=start)
    block = block.reshape(count, stride)
    first = block[0]
    records = block[:, 2:]
    if not (np.all(block[:, 0] == tag) and np.all(block[:, 1] == length)):
        return None
    values: dict[int, npt.NDArray[np.uint32]] = {}
    for field, offset, width in fields:
        tag_column = offset - 2 if field == 1 else offset - 1
        if not np.all(records[:, tag_column] == first[2 + tag_column]):
            return None
        if field == 1:
            if not np.all(records[:, offset - 1] == TEK_LENGTH):
                return None
            continue
        decoded = _decode_varints(records[:, offset : offset + width])
        if decoded is None:
            return None
        values[field] = decoded
    key_offset = next(offset for field, offset, _ in fields if field == 1)

    def int32(field: int, default: int) -> npt.NDArray[np.int32]:
        if field not in values:
            return np.full(count, default, dtype=np.int32)
        return values[field].view(np.int32)

    report_type = int32(5, 0)
    report_type = np.where(
        (report_type >= 0) & (report_type <= _REPORT_TYPE_MAX), report_type, 0
    ).astype(np.int32)  # a closed proto2 enum: unknown values read as the default
    if 6 in values:
        zigzag = values[6]
        dso = ((zigzag >> np.uint32(1)) ^ (np.uint32(0) - (zigzag & np.uint32(1)))).view(np.int32)
        has_dso = np.ones(count, dtype=bool)
    else:
        dso = np.zeros(count, dtype=np.int32)
        has_dso = np.zeros(count, dtype=bool)
    return DecodedKeys(
        key_data=records[:, key_offset : key_offset + TEK_LENGTH],
        rolling_start=int32(3, 0),
        rolling_period=int32(4, TEK_ROLLING_PERIOD),
        transmission_risk=int32(2, 0),
        report_type=report_type,
        days_since_onset=dso,
        has_days_since_onset=has_dso,
    )


# --- Splitting export.bin without materialising the keys -------------------------------------

MAX_KEY_RUNS = 64
"""More runs of differently shaped key records than this: let protobuf parse the file."""
_FIRST_WINDOW = 1024


@dataclass(frozen=True, slots=True)
class KeyRun:
    """``count`` consecutive ``keys`` records of ``stride`` bytes from ``start`` (the tag)."""

    start: int
    count: int
    stride: int


@dataclass(frozen=True, slots=True)
class SplitExport:
    """export.bin's payload as its key records and everything else."""

    header: bytes
    """Every top-level field except the ``keys`` and regular ``revised_keys`` records, in
    order (a valid message)."""
    runs: tuple[KeyRun, ...]
    revised_runs: tuple[KeyRun, ...] = ()
    """Runs of ``revised_keys`` records (tag :data:`REVISED_TAG`)."""

    @property
    def key_count(self) -> int:
        return sum(run.count for run in self.runs)


def _run_length(view: npt.NDArray[np.uint8], start: int, stride: int, tag: int) -> int:
    """How many records of ``stride`` bytes, each tagged ``tag <stride - 2>``, from start."""
    length = stride - 2
    limit = (len(view) - start) // stride
    count, window = 0, _FIRST_WINDOW
    while count < limit:
        take = min(window, limit - count)
        first = start + count * stride
        block = view[first : first + take * stride].reshape(take, stride)
        ok = (block[:, 0] == tag) & (block[:, 1] == length)
        if not ok.all():
            return count + int(np.argmin(ok))
        count += take
        window *= 2
    return count


def _skip_field(payload: Buffer, pos: int) -> int | None:
    """The end of the top-level field whose tag starts at ``pos``; None when it is not a
    plain, complete field (groups, bad tags, truncation: protobuf decides those)."""
    tag = _varint(payload, pos)
    if tag is None:
        return None
    key, pos = tag
    field, wire = key >> 3, key & 7
    if field == 0 or field == 7:  # field 7 with another encoding or wire type: irregular
        return None
    if wire == 0:
        value = _varint(payload, pos)
        end = None if value is None else value[1]
    elif wire == 1:
        end = pos + 8
    elif wire == 5:
        end = pos + 4
    elif wire == 2:
        length = _varint(payload, pos)
        end = None if length is None else length[1] + length[0]
    else:
        return None
    return end if end is not None and end <= len(payload) else None


def split_export(payload: Buffer) -> SplitExport | None:
    """Split export.bin's payload (after its 16-byte header) into the ``keys`` records
    and the rest, without parsing a single key; None when the layout is irregular.

    Key records are found as runs of equally long records with one-byte lengths; the
    caller decodes each run with :func:`decode_key_run`. Any other shape of a ``keys``
    field, a group, or a truncated field returns None: the caller then parses the whole
    message with protobuf, which also gives the right error for a broken file.
    """
    view = np.frombuffer(payload, dtype=np.uint8)
    header: list[Buffer] = []
    runs: list[KeyRun] = []
    revised: list[KeyRun] = []
    pos = 0
    while pos < len(payload):
        tag = payload[pos]
        if tag == KEYS_TAG or (tag == REVISED_TAG and pos + 1 < len(payload)):
            if pos + 1 >= len(payload) or payload[pos + 1] & 0x80:
                if tag == REVISED_TAG:  # a long record: protobuf parses it with the header
                    end = _skip_field(payload, pos)
                    if end is None:
                        return None
                    header.append(payload[pos:end])
                    pos = end
                    continue
                return None
            stride = 2 + payload[pos + 1]
            count = _run_length(view, pos, stride, tag)
            found = runs if tag == KEYS_TAG else revised
            if count == 0 or len(found) == MAX_KEY_RUNS:
                return None
            found.append(KeyRun(pos, count, stride))
            pos += count * stride
            continue
        end = _skip_field(payload, pos)
        if end is None:
            return None
        header.append(payload[pos:end])
        pos = end
    return SplitExport(header=b"".join(header), runs=tuple(runs), revised_runs=tuple(revised))
