"""ECDSA P-256 signatures of ``export.bin`` against pinned public keys (gaen-spec §4.1).

A key ring holds the health authorities' public keys, each pinned by key id and version
(the Android verifier looks keys up as ``id-version``). An entry with an empty id or
version matches any (for ``keys verify --public-key`` without ``--key-id``). A file is
valid when at least one of its signatures verifies with a pinned key; zero signatures is
an error ("unsigned"). Fail closed: every doubt is a :class:`SignatureError`.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from agent.config import PublicKeyConfig
from agent.constants import SIGNATURE_ALGORITHM_P256_SHA256
from agent.errors import ConfigError, MalformedInputError, SignatureError
from agent.export.model import SignatureInfo

_LOGGER = logging.getLogger(__name__)

SIGNATURE_ALGORITHM_P256_SHA512 = "1.2.840.10045.4.3.4"
"""SHA512withECDSA, which the Android verifier also accepts (INT-SIGVER)."""

HASH_BY_ALGORITHM: dict[str, type[hashes.HashAlgorithm]] = {
    SIGNATURE_ALGORITHM_P256_SHA256: hashes.SHA256,
    SIGNATURE_ALGORITHM_P256_SHA512: hashes.SHA512,
}


@dataclass(frozen=True, slots=True)
class PinnedKey:
    key_id: str
    key_version: str
    public_key: ec.EllipticCurvePublicKey

    def matches(self, info: SignatureInfo) -> bool:
        return (not self.key_id or self.key_id == info.key_id) and (
            not self.key_version or self.key_version == info.key_version
        )

    @property
    def label(self) -> str:
        return f"{self.key_id or '*'}-{self.key_version or '*'}"


def load_public_key(data: bytes) -> ec.EllipticCurvePublicKey:
    """A P-256 public key from PEM, or from bare base64 of the DER SubjectPublicKeyInfo.

    Raises:
        MalformedInputError: neither form, or not a P-256 key.
    """
    text = bytes(data).strip()
    try:
        if b"-----BEGIN" in text:
            key = serialization.load_pem_public_key(text)
        else:
            der = base64.b64decode(b"".join(text.split()), validate=True)
            key = serialization.load_der_public_key(der)
    except (ValueError, TypeError, binascii.Error, UnsupportedAlgorithm):
        raise MalformedInputError(
            "public key is neither a PEM public key nor base64 of a DER SubjectPublicKeyInfo"
        ) from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise MalformedInputError("public key must be an ECDSA P-256 (secp256r1) key")
    return key


class PublicKeyRing:
    """The pinned export-signing keys."""

    def __init__(self) -> None:
        self._keys: list[PinnedKey] = []

    @classmethod
    def from_config(
        cls, keys: Sequence[PublicKeyConfig], base_dir: Path | None = None
    ) -> PublicKeyRing:
        """Load ``[keys] public_keys``; relative ``pem_file`` paths are taken from ``base_dir``.

        Raises:
            ConfigError: a file that cannot be read or holds no P-256 public key.
        """
        ring = cls()
        for entry in keys:
            path = Path(entry.pem_file).expanduser()
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise ConfigError(
                    f"config: keys.public_keys {entry.id}-{entry.version}: cannot read "
                    f"{path}: {exc.strerror}"
                ) from None
            try:
                key = load_public_key(data)
            except MalformedInputError as exc:
                raise ConfigError(
                    f"config: keys.public_keys {entry.id}-{entry.version}: {path}: {exc}"
                ) from None
            ring.add(entry.id, entry.version, key)
        return ring

    @classmethod
    def from_pem(cls, pem_or_b64: bytes, key_id: str = "", key_version: str = "") -> PublicKeyRing:
        """A ring of one key (PEM or base64 DER); empty id/version match any signature."""
        ring = cls()
        ring.add(key_id, key_version, load_public_key(pem_or_b64))
        return ring

    def add(self, key_id: str, key_version: str, public_key: ec.EllipticCurvePublicKey) -> None:
        if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
            public_key.curve, ec.SECP256R1
        ):
            raise MalformedInputError("pinned keys must be ECDSA P-256 public keys")
        self._keys.append(PinnedKey(key_id, key_version, public_key))

    def candidates(self, info: SignatureInfo) -> list[PinnedKey]:
        return [k for k in self._keys if k.matches(info)]

    def __len__(self) -> int:
        return len(self._keys)

    def describe(self) -> str:
        """The pinned ``id-version`` labels (``*`` matches any)."""
        return ", ".join(k.label for k in self._keys) or "none"

    def __repr__(self) -> str:
        return f"PublicKeyRing({self.describe()})"


@dataclass(frozen=True, slots=True)
class Signature:
    """One entry of export.sig."""

    info: SignatureInfo
    batch_num: int
    batch_size: int
    der: bytes


def sign(export_bin: bytes, private_key: ec.EllipticCurvePrivateKey, algorithm: str) -> bytes:
    """DER ECDSA signature over all of ``export_bin`` (header included)."""
    return private_key.sign(export_bin, ec.ECDSA(HASH_BY_ALGORITHM[algorithm]()))


def _verifies(key: ec.EllipticCurvePublicKey, sig: Signature, export_bin: bytes) -> bool:
    hash_cls = HASH_BY_ALGORITHM[sig.info.algorithm]
    try:
        key.verify(sig.der, export_bin, ec.ECDSA(hash_cls()))
    except (InvalidSignature, ValueError):
        return False
    return True


def verify_signatures(
    export_bin: bytes, signatures: Sequence[Signature], ring: PublicKeyRing
) -> Signature:
    """Return the first signature that a pinned key verifies over ``export_bin``.

    Raises:
        SignatureError: unsigned, no pinned key for any signature, or all invalid.
    """
    if not signatures:
        raise SignatureError("export is unsigned: export.sig holds no signatures")
    if len(ring) == 0:
        raise SignatureError("no public keys are pinned, so no export can be verified")
    unknown: list[str] = []
    tried: list[str] = []
    for sig in signatures:
        if sig.info.algorithm not in HASH_BY_ALGORITHM:
            unknown.append(f"{sig.info.label} (algorithm {sig.info.algorithm[:40]!r})")
            continue
        keys = ring.candidates(sig.info)
        if not keys:
            unknown.append(sig.info.label)
            continue
        for key in keys:
            if _verifies(key.public_key, sig, export_bin):
                _LOGGER.debug("export signature %s verified", sig.info.label)
                return sig
            tried.append(sig.info.label)
    if tried:
        raise SignatureError(
            f"signature invalid for key {', '.join(sorted(set(tried)))}: export.bin was "
            "modified or signed by a different key"
        )
    raise SignatureError(
        f"no signature from a pinned key: signed by {', '.join(unknown)}; pinned: {ring.describe()}"
    )
