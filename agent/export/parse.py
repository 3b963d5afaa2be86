"""Parsing ``export.bin`` and ``export.sig`` (``export.proto``) with the protobuf package.

Only the checks that do not need a key ring live here; see :mod:`agent.export.reader`
for the order in which they are combined with signature verification.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator

from google.protobuf.message import DecodeError, Message

from agent.constants import EXPORT_HEADER, TEK_LENGTH, TEK_ROLLING_PERIOD
from agent.errors import ExportFileError, SignatureError
from agent.export import export_pb2 as pb
from agent.export.model import (
    MAX_BATCH_SIZE,
    MAX_KEYS_PER_FILE,
    MAX_SIGNATURE_INFOS,
    TR_MAX,
    TR_MIN,
    HeaderFields,
    SignatureInfo,
)
from agent.export.signature import Signature
from agent.models import ReportType, TemporaryExposureKey

Row = tuple[bytes, int, int, int, int, int | None]
"""key_data, rolling_start, rolling_period, transmission_risk, report_type, dso."""


def _parse(message: Message, data: bytes, what: str, error: type[ExportFileError]) -> None:
    try:
        message.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError, OverflowError) as exc:
        detail = str(exc).splitlines()[0][:80] if str(exc) else type(exc).__name__
        raise error(f"{what} is not a valid protobuf message ({detail})") from None


def check_header(export_bin: bytes) -> None:
    """``export.bin`` must start with exactly ``EK Export v1`` and four spaces."""
    if not export_bin.startswith(EXPORT_HEADER):
        raise ExportFileError(
            f"export.bin does not start with the header {EXPORT_HEADER.decode()!r}"
        )


def parse_export_bin(export_bin: bytes) -> pb.TemporaryExposureKeyExport:
    """Check the 16-byte header and parse the ``TemporaryExposureKeyExport`` after it."""
    check_header(export_bin)
    message = pb.TemporaryExposureKeyExport()
    _parse(message, export_bin[len(EXPORT_HEADER) :], "export.bin", ExportFileError)
    if len(message.keys) + len(message.revised_keys) > MAX_KEYS_PER_FILE:
        raise ExportFileError(
            f"export.bin holds {len(message.keys) + len(message.revised_keys)} keys, "
            f"over the cap of {MAX_KEYS_PER_FILE}"
        )
    return message


def _info(message: pb.SignatureInfo) -> SignatureInfo:
    return SignatureInfo(
        key_id=message.verification_key_id,
        key_version=message.verification_key_version,
        algorithm=message.signature_algorithm,
    )


def signature_infos(message: pb.TemporaryExposureKeyExport) -> tuple[SignatureInfo, ...]:
    return tuple(_info(i) for i in message.signature_infos)


def header_fields(message: pb.TemporaryExposureKeyExport) -> HeaderFields:
    return HeaderFields(
        start_timestamp=message.start_timestamp,
        end_timestamp=message.end_timestamp,
        region=message.region,
        batch_num=message.batch_num,
        batch_size=message.batch_size,
        signature_infos=signature_infos(message),
    )


def parse_export_sig(export_sig: bytes) -> list[Signature]:
    """All signatures of ``export.sig``; a malformed list is a :class:`SignatureError`."""
    message = pb.TEKSignatureList()
    _parse(message, export_sig, "export.sig", SignatureError)
    return [
        Signature(
            info=_info(s.signature_info),
            batch_num=s.batch_num,
            batch_size=s.batch_size,
            der=s.signature,
        )
        for s in message.signatures
    ]


def check_consistency(
    message: pb.TemporaryExposureKeyExport, signatures: list[Signature], used: Signature
) -> None:
    """The export's own claims about its signatures and batch must agree,
    but no further than Google's own tools (google/exposure-notifications-server
    ``tools/export-analyzer/main.go`` checks neither): ``export.bin`` infos that carry
    only ``android_package`` (Google's May-2020 files) name no key, so they cannot
    disagree; a file without ``batch_size`` is a file on its own (the batch fields are
    optional in the proto).
    """
    infos = signature_infos(message)
    if len(infos) > MAX_SIGNATURE_INFOS:
        raise SignatureError(f"export lists {len(infos)} signature infos; at most 10 allowed")
    if len(signatures) != len(infos):
        raise SignatureError(
            f"export.sig holds {len(signatures)} signature(s) but export.bin lists "
            f"{len(infos)} signature info(s)"
        )
    names_keys = any(i.key_id or i.key_version or i.algorithm for i in infos)
    if names_keys and used.info not in infos:
        raise SignatureError(
            f"the verifying signature {used.info.label} is not listed in export.bin"
        )
    num, size = message.batch_num, message.batch_size
    if not message.HasField("batch_size"):
        return
    if not 1 <= num <= size <= MAX_BATCH_SIZE:
        raise SignatureError(f"export batch {num}/{size} is not a valid batch number/size")
    for sig in signatures:
        if (sig.batch_num, sig.batch_size) != (num, size):
            raise SignatureError(
                f"signature {sig.info.label} is for batch {sig.batch_num}/{sig.batch_size} "
                f"but the export is batch {num}/{size}"
            )


def iter_rows(keys: Iterable[pb.TemporaryExposureKey], dropped: Counter[str]) -> Iterator[Row]:
    """Representable keys as plain tuples; the others are counted in ``dropped``.

    A transmission risk outside 0..8 becomes 0 (unknown); a missing rolling period is the
    proto default 144 (Google's server omits it).
    """
    for k in keys:
        key_data = k.key_data
        rolling_start = k.rolling_start_interval_number
        rolling_period = k.rolling_period
        if len(key_data) != TEK_LENGTH:
            dropped["key_length"] += 1
            continue
        if not 1 <= rolling_period <= TEK_ROLLING_PERIOD:
            dropped["rolling_period"] += 1
            continue
        if rolling_start < 0:
            dropped["rolling_start_negative"] += 1
            continue
        tr = k.transmission_risk_level
        if not TR_MIN <= tr <= TR_MAX:
            tr = 0
        dso = k.days_since_onset_of_symptoms if k.HasField("days_since_onset_of_symptoms") else None
        yield key_data, rolling_start, rolling_period, tr, k.report_type, dso


def to_keys(rows: Iterable[Row]) -> tuple[TemporaryExposureKey, ...]:
    return tuple(
        TemporaryExposureKey(
            key_data=key_data,
            rolling_start_interval_number=rolling_start,
            rolling_period=rolling_period,
            transmission_risk_level=tr,
            report_type=ReportType(report_type),
            days_since_onset_of_symptoms=dso,
        )
        for key_data, rolling_start, rolling_period, tr, report_type, dso in rows
    )
