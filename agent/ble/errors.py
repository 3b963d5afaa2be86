"""BlueZ and D-Bus failures, classified once in a table.

bleak raises ``BleakDBusError``/``BleakError``, bless raises dbus_next's ``DBusError`` or a
bare ``Exception``, our own health watcher raises dbus-fast's ``DBusError``. Each is reduced
to an error name and a text, then looked up in :data:`ERROR_TABLE` to get a
:class:`Reason` (what happened) and an :class:`Action` (what the radio supervisor does).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from bleak.exc import (
    BleakBluetoothNotAvailableError,
    BleakBluetoothNotAvailableReason,
    BleakDBusError,
)
from dbus_fast.errors import DBusError as FastDBusError
from dbus_next.errors import DBusError as NextDBusError

from agent.errors import BluetoothAccessDeniedError, BluetoothError


class Reason(enum.Enum):
    """What went wrong, as data."""

    ACCESS_DENIED = "access_denied"
    NOT_READY = "adapter_not_ready"
    NO_ADAPTER = "no_adapter"
    BLUEZ_GONE = "bluetoothd_not_running"
    BUS_GONE = "dbus_connection_lost"
    IN_PROGRESS = "in_progress"
    NOT_STARTED = "not_started"
    DOES_NOT_EXIST = "does_not_exist"
    ALREADY_EXISTS = "already_exists"
    ADVERT_REJECTED = "advertisement_rejected"
    TOO_MANY_ADVERTS = "too_many_advertisements"
    PASSIVE_UNSUPPORTED = "passive_scanning_unsupported"
    TIMEOUT = "timeout"
    UNKNOWN = "unknown"


class Action(enum.Enum):
    """What to do about it."""

    IGNORE = "ignore"
    """The wanted state holds already (stopping what is stopped)."""
    RETRY = "retry"
    """Transient: try again after a short back-off."""
    WAIT = "wait"
    """Adapter or bluetoothd unavailable: retry when it comes back (or after back-off)."""
    FALLBACK = "fallback"
    """Use the other mode (active instead of passive scanning)."""
    BACKOFF = "backoff"
    """Unexpected failure: retry with growing delays, report it in status."""
    FATAL = "fatal"
    """A system policy stops us: exit with status 78."""


@dataclass(frozen=True, slots=True)
class Rule:
    """``error_name`` (or None: any) whose text contains ``text`` (or None: any)."""

    error_name: str | None
    text: str | None
    reason: Reason
    action: Action


_B = "org.bluez.Error."
_D = "org.freedesktop.DBus.Error."

ERROR_TABLE: tuple[Rule, ...] = (
    Rule(_D + "AccessDenied", None, Reason.ACCESS_DENIED, Action.FATAL),
    Rule(_D + "AuthFailed", None, Reason.ACCESS_DENIED, Action.FATAL),
    Rule(_B + "NotReady", None, Reason.NOT_READY, Action.WAIT),
    Rule(_B + "InProgress", None, Reason.IN_PROGRESS, Action.RETRY),
    Rule(_B + "Failed", "No discovery started", Reason.NOT_STARTED, Action.IGNORE),
    Rule(_B + "Failed", "parse advertisement", Reason.ADVERT_REJECTED, Action.BACKOFF),
    Rule(_B + "Failed", "too long", Reason.ADVERT_REJECTED, Action.BACKOFF),
    Rule(_B + "Failed", "register advertisement", Reason.ADVERT_REJECTED, Action.BACKOFF),
    Rule(_B + "InvalidLength", None, Reason.ADVERT_REJECTED, Action.BACKOFF),
    Rule(_B + "DoesNotExist", None, Reason.DOES_NOT_EXIST, Action.IGNORE),
    Rule(_B + "AlreadyExists", None, Reason.ALREADY_EXISTS, Action.RETRY),
    Rule(_B + "NotPermitted", "Maximum advertisements", Reason.TOO_MANY_ADVERTS, Action.BACKOFF),
    Rule(_D + "ServiceUnknown", None, Reason.BLUEZ_GONE, Action.WAIT),
    Rule(_D + "NameHasNoOwner", None, Reason.BLUEZ_GONE, Action.WAIT),
    Rule(_D + "NoReply", None, Reason.TIMEOUT, Action.RETRY),
    Rule(_D + "Timeout", None, Reason.TIMEOUT, Action.RETRY),
    Rule(_D + "UnknownObject", None, Reason.NO_ADAPTER, Action.WAIT),
    Rule(_D + "UnknownMethod", "RegisterMonitor", Reason.PASSIVE_UNSUPPORTED, Action.FALLBACK),
    Rule(_D + "UnknownMethod", None, Reason.NO_ADAPTER, Action.WAIT),
    Rule(_D + "Disconnected", None, Reason.BUS_GONE, Action.BACKOFF),
    # bleak and bless errors without a D-Bus error name:
    Rule(None, "passive scanning on Linux requires", Reason.PASSIVE_UNSUPPORTED, Action.FALLBACK),
    Rule(None, "No adapter named", Reason.NO_ADAPTER, Action.WAIT),
    Rule(None, "adapter '", Reason.NO_ADAPTER, Action.RETRY),
    Rule(None, "No powered Bluetooth adapters", Reason.NOT_READY, Action.WAIT),
    Rule(None, "No Bluetooth adapters found", Reason.NO_ADAPTER, Action.WAIT),
)

_NOT_AVAILABLE = {
    BleakBluetoothNotAvailableReason.DENIED_BY_SYSTEM: Reason.ACCESS_DENIED,
    BleakBluetoothNotAvailableReason.DENIED_BY_USER: Reason.ACCESS_DENIED,
    BleakBluetoothNotAvailableReason.DENIED_BY_UNKNOWN: Reason.ACCESS_DENIED,
    BleakBluetoothNotAvailableReason.POWERED_OFF: Reason.NOT_READY,
}

ACCESS_DENIED_MESSAGE = (
    "D-Bus refused access to BlueZ (org.bluez): add the service user to the 'bluetooth' "
    "group (usermod -aG bluetooth USER) or install a D-Bus policy in /etc/dbus-1/system.d/ "
    "that allows it to send to org.bluez, then restart the agent"
)


@dataclass(frozen=True, slots=True)
class Classified:
    """An exception reduced to data."""

    reason: Reason
    action: Action
    error_name: str | None
    text: str

    def summary(self) -> str:
        """One line for logs and status (never contains identifiers)."""
        name = f"{self.error_name}: " if self.error_name else ""
        return f"{self.reason.value} ({name}{self.text})"[:300]


def error_name_and_text(exc: BaseException) -> tuple[str | None, str]:
    """The D-Bus error name (if any) and the message of a library exception."""
    if isinstance(exc, BleakDBusError):
        return exc.dbus_error, exc.dbus_error_details or ""
    if isinstance(exc, FastDBusError | NextDBusError):
        return str(exc.type), str(exc.text or "")
    if isinstance(exc, EOFError | OSError):  # connection refused or lost, socket gone
        return _D + "Disconnected", str(exc) or type(exc).__name__
    return None, str(exc)


def classify(exc: BaseException) -> Classified:
    """Look an exception up in :data:`ERROR_TABLE`."""
    name, text = error_name_and_text(exc)
    if isinstance(exc, BleakBluetoothNotAvailableError) and exc.reason in _NOT_AVAILABLE:
        reason = _NOT_AVAILABLE[exc.reason]
        action = Action.FATAL if reason is Reason.ACCESS_DENIED else Action.WAIT
        return Classified(reason, action, name, text)
    if isinstance(exc, TimeoutError):
        return Classified(Reason.TIMEOUT, Action.RETRY, name, text or "timed out")
    for rule in ERROR_TABLE:
        if rule.error_name is not None and rule.error_name != name:
            continue
        if rule.text is not None and rule.text.lower() not in text.lower():
            continue
        return Classified(rule.reason, rule.action, name, text)
    return Classified(Reason.UNKNOWN, Action.BACKOFF, name, text or type(exc).__name__)


class BluetoothOperationError(BluetoothError):
    """A BlueZ operation failed; ``classified`` tells the supervisor what to do."""

    def __init__(self, message: str, classified: Classified) -> None:
        super().__init__(message)
        self.classified = classified


def to_agent_error(exc: BaseException, doing: str) -> BluetoothError:
    """Wrap a library exception: AccessDenied becomes exit-78 with the fix in the message."""
    if isinstance(exc, BluetoothError):
        return exc
    c = classify(exc)
    if c.action is Action.FATAL:
        return BluetoothAccessDeniedError(ACCESS_DENIED_MESSAGE)
    return BluetoothOperationError(f"Bluetooth: {doing} failed: {c.summary()}", c)


def classify_agent_error(exc: BaseException) -> Classified:
    """Like :func:`classify`, but reads the classification kept in our own errors."""
    if isinstance(exc, BluetoothOperationError):
        return exc.classified
    if isinstance(exc, BluetoothAccessDeniedError):
        return Classified(Reason.ACCESS_DENIED, Action.FATAL, None, str(exc))
    return classify(exc)
