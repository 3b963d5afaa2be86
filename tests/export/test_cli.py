"""``keys show``, ``keys verify`` and ``keys export-own`` (``docs/keys.md``)."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric import ec

from agent.cli import main
from agent.clock import SystemClock, en_interval_number, rolling_start_interval_number
from agent.export import (
    PublicKeyRing,
    generate_signing_key,
    private_key_pem,
    public_key_pem,
    read_verified_export,
    zip_entries,
)
from agent.keyschedule import OwnTek
from agent.store import Store
from tests.export.factory import make_keys, ring_for, signed_export
from tests.export.test_google_sample import FIRST_KEY, GOOGLE_TEST_KEY_310_V1, KEY_COUNT
from tests.shared import shared_path


def cli(*args: str, data_dir: Path | None = None, stdin: str | None = None) -> Result:
    prefix = ["--data-dir", str(data_dir)] if data_dir else []
    return CliRunner().invoke(main, [*prefix, *args], input=stdin)


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    return shared_path("testdata/google-sample-diagnosis-key-file.zip")


@pytest.fixture
def google_key(tmp_path: Path) -> Path:
    path = tmp_path / "google-310-v1.b64"
    path.write_text(GOOGLE_TEST_KEY_310_V1 + "\n")
    return path


def test_verify_sample_as_a_real_process(sample: Path, google_key: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent",
            "keys",
            "verify",
            str(sample),
            "--public-key",
            str(google_key),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"verified {KEY_COUNT} keys (region US, signature 310-v1")


def _parts(sample: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(sample.read_bytes())) as archive:
        return {i.filename: archive.read(i) for i in archive.infolist()}


def _flipped(parts: dict[str, bytes]) -> bytes:
    export_bin = bytearray(parts["export.bin"])
    export_bin[export_bin.index(bytes.fromhex(FIRST_KEY))] ^= 0x10
    return zip_entries([("export.bin", bytes(export_bin)), ("export.sig", parts["export.sig"])])


@pytest.mark.parametrize(
    ("mutation", "message"),
    [
        ("flipped", "signature invalid for key 310-v1"),
        ("no-sig", "has no export.sig"),
        ("empty-sig", "unsigned"),
        ("duplicate", "export.bin twice"),
        ("extra", "has 3 entries"),
    ],
)
def test_verify_rejects_mutated_sample(
    sample: Path, google_key: Path, tmp_path: Path, mutation: str, message: str
) -> None:
    parts = _parts(sample)
    bin_, sig = parts["export.bin"], parts["export.sig"]
    data = {
        "flipped": lambda: _flipped(parts),
        "no-sig": lambda: zip_entries([("export.bin", bin_)]),
        "empty-sig": lambda: zip_entries([("export.bin", bin_), ("export.sig", b"")]),
        "duplicate": lambda: zip_entries([("export.bin", bin_), ("export.bin", bin_)]),
        "extra": lambda: zip_entries(
            [("export.bin", bin_), ("export.sig", sig), ("export.sig", sig)]
        ),
    }[mutation]()
    path = tmp_path / "mutated.zip"
    path.write_bytes(data)
    result = cli("keys", "verify", str(path), "--public-key", str(google_key))
    assert result.exit_code == 1
    assert message in result.stderr and str(path) in result.stderr
    assert result.stdout == ""


def test_verify_rejects_a_foreign_key_and_a_wrong_pin(
    sample: Path, tmp_path: Path, google_key: Path
) -> None:
    foreign = tmp_path / "foreign.pem"
    foreign.write_bytes(public_key_pem(generate_signing_key()))
    result = cli("keys", "verify", str(sample), "--public-key", str(foreign))
    assert result.exit_code == 1 and "signature invalid for key 310-v1" in result.stderr
    result = cli("keys", "verify", str(sample), "--public-key", str(google_key), "--key-id", "262")
    assert result.exit_code == 1
    assert "no signature from a pinned key: signed by 310-v1; pinned: 262-*" in result.stderr
    ok = cli(
        "keys",
        "verify",
        str(sample),
        "--public-key",
        str(google_key),
        "--key-id",
        "310",
        "--key-version",
        "v1",
    )
    assert ok.exit_code == 0 and f"verified {KEY_COUNT} keys" in ok.stdout


def test_verify_explains_bad_key_files(sample: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.txt"
    junk.write_text("not a key")
    result = cli("keys", "verify", str(sample), "--public-key", str(junk))
    assert result.exit_code == 1 and "neither a PEM public key nor base64" in result.stderr
    result = cli("keys", "verify", str(sample), "--public-key", str(tmp_path / "missing.pem"))
    assert result.exit_code == 1 and "cannot read --public-key" in result.stderr
    result = cli("keys", "verify", str(tmp_path / "missing.zip"), "--public-key", str(junk))
    assert result.exit_code == 1


def test_show_marks_unverified_output(sample: Path, google_key: Path) -> None:
    result = cli("keys", "show", str(sample))
    assert result.exit_code == 0
    assert "UNVERIFIED" in result.stdout.splitlines()[0]
    assert f"keys: {KEY_COUNT}" in result.stdout and FIRST_KEY in result.stdout
    shown = json.loads(cli("keys", "show", str(sample), "--json").stdout)
    assert shown["verified"] is False and shown["key_count"] == KEY_COUNT
    assert shown["keys"][0]["key_data"] == FIRST_KEY
    assert shown["keys"][0]["rolling_start_interval_number"] == 2653920
    assert shown["signature_infos"] == [
        {"key_id": "310", "key_version": "v1", "algorithm": "1.2.840.10045.4.3.2"}
    ]
    verified = json.loads(
        cli("keys", "show", str(sample), "--json", "--public-key", str(google_key)).stdout
    )
    assert verified["verified"] is True and verified["verified_by"] == "310-v1"


def test_show_of_a_broken_file_fails_cleanly(tmp_path: Path) -> None:
    html = tmp_path / "page.zip"
    html.write_text("<html>oops</html>")
    result = cli("keys", "show", str(html))
    assert result.exit_code == 1 and "not a ZIP file" in result.stderr


async def _store_own_keys(data_dir: Path) -> list[OwnTek]:
    today = rolling_start_interval_number(en_interval_number(SystemClock().wall()))
    teks = [OwnTek(bytes([i]) * 16, today - 144 * i) for i in range(16)]  # 16 days back
    store = await Store.open(data_dir)
    try:
        await store.save_own_teks(teks)
    finally:
        await store.close()
    return teks


async def test_export_own_writes_a_verifiable_export(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    teks = await _store_own_keys(data_dir)
    out = tmp_path / "own.zip"
    result = await _in_thread("keys", "export-own", "-o", str(out), "--yes", data_dir=data_dir)
    assert result.exit_code == 0, result.output
    assert out.stat().st_mode & 0o777 == 0o600
    pub = tmp_path / "own.pub.pem"
    assert f"--public-key {pub}" in result.stdout
    export = read_verified_export(out.read_bytes(), PublicKeyRing.from_pem(pub.read_bytes()))
    exported = {k.key_data for k in export.keys}
    assert exported == {t.key_data for t in teks[:15]}  # the last 14 days and today
    verified = await _in_thread("keys", "verify", str(out), "--public-key", str(pub))
    assert verified.exit_code == 0 and "verified 15 keys" in verified.stdout


async def test_export_own_with_a_given_signing_key_and_confirmation(
    tmp_path: Path, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    data_dir = tmp_path / "data"
    await _store_own_keys(data_dir)
    key_file = tmp_path / "sign.pem"
    key_file.write_bytes(private_key_pem(signing_key))
    out = tmp_path / "own.zip"
    args = ("keys", "export-own", "-o", str(out), "--signing-key", str(key_file))
    refused = await _in_thread(*args, data_dir=data_dir, stdin="n\n")
    assert refused.exit_code == 1 and not out.exists()
    accepted = await _in_thread(*args, data_dir=data_dir, stdin="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert len(read_verified_export(out.read_bytes(), ring_for(signing_key)).keys) == 15
    assert not (tmp_path / "own.pub.pem").exists()


def test_export_own_without_a_database(tmp_path: Path) -> None:
    result = cli(
        "keys", "export-own", "-o", str(tmp_path / "x.zip"), "--yes", data_dir=tmp_path / "none"
    )
    assert result.exit_code == 1 and "no database in" in result.stderr
    assert not (tmp_path / "x.zip").exists()


async def _in_thread(*args: str, data_dir: Path | None = None, stdin: str | None = None) -> Result:
    """The command runs asyncio.run inside; keep it off this test's event loop."""
    return await asyncio.to_thread(cli, *args, data_dir=data_dir, stdin=stdin)


