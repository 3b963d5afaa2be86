"""A worker process of the Python kernel: ``python -m agent.matching_fast.worker``.

It reads pickled requests from stdin and writes one pickled reply per request to stdout:
first ``(rpi_blob, backend)``, answered with the AES path's name, then any number of
``(key_data, rolling_start int32 bytes, base_index)``, each answered with its list of
candidates. A request that fails is answered with ``("error", message)`` and the worker
goes on; end of input ends it. It imports only the kernel (numpy, hashlib, ctypes), runs
at niceness 10, and is started and fed by :mod:`agent.matching_fast.parallel`, which
trusts it: pickle never crosses a process this agent did not start itself.
"""

from __future__ import annotations

import pickle
import sys
from typing import BinaryIO

import numpy as np

from agent.matching_fast.finder import PythonFinder, backend_choice, lower_priority
from agent.matching_fast.kernel import ecb_backend

ERROR = "error"


def serve(requests: BinaryIO, replies: BinaryIO) -> None:
    """Answer requests until end of input (see the module docstring)."""
    finder: PythonFinder | None = None
    while True:
        try:
            request = pickle.load(requests)  # noqa: S301 - our own parent process
        except EOFError:
            return
        try:
            if finder is None:
                rpi_blob, backend = request
                finder = PythonFinder(rpi_blob, ecb_backend(backend_choice(backend)))
                reply: object = finder.name
            else:
                key_data, rolling_start, base_index = request
                starts = np.frombuffer(rolling_start, dtype=np.int32)
                reply = finder.find(key_data, starts, base_index)
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
