"""One error hierarchy for the agent.

Every error carries a one-line message meant for a person and an exit status for the CLI
(``1`` operation failed, ``78`` configuration error, ``2`` usage; see README.md).
Library errors are wrapped at the adapters with ``raise ... from exc``.
"""

from __future__ import annotations

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_CONFIG = 78


class AgentError(Exception):
    """Base class: an expected failure with a clear, one-line message."""

    exit_code: int = EXIT_FAILURE


class MalformedInputError(AgentError, ValueError):
    """Bytes, hex, numbers or records that do not have the required form."""


class ConfigError(AgentError):
    """A bad configuration file or a system policy that stops the agent (exit 78)."""

    exit_code = EXIT_CONFIG


class StoreError(AgentError):
    """The database could not be opened, read or written."""


class ExportFileError(AgentError):
    """A diagnosis-key export that cannot be read (container, header, protobuf)."""


class SignatureError(ExportFileError):
    """An export whose signature is missing, foreign or invalid. Fail closed."""


class NetworkError(AgentError):
    """A key server or verification server that could not be reached or refused."""


class ClockUntrustedError(AgentError):
    """The operation needs a synchronised clock and the clock is not trusted yet."""


class ConsentError(AgentError):
    """The operation needs the user's consent, which is off."""


class BluetoothError(AgentError):
    """BlueZ or the adapter failed."""


class BluetoothAccessDeniedError(BluetoothError):
    """D-Bus refused us access to org.bluez: a group or policy is missing (exit 78)."""

    exit_code = EXIT_CONFIG
