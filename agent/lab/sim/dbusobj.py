"""A small D-Bus object server for the fake bluetoothd, on dbus-fast's low-level API.

bluetoothd exports plain objects with properties and answers ``GetManagedObjects`` at
``/``; signals (``InterfacesAdded``/``Removed``) are sent from ``/`` and
``PropertiesChanged`` from the object itself. bless builds dbus_next proxies from
``Introspect``, so the XML has to list every method a client may call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from dbus_fast import Message, Variant, unpack_variants

PROPERTIES = "org.freedesktop.DBus.Properties"
OBJECT_MANAGER = "org.freedesktop.DBus.ObjectManager"
INTROSPECTABLE = "org.freedesktop.DBus.Introspectable"

Interfaces = dict[str, dict[str, Variant]]
"""Interface name -> property name -> value."""

MethodTable = Mapping[str, Mapping[str, tuple[str, str]]]
"""Interface -> method -> (in signature, out signature), for introspection."""

_STANDARD_XML = (
    '<interface name="org.freedesktop.DBus.Introspectable">'
    '<method name="Introspect"><arg type="s" direction="out"/></method></interface>'
    '<interface name="org.freedesktop.DBus.Properties">'
    '<method name="Get"><arg type="s" direction="in"/><arg type="s" direction="in"/>'
    '<arg type="v" direction="out"/></method>'
    '<method name="GetAll"><arg type="s" direction="in"/>'
    '<arg type="a{sv}" direction="out"/></method>'
    '<method name="Set"><arg type="s" direction="in"/><arg type="s" direction="in"/>'
    '<arg type="v" direction="in"/></method>'
    '<signal name="PropertiesChanged"><arg type="s"/><arg type="a{sv}"/><arg type="as"/>'
    "</signal></interface>"
)


class DBusFailure(Exception):
    """An error reply: a D-Bus error name and its text."""

    def __init__(self, name: str, text: str) -> None:
        super().__init__(f"{name}: {text}")
        self.name = name
        self.text = text


def bluez_error(short_name: str, text: str) -> DBusFailure:
    """``org.bluez.Error.<short_name>`` with bluetoothd's wording."""
    return DBusFailure(f"org.bluez.Error.{short_name}", text)


def split_signature(signature: str) -> list[str]:
    """Split a D-Bus signature into its complete types (``"oa{sv}"`` -> ``["o", "a{sv}"]``)."""
    out: list[str] = []
    i = 0
    while i < len(signature):
        j, depth = i, 0
        while True:
            c = signature[j]
            depth += c in "({"
            depth -= c in ")}"
            j += 1
            if depth == 0 and c != "a":
                break
        out.append(signature[i:j])
        i = j
    return out


class ObjectTree:
    """Objects with properties; every change is announced with the right signal."""

    def __init__(self, send: Callable[[Message], None]) -> None:
        self._send = send
        self.objects: dict[str, Interfaces] = {}

    def _signal(
        self, path: str, interface: str, member: str, signature: str, body: list[Any]
    ) -> None:
        self._send(Message.new_signal(path, interface, member, signature, body))

    def add(self, path: str, interfaces: Interfaces) -> None:
        self.objects[path] = interfaces
        self._signal("/", OBJECT_MANAGER, "InterfacesAdded", "oa{sa{sv}}", [path, interfaces])

    def remove(self, path: str) -> None:
        interfaces = self.objects.pop(path, None)
        if interfaces is not None:
            self._signal("/", OBJECT_MANAGER, "InterfacesRemoved", "oas", [path, list(interfaces)])

    def clear(self) -> None:
        """Forget everything without signals (the daemon died)."""
        self.objects.clear()

    def update(
        self, path: str, interface: str, changes: Mapping[str, Variant], force: Iterable[str] = ()
    ) -> None:
        """Set properties; announce those that changed (and those in ``force`` regardless)."""
        current = self.objects[path][interface]
        forced = set(force)
        changed = {
            name: value
            for name, value in changes.items()
            if name in forced
            or name not in current
            or unpack_variants(current[name]) != unpack_variants(value)
        }
        current.update(changes)
        if changed:
            self._signal(
                path, PROPERTIES, "PropertiesChanged", "sa{sv}as", [interface, changed, []]
            )

    def value(self, path: str, interface: str, name: str, default: Any = None) -> Any:
        variant = self.objects.get(path, {}).get(interface, {}).get(name)
        return default if variant is None else variant.value

    def has_interface(self, path: str, interface: str) -> bool:
        return interface in self.objects.get(path, {})

    def introspect(self, path: str, methods: MethodTable, writable: Iterable[str] = ()) -> str:
        """Introspection XML of ``path``: its interfaces, methods, properties and children."""
        rw = set(writable)
        parts = ["<node>", _STANDARD_XML]
        if path == "/":
            parts.append(
                f'<interface name="{OBJECT_MANAGER}"><method name="GetManagedObjects">'
                '<arg type="a{oa{sa{sv}}}" direction="out"/></method></interface>'
            )
        for interface, props in self.objects.get(path, {}).items():
            parts.append(f'<interface name="{interface}">')
            for name, (sig_in, sig_out) in methods.get(interface, {}).items():
                args = "".join(f'<arg type="{t}" direction="in"/>' for t in split_signature(sig_in))
                args += "".join(
                    f'<arg type="{t}" direction="out"/>' for t in split_signature(sig_out)
                )
                parts.append(f'<method name="{name}">{args}</method>')
            for name, value in props.items():
                access = "readwrite" if name in rw else "read"
                parts.append(
                    f'<property name="{name}" type="{value.signature}" access="{access}"/>'
                )
            parts.append("</interface>")
        prefix = path.rstrip("/") + "/"
        children = sorted(
            {p[len(prefix) :].split("/")[0] for p in self.objects if p.startswith(prefix)}
        )
        parts.extend(f'<node name="{child}"/>' for child in children)
        parts.append("</node>")
        return "".join(parts)
