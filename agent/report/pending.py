"""The durable record of an upload in progress (an answer lost after the
server acted: the outcome is unknown).

Written with synchronous=FULL *before* anything about the chosen keys is sent: the keys
(already in their random order), the HMAC secret, the verification token and, once
issued, the certificate. A run that finds the record resumes with exactly these values,
so an upload whose outcome was unknown is retried with the same certificate and never
silently replaced by other keys. The record is deleted once the key server accepted or
definitively refused the upload.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from agent.errors import MalformedInputError, StoreError
from agent.jsonout import dumps
from agent.models import TemporaryExposureKey
from agent.report.wire import b64decode, b64encode, key_from_json, key_to_json

PENDING_STATE_KEY = "report.pending"
RECORD_VERSION = 1


class StateStore(Protocol):
    """The part of the store the upload flow needs (small key/value state, FULL)."""

    async def get_state(self, key: str) -> str | None: ...

    async def set_state(self, key: str, value: str) -> None: ...

    async def delete_state(self, key: str) -> None: ...


@dataclass(frozen=True, slots=True)
class PendingUpload:
    """Everything needed to finish one upload exactly as it was started."""

    token: str
    secret: bytes
    keys: tuple[TemporaryExposureKey, ...]
    """In the (random) order they are sent."""
    created: float
    certificate: str = ""
    test_type: str = ""

    def __repr__(self) -> str:
        return (
            f"PendingUpload(keys={len(self.keys)}, created={self.created}, "
            f"certificate={'yes' if self.certificate else 'no'})"
        )

    def to_json(self) -> str:
        return dumps(
            {
                "version": RECORD_VERSION,
                "token": self.token,
                "secret": b64encode(self.secret),
                "keys": [key_to_json(k) for k in self.keys],
                "created": self.created,
                "certificate": self.certificate,
                "test_type": self.test_type,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> PendingUpload:
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("version") != RECORD_VERSION:
                raise MalformedInputError("unknown record version")
            keys: Sequence[object] = data["keys"]
            return cls(
                token=str(data["token"]),
                secret=b64decode("secret", data["secret"]),
                keys=tuple(key_from_json(k) for k in keys),
                created=float(data["created"]),
                certificate=str(data.get("certificate", "")),
                test_type=str(data.get("test_type", "")),
            )
        except (ValueError, KeyError, TypeError, MalformedInputError) as exc:
            raise StoreError(
                f"the saved interrupted upload is unreadable ({exc}); "
                "run `contact-agent report --discard-pending` and report again with a new code"
            ) from None


async def load_pending(store: StateStore) -> PendingUpload | None:
    text = await store.get_state(PENDING_STATE_KEY)
    return PendingUpload.from_json(text) if text else None


async def save_pending(store: StateStore, pending: PendingUpload) -> None:
    await store.set_state(PENDING_STATE_KEY, pending.to_json())


async def clear_pending(store: StateStore) -> None:
    await store.delete_state(PENDING_STATE_KEY)


async def purge_stale_pending(store: StateStore, cutoff: float) -> bool:
    """Delete an interrupted upload started before ``cutoff`` (the 14-day retention).

    Its keys are too old to publish by then, and the record holds own keys, which must
    not outlive the retention promise. Returns True when a record was deleted; an
    unreadable record is deleted too.
    """
    text = await store.get_state(PENDING_STATE_KEY)
    if not text:
        return False
    try:
        stale = PendingUpload.from_json(text).created < cutoff
    except StoreError:
        stale = True
    if stale:
        await clear_pending(store)
    return stale
