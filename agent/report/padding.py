"""Fixed-size request and response bodies (the ``padding`` field of the
publish and verification APIs).

An observer of encrypted traffic sees body sizes. Every body of one kind (verify,
certificate, publish) is padded to the same total size with random base64 in its
``padding`` field, so a real upload, a decoy (chaff) upload and uploads with 3 or 30 keys
all look the same. The size is a fixed base per kind, large enough for the biggest real
body, plus ``report.padding_bytes`` (Google recommends at least 1 KB of padding).
"""

from __future__ import annotations

import base64
import enum
import logging
import secrets
from collections.abc import Mapping

from agent.jsonout import dumps

_LOGGER = logging.getLogger(__name__)


class BodyKind(enum.Enum):
    """The three requests of a self-report; each has its own fixed body size."""

    VERIFY = "verify"
    CERTIFICATE = "certificate"
    PUBLISH = "publish"


BASE_BODY_BYTES: Mapping[BodyKind, int] = {
    # {"code", "accept", "padding"}: about 60 bytes.
    BodyKind.VERIFY: 1024,
    # {"token" (a JWT of 300-600 bytes), "ekeyhmac" (44), "padding"}.
    BodyKind.CERTIFICATE: 1024,
    # 30 keys x ~95 bytes + certificate (~800) + hmacKey + revisionToken (~300) < 4.5 KB.
    BodyKind.PUBLISH: 6144,
}
"""Unpadded bodies above these sizes are rounded up to the next ``OVERFLOW_STEP``."""
OVERFLOW_STEP = 1024


def body_size(kind: BodyKind, padding_bytes: int) -> int:
    """Total size of every body of ``kind``."""
    return BASE_BODY_BYTES[kind] + max(0, padding_bytes)


def random_padding(length: int) -> str:
    """``length`` characters of base64 (a multiple of 4) from random bytes."""
    if length <= 0:
        return ""
    return base64.b64encode(secrets.token_bytes(length // 4 * 3)).decode("ascii")


def _dump(body: Mapping[str, object]) -> bytes:
    return dumps(body, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def padded_json(body: Mapping[str, object], size: int) -> bytes:
    """``body`` as compact JSON of exactly ``size`` bytes (more only if it cannot fit).

    The ``padding`` field takes the room left in whole base64 groups; the last 0-3 bytes
    are JSON whitespace after the object, which every JSON parser ignores.
    """
    bare = _dump({**body, "padding": ""})
    target = size
    if len(bare) > target:
        target = size + -(-(len(bare) - size) // OVERFLOW_STEP) * OVERFLOW_STEP
        _LOGGER.debug("body of %d bytes does not fit %d; padded to %d", len(bare), size, target)
    room = target - len(bare)
    padded = _dump({**body, "padding": random_padding(room)})
    return padded + b" " * (target - len(padded))
