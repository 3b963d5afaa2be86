"""The import contract of ``agent/``, read from the source with ``ast`` (nothing imported).

- product code never imports the lab (:mod:`agent.lab`: fake bluetoothd, demo, simulated
  field, test key server); the CLI only inside a command function, or in a command module
  that serves nothing but lab commands;
- only ``agent.ble`` imports bleak and bless, only ``agent.store`` imports aiosqlite, only
  ``agent.cli`` imports click, and D-Bus libraries only in the adapters that need them;
- the pure core imports no I/O library;
- no cycles between the packages of ``agent`` (module-level imports; imports under
  ``TYPE_CHECKING`` and inside functions do not run at import time and do not count).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

AGENT = Path(__file__).resolve().parents[2] / "agent"

LAB = "agent.lab"
LAB_COMMAND_MODULES = frozenset({"agent.cli.demo"})
"""CLI modules whose every command is a lab command (loaded only when one is used)."""

ONLY_IN: dict[str, tuple[str, ...]] = {
    "bleak": ("agent.ble",),
    "bless": ("agent.ble",),
    "aiosqlite": ("agent.store",),
    "click": ("agent.cli",),
    "dbus_fast": ("agent.ble", "agent.daemon.notify", "agent.clocksync", "agent.lab.sim"),
    "dbus_next": ("agent.ble",),
}
"""Third-party library -> the only packages or modules that may import it."""

PURE_CORE = (
    "agent.crypto",
    "agent.payload",
    "agent.keyschedule",
    "agent.clock",
    "agent.matching.core",
    "agent.matching.kernel",
    "agent.risk",
    "agent.relayguard",
    "agent.export.arrays",
    "agent.export.columns",
    "agent.export.container",
    "agent.export.fastparse",
    "agent.export.model",
    "agent.export.parse",
    "agent.export.signature",
    "agent.export.validation",
)
"""Pure functions of bytes, numbers and an injected clock (the search's thread and
process pools, :mod:`agent.matching.parallel`, are the runtime around it)."""
IO_LIBRARIES = frozenset(
    {
        "aiohttp",
        "aiosqlite",
        "asyncio",
        "bleak",
        "bless",
        "click",
        "dbus_fast",
        "dbus_next",
        "http",
        "socket",
        "sqlite3",
        "subprocess",
        "urllib",
    }
)


@dataclass(frozen=True)
class Import:
    module: str
    """The importing module."""
    target: str
    """The imported module (absolute)."""
    line: int
    at_import_time: bool
    """False inside a function or under ``if TYPE_CHECKING``."""


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(AGENT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> Iterator[Import]:
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def visit(node: ast.AST, runs: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield Import(module, alias.name, child.lineno, runs)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - child.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                yield Import(module, base, child.lineno, runs)
                for alias in child.names:  # `from agent import crypto` imports agent.crypto
                    yield Import(module, f"{base}.{alias.name}", child.lineno, runs)
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) or (
                isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test)
            ):
                yield from visit(child, False)
            else:
                yield from visit(child, runs)

    yield from visit(ast.parse(path.read_text(encoding="utf-8")), True)


def _all_imports() -> list[Import]:
    return [
        found
        for path in sorted(AGENT.rglob("*.py"))
        if not path.name.endswith("_pb2.py")
        for found in _imports(path)
    ]


IMPORTS = _all_imports()


def _within(module: str, prefixes: tuple[str, ...] | str) -> bool:
    prefixes = (prefixes,) if isinstance(prefixes, str) else prefixes
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _where(found: list[Import]) -> list[str]:
    return [f"{i.module}:{i.line} imports {i.target}" for i in found]


def test_the_contract_reads_the_whole_package() -> None:
    modules = {i.module for i in IMPORTS}
    assert {"agent.cli", "agent.ble.scanner", "agent.store.db", "agent.lab.sim"} <= modules
    assert len(modules) > 100


def test_product_code_never_imports_the_lab() -> None:
    wrong = [
        i
        for i in IMPORTS
        if _within(i.target, LAB)
        and not _within(i.module, LAB)
        and not (_within(i.module, "agent.cli") and not i.at_import_time)
        and i.module not in LAB_COMMAND_MODULES
    ]
    assert not wrong, _where(wrong)


@pytest.mark.parametrize("library", sorted(ONLY_IN))
def test_each_library_stays_in_its_adapter(library: str) -> None:
    wrong = [
        i
        for i in IMPORTS
        if _within(i.target, library) and not _within(i.module, ONLY_IN[library])
    ]
    assert not wrong, _where(wrong)


def test_the_pure_core_imports_no_io_library() -> None:
    wrong = [
        i
        for i in IMPORTS
        if _within(i.module, PURE_CORE) and i.target.split(".")[0] in IO_LIBRARIES
    ]
    assert not wrong, _where(wrong)


def _package(module: str) -> str:
    """The unit of the cycle check: ``agent.X`` (and ``agent.lab.X`` inside the lab)."""
    parts = module.split(".")
    return ".".join(parts[:3] if parts[1:2] == ["lab"] and len(parts) > 2 else parts[:2])


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one package (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(edges.get(node, ())):
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            connect(node)
    return found


def test_no_package_imports_itself_through_another() -> None:
    edges: dict[str, set[str]] = defaultdict(set)
    for i in IMPORTS:
        if i.at_import_time and _within(i.target, "agent") and i.target != "agent":
            source, target = _package(i.module), _package(i.target)
            if source != target and source != "agent":
                edges[source].add(target)
    assert not _cycles(edges)


def test_the_cycle_check_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
