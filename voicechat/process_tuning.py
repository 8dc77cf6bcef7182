"""Process-wide allocator settings for a process that serves voicechat conversations.

Kept apart from the engine so that importing voicechat changes nothing outside it.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
from typing import Any

M_ARENA_MAX = -8  # glibc's mallopt parameter number
MALLOC_ARENAS = 2


def cap_malloc_arenas(arenas: int = MALLOC_ARENAS) -> None:
    """Let glibc keep at most ``arenas`` heaps, however many threads allocate.

    By default every thread that calls malloc may get its own arena (up to 8 per core), and
    model calls move between the pool's threads, so each arena ends up holding its own cached
    free pages: measured over one local conversation, RSS kept stepping up by ~15 MB between
    turn 10 and turn 100 (42 MB in all) with nothing leaked; with two arenas it stays flat.
    ``MALLOC_ARENA_MAX`` in the environment wins. Call it before the pool's threads start; a
    no-op where libc is not glibc.
    """
    if os.environ.get("MALLOC_ARENA_MAX"):
        return
    libc = glibc()
    if libc is not None:
        with contextlib.suppress(AttributeError):
            libc.mallopt(M_ARENA_MAX, arenas)


@functools.cache
def glibc() -> Any | None:
    """glibc, opened once (trim_heap runs after every reply); None where libc is something else."""
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None
