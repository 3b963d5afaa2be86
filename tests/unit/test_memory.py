"""The heap helpers: trimming is harmless, and the start-up objects are frozen once."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from agent.memory import trim_heap


def test_trim_heap_is_harmless() -> None:
    trim_heap()
    trim_heap()


def test_the_startup_objects_are_frozen_once_and_garbage_is_still_collected() -> None:
    """In a fresh interpreter (freezing is for good): the first call freezes what is
    alive, a second call freezes nothing more, and cycles made later are collected."""
    script = textwrap.dedent(
        """
        import gc, weakref
        from agent.memory import freeze_startup_objects
        assert gc.get_freeze_count() == 0
        freeze_startup_objects()
        frozen = gc.get_freeze_count()
        assert frozen > 1000, frozen
        keep = [object() for _ in range(100)]
        freeze_startup_objects()
        assert gc.get_freeze_count() == frozen
        class Node:
            pass
        a, b = Node(), Node()
        a.other, b.other = b, a
        gone = weakref.ref(a)
        del a, b
        gc.collect()
        assert gone() is None
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
