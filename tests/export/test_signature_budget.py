"""What a signature costs: a flood of signatures is refused before any ECDSA work, and
only signatures from pinned keys are ever checked (issue: hostile key servers).

The assertions count ECDSA verifications (the one function that performs them), never
time: a refused file costs a fixed, small number of them whatever the server sends.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes

from agent.constants import SIGNATURE_ALGORITHM_P256_SHA256
from agent.errors import ExportFileError, SignatureError
from agent.export import (
    PublicKeyRing,
    build_export_bin,
    generate_signing_key,
    public_key_pem,
    read_verified_export,
)
from agent.export import export_pb2 as pb
from agent.export import signature as signature_module
from agent.export.model import MAX_SIG_BYTES
from tests.export.factory import END_TS, START_TS, make_keys, zip_of

FLOOD = 1_361
"""The number of invalid signatures a hostile server put in one export.sig."""

KEY = generate_signing_key()
KEYS = make_keys(40)


@pytest.fixture
def ecdsa_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = signature_module.ecdsa_verify

    def counting(key, der, digest, hash_cls):  # type: ignore[no-untyped-def]
        calls.append(der.hex())
        return real(key, der, digest, hash_cls)

    monkeypatch.setattr(signature_module, "ecdsa_verify", counting)
    return calls


def _export_bin(infos: list[tuple[str, str, str]]) -> bytes:
    return build_export_bin(
        KEYS,
        signature_infos=infos,
        region="ZZ",
        start_timestamp=START_TS,
        end_timestamp=END_TS,
        batch_num=1,
        batch_size=1,
    )


def _sig_list(count: int, key_id: str = "310", version: str = "v1", der: bytes = b"") -> bytes:
    message = pb.TEKSignatureList()
    for i in range(count):
        sig = message.signatures.add()
        sig.signature_info.verification_key_id = key_id
        sig.signature_info.verification_key_version = version
        sig.signature_info.signature_algorithm = SIGNATURE_ALGORITHM_P256_SHA256
        sig.batch_num = 1
        sig.batch_size = 1
        sig.signature = der or bytes([0x30, 0x44]) + i.to_bytes(4, "big") * 17
    return message.SerializeToString()


def _ring(key_id: str | None = "310", version: str | None = "v1") -> PublicKeyRing:
    ring = PublicKeyRing()
    ring.add(key_id, version, KEY.public_key())
    return ring


def _signatures(export_sig: bytes) -> list[signature_module.Signature]:
    from agent.export.parse import parse_export_sig

    return parse_export_sig(export_sig)


def test_a_flood_of_1361_signatures_costs_no_ecdsa_at_all(ecdsa_calls: list[str]) -> None:
    export_bin = _export_bin([("310", "v1", SIGNATURE_ALGORITHM_P256_SHA256)])
    flood = _signatures(_sig_list(FLOOD))
    assert len(flood) == FLOOD
    with pytest.raises(SignatureError, match="1361 signatures; at most 10"):
        signature_module.verify_signatures(export_bin, flood, _ring())
    assert ecdsa_calls == []
    # with the public key alone pinned (any id matches), the cap still comes first
    with pytest.raises(SignatureError, match="at most 10"):
        signature_module.verify_signatures(export_bin, flood, _ring(None, None))
    assert ecdsa_calls == []


def test_the_flood_as_a_file_is_refused_by_size_before_parsing(ecdsa_calls: list[str]) -> None:
    export_bin = _export_bin([("310", "v1", SIGNATURE_ALGORITHM_P256_SHA256)])
    export_sig = _sig_list(FLOOD)
    assert len(export_sig) > MAX_SIG_BYTES
    with pytest.raises(ExportFileError, match=r"export\.sig declares"):
        read_verified_export(zip_of(export_bin, export_sig), _ring())
    assert ecdsa_calls == []


def test_ten_signatures_from_unpinned_keys_cost_no_ecdsa(ecdsa_calls: list[str]) -> None:
    export_bin = _export_bin([("999", "v1", SIGNATURE_ALGORITHM_P256_SHA256)] * 10)
    with pytest.raises(SignatureError, match="no signature from a pinned key: signed by 999-v1"):
        signature_module.verify_signatures(
            export_bin, _signatures(_sig_list(10, key_id="999")), _ring()
        )
    assert ecdsa_calls == []


def test_pinned_but_invalid_signatures_cost_one_verify_each_at_most(
    ecdsa_calls: list[str],
) -> None:
    export_bin = _export_bin([("310", "v1", SIGNATURE_ALGORITHM_P256_SHA256)] * 10)
    with pytest.raises(SignatureError, match="signature invalid for key 310-v1"):
        signature_module.verify_signatures(export_bin, _signatures(_sig_list(10)), _ring())
    assert len(ecdsa_calls) == 10
    # ten copies of one signature are checked once
    ecdsa_calls.clear()
    same = _signatures(_sig_list(10, der=bytes([0x30, 0x44]) + b"\x01" * 68))
    with pytest.raises(SignatureError):
        signature_module.verify_signatures(export_bin, same, _ring())
    assert len(ecdsa_calls) == 1


def test_overlong_der_is_never_handed_to_ecdsa(ecdsa_calls: list[str]) -> None:
    export_bin = _export_bin([("310", "v1", SIGNATURE_ALGORITHM_P256_SHA256)])
    with pytest.raises(SignatureError, match="signature invalid"):
        signature_module.verify_signatures(
            export_bin, _signatures(_sig_list(1, der=b"\x30" * 5000)), _ring()
        )
    assert ecdsa_calls == []


def test_prehashed_verification_agrees_with_the_plain_one() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    data = b"EK Export v1    " + b"x" * 1000
    der = KEY.sign(data, ec.ECDSA(hashes.SHA256()))
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data)
    assert signature_module.ecdsa_verify(KEY.public_key(), der, digest.finalize(), hashes.SHA256)


@pytest.mark.parametrize(
    ("pin", "info", "verifies"),
    [
        (("310", "v1"), ("310", "v1"), True),
        (("310", "v1"), ("", ""), False),
        (("", ""), ("", ""), True),  # the Corona-Warn-App server signs with both empty
        (("", ""), ("310", "v1"), False),  # an empty pin is a value, not a wildcard
        ((None, None), ("", ""), True),  # pin = "key"
        ((None, None), ("anything", "v9"), True),
    ],
)
def test_pins_compare_id_and_version_exactly_or_pin_the_key_alone(
    pin: tuple[str | None, str | None], info: tuple[str, str], verifies: bool
) -> None:
    from agent.export import build_export_sig

    infos = [(info[0], info[1], SIGNATURE_ALGORITHM_P256_SHA256)]
    export_bin = _export_bin(infos)
    export_sig = build_export_sig(
        export_bin, [(KEY, info[0], info[1])], algorithm=SIGNATURE_ALGORITHM_P256_SHA256
    )
    ring = _ring(*pin)
    if verifies:
        assert read_verified_export(zip_of(export_bin, export_sig), ring).verified
    else:
        with pytest.raises(SignatureError, match="no signature from a pinned key"):
            read_verified_export(zip_of(export_bin, export_sig), ring)


def test_config_pin_by_key_and_explicit_empty_version(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import tomllib

    from agent.config import parse_config
    from agent.errors import ConfigError

    def load_config_text(text: str):  # type: ignore[no-untyped-def]
        return parse_config(tomllib.loads(text))

    pem = tmp_path / "ha.pem"
    pem.write_bytes(public_key_pem(KEY))
    base = '[keys]\nsources = [{ kind = "dir", path = "/tmp" }]\n'
    by_key = load_config_text(base + f'public_keys = [{{ pin = "key", pem_file = "{pem}" }}]\n')
    ring = PublicKeyRing.from_config(by_key.keys.public_keys)
    assert ring.describe() == "*-*"
    empty = load_config_text(
        base + f'public_keys = [{{ id = "", version = "", pem_file = "{pem}" }}]\n'
    )
    assert PublicKeyRing.from_config(empty.keys.public_keys).describe() == "?-?"
    with pytest.raises(ConfigError, match="version"):
        load_config_text(base + f'public_keys = [{{ id = "310", pem_file = "{pem}" }}]\n')
    with pytest.raises(ConfigError, match="pin must be"):
        load_config_text(base + f'public_keys = [{{ pin = "any", pem_file = "{pem}" }}]\n')


def test_a_flood_small_enough_for_the_size_cap_is_refused_by_count(
    ecdsa_calls: list[str],
) -> None:
    message = pb.TEKSignatureList()
    for _ in range(FLOOD):
        message.signatures.add(batch_num=1, batch_size=1)  # no info, no signature bytes
    export_sig = message.SerializeToString()
    assert len(export_sig) <= MAX_SIG_BYTES
    export_bin = _export_bin([("310", "v1", SIGNATURE_ALGORITHM_P256_SHA256)])
    for ring in (_ring(), _ring(None, None), _ring("", "")):
        with pytest.raises(SignatureError, match="1361 signatures; at most 10"):
            read_verified_export(zip_of(export_bin, export_sig), ring)
    assert ecdsa_calls == []