def test_signed_export_fixture_round_trip(
    signing_key: ec.EllipticCurvePrivateKey, tmp_path: Path
) -> None:
    path = tmp_path / "mine.zip"
    path.write_bytes(signed_export(make_keys(7), signing_key))
    pem = tmp_path / "mine.pem"
    pem.write_bytes(public_key_pem(signing_key))
    result = cli("keys", "verify", str(path), "--public-key", str(pem), "--key-id", "310")
    assert result.exit_code == 0 and result.stdout.startswith("verified 7 keys (region ZZ")


def _export_with_revisions(tmp_path: Path) -> tuple[Path, Path]:
    key = generate_signing_key()
    path = tmp_path / "revised.zip"
    path.write_bytes(signed_export(make_keys(30), key, revised_keys=make_keys(7)))
    pem = tmp_path / "key.pem"
    pem.write_bytes(public_key_pem(key))
    return path, pem


def test_show_json_streamed_equals_the_whole_object(tmp_path: Path) -> None:
    """The rows are written as they are read, and the text is exactly the one object's
    ``dumps(indent=1)``, key lists included, for every combination of empty lists."""
    from agent.cli.keys import export_json
    from agent.export import read_export
    from agent.jsonout import dumps

    path, pem = _export_with_revisions(tmp_path)
    empty = tmp_path / "empty.zip"
    empty.write_bytes(signed_export([], generate_signing_key()))
    for file in (path, empty):
        result = cli("keys", "show", str(file), "--json")
        assert result.exit_code == 0, result.output
        whole = dumps(export_json(file, read_export(file.read_bytes(), None)), indent=1)
        assert result.stdout == whole + "\n"
    shown = json.loads(cli("keys", "show", str(path), "--json").stdout)
    assert len(shown["keys"]) == 30 and len(shown["revised_keys"]) == 7
    verified = cli("keys", "show", str(path), "--json", "--public-key", str(pem))
    assert json.loads(verified.stdout)["verified_by"] == "310-v1"
    text = cli("keys", "show", str(path)).stdout
    assert "keys: 30" in text and "revised keys: 7" in text
    rows = [line for line in text.splitlines() if line.startswith("  ") and "key_data" not in line]
    assert len(rows) == 37
    verify = cli("keys", "verify", str(path), "--public-key", str(pem))
    assert verify.exit_code == 0 and "verified 30 keys, 7 revised" in verify.stdout


