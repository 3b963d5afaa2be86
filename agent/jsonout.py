"""The one way the agent writes JSON: NaN and Infinity are refused, never emitted.

``json.dumps`` writes ``NaN`` and ``Infinity`` by default, which no JSON parser has to
accept. Every JSON the agent produces (status, ``--json`` outputs, control socket
answers, saved state, metrics) goes through :func:`dumps`, so a non-finite number that
slipped in raises :class:`ValueError` where it was made instead of breaking a reader.
"""

from __future__ import annotations

import json
from typing import Any


def dumps(value: Any, **options: Any) -> str:
    """``json.dumps`` with ``allow_nan=False`` (ValueError on NaN or +-Infinity)."""
    options["allow_nan"] = False
    return json.dumps(value, **options)
