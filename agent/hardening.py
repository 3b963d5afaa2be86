"""Process hardening at start-up: no core dump and no ptrace of a process that holds keys.

A core dump of the agent holds its own TEKs and the RPIs it heard (a 94 MB SIGABRT core
held the own TEK six times). Outside systemd nothing else prevents one, so every command
calls :func:`forbid_core_dumps` before it touches the store: ``RLIMIT_CORE`` goes to 0
(soft and hard, so no child can raise it again) and ``PR_SET_DUMPABLE`` to 0, which also
stops other processes of the same user from attaching with ptrace or reading
``/proc/PID/mem``. The systemd unit sets ``LimitCORE=0`` as well.
"""

from __future__ import annotations

import ctypes
import logging
import resource

_LOGGER = logging.getLogger(__name__)

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3


def _prctl(option: int, arg: int = 0) -> int:
    libc = ctypes.CDLL(None, use_errno=True)  # the C library is already loaded
    result = int(libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg), 0, 0, 0))
    if result < 0:
        raise OSError(ctypes.get_errno(), "prctl failed")
    return result


def is_dumpable() -> bool:
    """Whether this process may dump core or be traced by its own user."""
    return _prctl(PR_GET_DUMPABLE) != 0


def forbid_core_dumps() -> None:
    """``RLIMIT_CORE`` = 0 and not dumpable; a refusal (a seccomp filter) is only logged."""
    try:
        if resource.getrlimit(resource.RLIMIT_CORE) != (0, 0):
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (OSError, ValueError) as exc:
        _LOGGER.warning("cannot set RLIMIT_CORE to 0: %s", exc)
    try:
        _prctl(PR_SET_DUMPABLE, 0)
    except OSError as exc:
        _LOGGER.warning("cannot make the process non-dumpable: %s", exc)