def test_show_reads_a_raw_export_bin_unverified_only(tmp_path: Path) -> None:
    path, pem = _export_with_revisions(tmp_path)
    raw = tmp_path / "export.bin"
    raw.write_bytes(zipfile.ZipFile(path).read("export.bin"))
    shown = cli("keys", "show", str(raw))
    assert shown.exit_code == 0 and "UNVERIFIED" in shown.stdout.splitlines()[0]
    assert "keys: 30" in shown.stdout and "signatures in export.sig: 0" in shown.stdout
    for command in ("show", "verify"):
        result = cli("keys", command, str(raw), "--public-key", str(pem))
        assert result.exit_code == 1 and "carries no signature" in result.stderr


_SHOW_PEAK = """
import contextlib, os, sys
from agent.cli import main

def high_water():  # VmHWM of this process (ru_maxrss would include pytest's)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

before = high_water()
with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
    try:
        main(["keys", "show", *sys.argv[1:]], standalone_mode=False)
    finally:
        sys.stdout = sys.__stdout__
print(high_water() - before)
"""


@pytest.mark.slow
@pytest.mark.parametrize("as_json", [False, True])
def test_show_of_a_big_file_streams(tmp_path: Path, as_json: bool) -> None:
    """200k keys and 100k revised keys: the output (~70 MB of JSON) is never held, nor
    an object per key: the budget is the file, its export.bin and 37 bytes per key, plus
    slack."""
    big = tmp_path / "big.zip"
    big.write_bytes(
        signed_export(make_keys(200_000), generate_signing_key(), revised_keys=make_keys(100_000))
    )
    args = [str(big), *(["--json"] if as_json else [])]
    out = subprocess.run(
        [sys.executable, "-c", _SHOW_PEAK, *args],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    ).stdout
    grown_mb = int(out.split()[-1]) / 1024
    assert grown_mb < 100, grown_mb  # now ~66 MB; before: 120 MB text, 665 MB JSON
