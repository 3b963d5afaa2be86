"""ECDSA P-256 signatures of ``export.bin`` against pinned public keys.

A key ring holds the health authorities' public keys. Each is pinned either by key id
and version, compared exactly (the Android verifier looks keys up as ``id-version``; an
empty id or version is a value like any other: the Corona-Warn-App server,
corona-warn-app/cwa-server ``services/distribution``, signs with both empty), or by the
public key alone (``pin = "key"``: any id and version the key signs with). A file is
valid when at least one of its signatures verifies with a pinned key; zero signatures is
an error ("unsigned"). Fail closed: every doubt is a :class:`SignatureError`.

Cost is bounded before any ECDSA work: more than :data:`MAX_SIGNATURES` signatures
refuse the file outright, only signatures whose id and version a pinned key matches are
checked, each (signature, key) pair at most once, and ``export.bin`` is hashed once per
hash algorithm however many signatures there are. A flood of signatures therefore costs
milliseconds, not one full hash of ``export.bin`` plus an ECDSA verify per signature.
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
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from agent.config import PublicKeyConfig
from agent.constants import SIGNATURE_ALGORITHM_P256_SHA256
from agent.errors import ConfigError, MalformedInputError, SignatureError
from agent.export.model import MAX_SIGNATURE_INFOS, SignatureInfo

_LOGGER = logging.getLogger(__name__)

SIGNATURE_ALGORITHM_P256_SHA512 = "1.2.840.10045.4.3.4"
"""SHA512withECDSA, which the Android verifier also accepts (Google's SignatureVerifier)."""

HASH_BY_ALGORITHM: dict[str, type[hashes.HashAlgorithm]] = {
    SIGNATURE_ALGORITHM_P256_SHA256: hashes.SHA256,
    SIGNATURE_ALGORITHM_P256_SHA512: hashes.SHA512,
}

MAX_SIGNATURES = MAX_SIGNATURE_INFOS
"""More signatures than this in ``export.sig`` refuse the file before any ECDSA work."""

MAX_SIGNATURE_DER_BYTES = 72
"""The longest DER encoding of a P-256 ECDSA signature; a longer one is never checked."""


@dataclass(frozen=True, slots=True)
class PinnedKey:
    """A pinned public key; ``None`` for the id or version matches any value."""

    key_id: str | None
    key_version: str | None
    public_key: ec.EllipticCurvePublicKey

    def matches(self, info: SignatureInfo) -> bool:
        return (self.key_id is None or self.key_id == info.key_id) and (
            self.key_version is None or self.key_version == info.key_version
        )

    @property
    def label(self) -> str:
        """``id-version``: ``*`` matches any, ``?`` is the empty string."""

        def part(value: str | None) -> str:
            return "*" if value is None else value or "?"

        return f"{part(self.key_id)}-{part(self.key_version)}"


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
            if entry.pin == "key":
                ring.add(None, None, key)
            else:
                ring.add(entry.id, entry.version, key)
        return ring

    @classmethod
    def from_pem(cls, pem_or_b64: bytes, key_id: str = "", key_version: str = "") -> PublicKeyRing:
        """A ring of one key (PEM or base64 DER) for the command line: an empty id or
        version given there matches any (``keys verify --public-key`` without ``--key-id``).
        """
        ring = cls()
        ring.add(key_id or None, key_version or None, load_public_key(pem_or_b64))
        return ring

    def add(
        self, key_id: str | None, key_version: str | None, public_key: ec.EllipticCurvePublicKey
    ) -> None:
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


def ecdsa_verify(
    key: ec.EllipticCurvePublicKey, der: bytes, digest: bytes, hash_cls: type[hashes.HashAlgorithm]
) -> bool:
    """One ECDSA verification over a precomputed digest: the only place that does one."""
    try:
        key.verify(der, digest, ec.ECDSA(Prehashed(hash_cls())))
    except (InvalidSignature, ValueError):
        return False
    return True


def _digest(export_bin: bytes, hash_cls: type[hashes.HashAlgorithm]) -> bytes:
    hasher = hashes.Hash(hash_cls())
    hasher.update(export_bin)
    return hasher.finalize()


def verify_signatures(
    export_bin: bytes, signatures: Sequence[Signature], ring: PublicKeyRing
) -> Signature:
    """Return the first signature that a pinned key verifies over ``export_bin``.

    Raises:
        SignatureError: unsigned, too many signatures, no pinned key for any signature,
            or all invalid.
    """
    if not signatures:
        raise SignatureError("export is unsigned: export.sig holds no signatures")
    if len(signatures) > MAX_SIGNATURES:
        raise SignatureError(
            f"export.sig holds {len(signatures)} signatures; at most {MAX_SIGNATURES} "
            "allowed (refused before checking any)"
        )
    if len(ring) == 0:
        raise SignatureError("no public keys are pinned, so no export can be verified")
    unknown: list[str] = []
    tried: list[str] = []
    work: list[tuple[Signature, PinnedKey]] = []
    seen: set[tuple[bytes, str, int]] = set()
    for sig in signatures:
        if sig.info.algorithm not in HASH_BY_ALGORITHM:
            unknown.append(f"{sig.info.label} (algorithm {sig.info.algorithm[:40]!r})")
            continue
        keys = ring.candidates(sig.info)
        if not keys:
            unknown.append(sig.info.label)
            continue
        if not 8 <= len(sig.der) <= MAX_SIGNATURE_DER_BYTES:
            tried.append(sig.info.label)  # cannot be a P-256 signature: no ECDSA for it
            continue
        for key in keys:
            pair = (sig.der, sig.info.algorithm, id(key))
            if pair not in seen:
                seen.add(pair)
                work.append((sig, key))
    digests: dict[str, bytes] = {}
    for sig, key in work:
        hash_cls = HASH_BY_ALGORITHM[sig.info.algorithm]
        if sig.info.algorithm not in digests:
            digests[sig.info.algorithm] = _digest(export_bin, hash_cls)
        if ecdsa_verify(key.public_key, sig.der, digests[sig.info.algorithm], hash_cls):
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
