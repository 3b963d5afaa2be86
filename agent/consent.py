"""The user's consent to contact detection, kept as durable store state.

Consent is OFF until the user runs ``contact-agent enable``: the agent neither advertises
nor scans before that (privacy by default; revoking consent stops both at once). The
value lives in the store's state table (written with ``synchronous=FULL``) so it
survives restarts and power loss, and the daemon reads it before any radio use. The
store reads and writes it (:meth:`agent.store.Store.consent`,
:meth:`~agent.store.Store.set_consent`); other tools (``forget``) set it there or
through the daemon's control socket (``enable``/``disable``).
"""

from __future__ import annotations

import enum


class ConsentState(enum.Enum):
    ENABLED = "enabled"
    DISABLED = "disabled"
    UNSET = "not given"
    """Never enabled: treated as disabled."""

    @property
    def enabled(self) -> bool:
        return self is ConsentState.ENABLED

    @classmethod
    def parse(cls, value: str | None) -> ConsentState:
        """The stored text (also the ``on``/``off`` of older versions); else ``UNSET``."""
        if value in (cls.ENABLED.value, "on"):
            return cls.ENABLED
        if value in (cls.DISABLED.value, "off"):
            return cls.DISABLED
        return cls.UNSET
