"""ARCHITECTURE.md stays true: every ``agent/...py:name`` it cites exists (read with ``ast``).

A renamed function or moved module fails here, so the map of the data paths and of the
GAEN rules is updated together with the code.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "ARCHITECTURE.md"
CITATION = re.compile(r"`(agent/[\w/]+\.py):([\w.]+)`")
PATH = re.compile(r"`(agent/[\w/.]+?)/?`")


def _names(path: Path) -> set[str]:
    """Top-level functions, classes and constants, plus ``Class.method``."""
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        if isinstance(node, ast.ClassDef):
            names.update(
                f"{node.name}.{item.name}"
                for item in node.body
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
            )
        if isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def test_every_cited_function_exists() -> None:
    text = DOC.read_text(encoding="utf-8")
    citations = CITATION.findall(text)
    assert len(citations) > 50
    missing = [
        f"{module}:{name}"
        for module, name in citations
        if not (ROOT / module).is_file() or name not in _names(ROOT / module)
    ]
    assert not missing, missing


def test_every_cited_path_exists() -> None:
    text = DOC.read_text(encoding="utf-8")
    paths = {p.split(":")[0] for p in PATH.findall(text)}
    assert paths
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, missing
