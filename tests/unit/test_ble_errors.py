"""The BlueZ/D-Bus error table: real library exceptions in, reason and action out."""

from __future__ import annotations

import random

import pytest
from bleak.exc import (
    BleakBluetoothNotAvailableError,
    BleakBluetoothNotAvailableReason,
    BleakDBusError,
    BleakError,
)
from dbus_fast.errors import DBusError as FastDBusError
from dbus_next.errors import DBusError as NextDBusError

from agent.backoff import Backoff, Retries
from agent.ble.errors import (
    ACCESS_DENIED_MESSAGE,
    ERROR_TABLE,
    Action,
    BluetoothOperationError,
    Reason,
    classify,
    classify_agent_error,
    to_agent_error,
)
from agent.errors import EXIT_CONFIG, BluetoothAccessDeniedError, BluetoothError

DENIED = (
    'Rejected send message, 2 matched rules; type="method_call", sender=":1.5" '
    'interface="org.freedesktop.DBus.ObjectManager" member="GetManagedObjects" '
    'error name="(unset)" requested_reply="0" destination="org.bluez"'
)


@pytest.mark.parametrize(
    ("exc", "reason", "action"),
    [
        (
            BleakDBusError("org.freedesktop.DBus.Error.AccessDenied", [DENIED]),
            Reason.ACCESS_DENIED,
            Action.FATAL,
        ),
        (
            NextDBusError("org.freedesktop.DBus.Error.AccessDenied", DENIED),
            Reason.ACCESS_DENIED,
            Action.FATAL,
        ),
        (
            FastDBusError("org.freedesktop.DBus.Error.AccessDenied", DENIED),
            Reason.ACCESS_DENIED,
            Action.FATAL,
        ),
        (
            BleakDBusError("org.bluez.Error.NotReady", ["Resource Not Ready"]),
            Reason.NOT_READY,
            Action.WAIT,
        ),
        (
            BleakDBusError("org.bluez.Error.InProgress", ["Operation already in progress"]),
            Reason.IN_PROGRESS,
            Action.RETRY,
        ),
        (
            BleakDBusError("org.bluez.Error.Failed", ["No discovery started"]),
            Reason.NOT_STARTED,
            Action.IGNORE,
        ),
        (
            NextDBusError("org.bluez.Error.Failed", "Failed to parse advertisement."),
            Reason.ADVERT_REJECTED,
            Action.BACKOFF,
        ),
        (
            NextDBusError("org.bluez.Error.DoesNotExist", "Does Not Exist"),
            Reason.DOES_NOT_EXIST,
            Action.IGNORE,
        ),
        (
            NextDBusError("org.bluez.Error.NotPermitted", "Maximum advertisements reached"),
            Reason.TOO_MANY_ADVERTS,
            Action.BACKOFF,
        ),
        (
            NextDBusError(
                "org.freedesktop.DBus.Error.ServiceUnknown",
                "The name org.bluez was not provided by any .service files",
            ),
            Reason.BLUEZ_GONE,
            Action.WAIT,
        ),
        (
            FastDBusError("org.freedesktop.DBus.Error.NameHasNoOwner", "no owner"),
            Reason.BLUEZ_GONE,
            Action.WAIT,
        ),
        (
            BleakDBusError(
                "org.freedesktop.DBus.Error.UnknownMethod",
                ['"RegisterMonitor" with signature "o" doesn\'t exist'],
            ),
            Reason.PASSIVE_UNSUPPORTED,
            Action.FALLBACK,
        ),
        (
            BleakError(
                "passive scanning on Linux requires BlueZ >= 5.56 with --experimental "
                "enabled and Linux kernel >= 5.10"
            ),
            Reason.PASSIVE_UNSUPPORTED,
            Action.FALLBACK,
        ),
        (BleakError("adapter 'hci3' not found"), Reason.NO_ADAPTER, Action.RETRY),
        (Exception("No adapter named hci0 found"), Reason.NO_ADAPTER, Action.WAIT),
        (
            BleakBluetoothNotAvailableError(
                "denied", BleakBluetoothNotAvailableReason.DENIED_BY_SYSTEM
            ),
            Reason.ACCESS_DENIED,
            Action.FATAL,
        ),
        (
            BleakBluetoothNotAvailableError("off", BleakBluetoothNotAvailableReason.POWERED_OFF),
            Reason.NOT_READY,
            Action.WAIT,
        ),
        (TimeoutError(), Reason.TIMEOUT, Action.RETRY),
        (EOFError(), Reason.BUS_GONE, Action.BACKOFF),
        (RuntimeError("something new"), Reason.UNKNOWN, Action.BACKOFF),
    ],
)
def test_classification(exc: BaseException, reason: Reason, action: Action) -> None:
    c = classify(exc)
    assert (c.reason, c.action) == (reason, action)
    assert "\n" not in c.summary() and reason.value in c.summary()


def test_every_rule_is_reachable() -> None:
    """No rule is shadowed by an earlier, more general one."""
    for i, rule in enumerate(ERROR_TABLE):
        name = rule.error_name or "x.y.Z"
        exc = FastDBusError(name, rule.text or "text") if rule.error_name else Exception(rule.text)
        got = classify(exc)
        assert (got.reason, got.action) == (rule.reason, rule.action), f"rule {i} shadowed"


def test_access_denied_becomes_exit_78_naming_group_and_policy() -> None:
    err = to_agent_error(
        BleakDBusError("org.freedesktop.DBus.Error.AccessDenied", [DENIED]), "starting scan"
    )
    assert isinstance(err, BluetoothAccessDeniedError)
    assert err.exit_code == EXIT_CONFIG == 78
    assert str(err) == ACCESS_DENIED_MESSAGE
    assert "'bluetooth' group" in str(err) and "/etc/dbus-1/system.d/" in str(err)
    assert classify_agent_error(err).action is Action.FATAL


def test_other_errors_keep_their_classification() -> None:
    err = to_agent_error(
        NextDBusError("org.bluez.Error.NotReady", "Resource Not Ready"),
        "registering the advertisement",
    )
    assert isinstance(err, BluetoothOperationError) and isinstance(err, BluetoothError)
    assert err.exit_code == 1
    assert str(err).startswith("Bluetooth: registering the advertisement failed: ")
    assert classify_agent_error(err).reason is Reason.NOT_READY
    assert to_agent_error(err, "again") is err  # already ours: not wrapped twice


def test_backoff_doubles_up_to_the_cap_with_jitter_and_resets() -> None:
    backoff = Retries(Backoff(0.5, 60.0), random.Random(1))
    delays = [backoff.next_delay() for _ in range(10)]
    bases = [min(60.0, 0.5 * 2**i) for i in range(10)]
    for delay, base in zip(delays, bases, strict=True):
        assert 0.8 * base <= delay <= 1.2 * base
    assert backoff.failures == 10
    backoff.reset()
    assert 0.4 <= backoff.next_delay() <= 0.6
