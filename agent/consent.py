"""The user's consent to contact detection, kept as durable store state.

Consent is OFF until the user runs ``contact-agent enable``: the agent neither advertises
nor scans before that (privacy by default; revoking consent stops both at once). The value lives
in the store's state table (written with ``synchronous=FULL``) so it survives restarts and power
loss, and the daemon reads it before any radio use. Other tools (``forget``) set it with
:func:`write_consent` or through the daemon's control socket (``enable``/``disable``).
"""

from __future__ import annotations

import enum
from typing import Protocol

CONSENT_STATE_KEY = "consent"
CONSENT_CHANGED_STATE_KEY = "consent.changed_at"


class ConsentState(enum.Enum):
    ENABLED = "enabled"
    DISABLED = "disabled"
    UNSET = "not given"
    """Never enabled: treated as disabled."""

    @property
    def enabled(self) -> bool:
        return self is ConsentState.ENABLED


class StateStore(Protocol):
    async def get_state(self, key: str) -> str | None: ...

    async def set_state(self, key: str, value: str) -> None: ...


async def read_consent(store: StateStore) -> ConsentState:
    value = await store.get_state(CONSENT_STATE_KEY)
    if value in (ConsentState.ENABLED.value, "on"):
        return ConsentState.ENABLED
    if value in (ConsentState.DISABLED.value, "off"):
        return ConsentState.DISABLED
    return ConsentState.UNSET


async def write_consent(store: StateStore, enabled: bool, wall: float) -> ConsentState:
    state = ConsentState.ENABLED if enabled else ConsentState.DISABLED
    await store.set_state(CONSENT_STATE_KEY, state.value)
    await store.set_state(CONSENT_CHANGED_STATE_KEY, f"{wall:.0f}")
    return state

