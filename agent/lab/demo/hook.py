"""The demo's notification hook: ``python -m agent.lab.demo.hook FILE``.

Each demo agent has it in ``[notify] exec``, so a notification travels the agent's real
exec-hook path (a process with the JSON object on stdin, ``CONTACT_AGENT_EVENT`` in its
environment). The hook appends the object, as one JSON line, to ``FILE``; the demo reads
that file to learn who was notified.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

EVENT_ENV = "CONTACT_AGENT_EVENT"


def hook_command(path: Path) -> str:
    """The ``[notify] exec`` entry that records notifications into ``path``."""
    return shlex.join([sys.executable, "-m", "agent.lab.demo.hook", str(path)])


def read_notifications(path: Path) -> list[dict[str, Any]]:
    """The notifications recorded in ``path`` (none when it does not exist)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: python -m agent.lab.demo.hook FILE\n")
        return 2
    try:
        payload = json.loads(sys.stdin.read())
    except ValueError as exc:
        sys.stderr.write(f"agent.lab.demo.hook: stdin is not one JSON object: {exc}\n")
        return 1
    if not isinstance(payload, dict):
        sys.stderr.write("agent.lab.demo.hook: stdin is not one JSON object\n")
        return 1
    payload["env_event"] = os.environ.get(EVENT_ENV, "")
    with Path(argv[0]).open("a", encoding="utf-8") as stream:
        stream.write(json.dumps(payload, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
