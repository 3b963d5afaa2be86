"""A worker process of the pure backend's search: ``python -m agent.matching.worker``.

It reads pickled requests from stdin and writes one pickled reply per request to stdout:
first ``(rpi_blob, windows, backend)`` (``windows``: :meth:`Windows.to_bytes` or None),
answered with the backend's name, then any number of ``(key_data, rolling_start int32
bytes, rolling_period int32 bytes, base_index)``, each answered with its list of
candidates. A request that fails is answered with ``("error", message)`` and the worker
goes on; end of input ends it. It imports only the search (numpy, hashlib, the crypto
seam), runs at niceness 10, and is started and fed by :mod:`agent.matching.parallel`,
which trusts it: pickle never crosses a process this agent did not start itself.
"""

from __future__ import annotations

import logging
import os
import pickle
import sys
import threading
from typing import BinaryIO

import numpy as np

from agent.matching.kernel import Search, Windows

ERROR = "error"

_LOGGER = logging.getLogger(__name__)


def lower_priority(nice: int = 10) -> None:
    """Make the calling thread (Linux: niceness is per thread) yield to the event loop."""
    try:
        thread = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, thread, max(nice, os.getpriority(os.PRIO_PROCESS, thread)))
    except (OSError, AttributeError) as exc:  # a seccomp filter may refuse: no harm
        _LOGGER.debug("cannot lower the matcher's priority: %s", exc)


def serve(requests: BinaryIO, replies: BinaryIO) -> None:
    """Answer requests until end of input (see the module docstring)."""
    search: Search | None = None
    while True:
        try:
            request = pickle.load(requests)  # noqa: S301 - our own parent process
        except EOFError:
            return
        try:
            if search is None:
                rpi_blob, windows, backend = request
                search = Search(
                    rpi_blob, None if windows is None else Windows.from_bytes(windows), backend
                )
                reply: object = search.name
            else:
                key_data, rolling_start, rolling_period, base_index = request
                reply = search.find(
                    key_data,
                    np.frombuffer(rolling_start, dtype=np.int32),
                    np.frombuffer(rolling_period, dtype=np.int32),
                    base_index,
                )
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises
            reply = (ERROR, f"{type(exc).__name__}: {exc}")
        pickle.dump(reply, replies, protocol=pickle.HIGHEST_PROTOCOL)
        replies.flush()


def main() -> None:
    lower_priority()
    replies = sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but replies may reach the pipe
    serve(sys.stdin.buffer, replies)


if __name__ == "__main__":
    main()
