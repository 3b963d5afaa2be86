"""Other projects' published files, read by the agent as they are.

The files stay in ``../shared/testdata/third-party`` (the tests skip cleanly without it);
their published facts are kept here as literals:

- google/exposure-notifications-server ``examples/export/``: a signed two-key export,
  signature info ``some_id``/``1``, verifying with the example ``public.pem``;
- corona-warn-app/cwa-server ``services/distribution/src/test/resources/
  master-index-test/testout/``: a real Corona-Warn-App download tree whose signature
  infos carry an EMPTY key id and version, verifying with ``docker-test-public.pem``.
"""

from __future__ import annotations

import base64
import io
import json
import zipfile
from pathlib import Path

import pytest

from agent.errors import SignatureError
from agent.export import PublicKeyRing, inspect_export, read_verified_export
from agent.export import export_pb2 as pb
from agent.export.signature import load_public_key
from tests.shared import shared_path

GOOGLE_EXAMPLE = "testdata/third-party/google-ens-example"
GOOGLE_EXAMPLE_WINDOW = (1590159600, 1590246000)
GOOGLE_EXAMPLE_KEYS = {
    # key (hex of the base64 in keys.json): (rolling start, rolling period, TR)
    "172fc480e598490c34177604339b1543": (2649980, 1, 8),
    "2b63053ac483238de176169e861f3dcd": (2649866, 114, 1),
}

CWA = "testdata/third-party/cwa-server-distribution"
CWA_DATE = "testout/version/v1/diagnosis-keys/country/DE/date"
CWA_FILES = {
    # path below the date folder: (keys, start, end)
    "2020-05-11/hour/17/index": (1032, 1589216400, 1589220000),
    "2020-05-11/index": (7056, 1589216400, 1589241600),
    "2020-05-12/index": (23901, 1589241600, 1589328000),
}


def _ring(pem: Path, key_id: str | None, version: str | None) -> PublicKeyRing:
    """A ring of one pinned key; None for id and version pins the key alone."""
    ring = PublicKeyRing()
    ring.add(key_id, version, load_public_key(pem.read_bytes()))
    return ring


def _google() -> Path:
    return shared_path(GOOGLE_EXAMPLE)


def _cwa() -> Path:
    return shared_path(CWA)


def test_google_example_export_verifies_with_its_published_facts() -> None:
    folder = _google()
    data = (folder / "testExport-2-records-1-of-1.zip").read_bytes()
    ring = _ring(folder / "public.pem", "some_id", "1")
    export = read_verified_export(data, ring)
    assert export.verified and export.verified_by is not None
    assert export.verified_by.label == "some_id-1"
    assert (export.region, export.batch_num, export.batch_size) == ("US", 1, 1)
    assert (export.start_timestamp, export.end_timestamp) == GOOGLE_EXAMPLE_WINDOW
    got = {
        k.key_data.hex(): (
            k.rolling_start_interval_number,
            k.rolling_period,
            k.transmission_risk_level,
        )
        for k in export.keys
    }
    assert got == GOOGLE_EXAMPLE_KEYS
    # keys.json beside it says the same
    listed = json.loads((folder / "keys.json").read_text())["temporaryExposureKeys"]
    assert {
        base64.b64decode(k["key"]).hex(): (
            k["rollingStartNumber"],
            k["rollingPeriod"],
            k["transmissionRisk"],
        )
        for k in listed
    } == GOOGLE_EXAMPLE_KEYS
    with pytest.raises(SignatureError, match="no signature from a pinned key: signed by some_id-1"):
        read_verified_export(data, _ring(folder / "public.pem", "310", "v1"))


def test_keys_show_reads_a_raw_export_bin(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from agent.cli import main

    data = (_google() / "testExport-2-records-1-of-1.zip").read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        raw = archive.read("export.bin")
    path = tmp_path / "export.bin"
    path.write_bytes(raw)
    export = inspect_export(raw)
    assert not export.verified and export.signature_count == 0
    assert {k.key_data.hex() for k in export.keys} == set(GOOGLE_EXAMPLE_KEYS)
    result = CliRunner().invoke(main, ["keys", "show", "--json", str(path)])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["key_count"] == 2 and shown["verified"] is False
    with pytest.raises(SignatureError, match=r"raw export\.bin: it carries no signature"):
        read_verified_export(raw, _ring(_google() / "public.pem", None, None))


@pytest.mark.parametrize("name", sorted(CWA_FILES))
def test_cwa_files_verify_with_an_empty_key_id_and_version(name: str) -> None:
    folder = _cwa()
    data = (folder / CWA_DATE / name).read_bytes()
    pem = folder / "docker-test-public.pem"
    count, start, end = CWA_FILES[name]
    for ring in (
        _ring(pem, "", ""),  # id = "", version = ""
        _ring(pem, None, None),  # pin = "key"
    ):
        export = read_verified_export(data, ring)
        assert export.verified_by is not None and export.verified_by.label == "?-?"
        assert (len(export.keys), export.start_timestamp, export.end_timestamp) == (
            count,
            start,
            end,
        )
        assert export.region == "DE"
    with pytest.raises(SignatureError, match=r"signed by \?-\?"):
        read_verified_export(data, _ring(pem, "262", "v1"))


def test_files_without_batch_fields_or_with_keyless_infos_verify_like_googles(
    tmp_path: Path,
) -> None:
    """Google's May-2020 files list only ``android_package`` in export.bin's infos, and
    the batch fields are optional: both verify (the signature is what counts)."""
    from agent.constants import EXPORT_HEADER
    from agent.export import build_export_sig, generate_signing_key, zip_entries
    from tests.export.factory import make_keys

    key = generate_signing_key()
    message = pb.TemporaryExposureKeyExport(start_timestamp=1, end_timestamp=2, region="US")
    info = message.signature_infos.add()
    info.ParseFromString(b"\x0a\x0bcom.example")  # field 1: android_package (reserved here)
    for k in make_keys(3):
        message.keys.add(
            key_data=k.key_data,
            rolling_start_interval_number=k.rolling_start_interval_number,
            rolling_period=144,
        )
    export_bin = EXPORT_HEADER + message.SerializeToString()
    export_sig = build_export_sig(
        export_bin, [(key, "310", "v1")], algorithm="1.2.840.10045.4.3.2", batch_num=1, batch_size=1
    )
    data = zip_entries([("export.bin", export_bin), ("export.sig", export_sig)])
    ring = PublicKeyRing()
    ring.add("310", "v1", key.public_key())
    export = read_verified_export(data, ring)
    assert export.verified and len(export.keys) == 3
    assert (export.batch_num, export.batch_size) == (0, 0)


def test_the_cwa_public_key_is_a_p256_key() -> None:
    assert load_public_key((_cwa() / "docker-test-public.pem").read_bytes())
