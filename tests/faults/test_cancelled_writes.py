"""A write cancelled half-way (the daemon stopping, a supervised part restarted) leaves
the connection usable: the next durable write works and nothing half-done stays.

Found by the fault tests: about one start/stop in fifty failed with "Safety level may not
be changed inside a transaction" because a task cancelled while awaiting BEGIN IMMEDIATE
left that BEGIN to run after the rollback had looked and found no transaction.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from agent.store import Store


async def test_cancelling_durable_writes_at_any_point_never_wedges_the_store(
    tmp_path: Path,
) -> None:
    async with await Store.open(tmp_path / "data") as store:
        outcomes = {"cancelled": 0, "done": 0}
        for step in range(300):
            write = asyncio.create_task(store.set_state("fault.key", f"value {step}"))
            for _ in range(step % 12):  # cancel at a different await each time
                await asyncio.sleep(0)
            write.cancel()
            try:
                await write
                outcomes["done"] += 1
            except asyncio.CancelledError:
                outcomes["cancelled"] += 1
            await store.set_state("fault.after", str(step))  # must always work
            assert await store.get_state("fault.after") == str(step)
        assert outcomes["cancelled"] > 0
        assert await store.integrity_ok()
