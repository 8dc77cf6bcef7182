"""Process-wide tuning for a process that mostly serves voicechat: :func:`tune_process`.

Off unless asked. voicechat is meant to be embedded (``voice_chat()`` in someone's Streamlit page,
the widget in a notebook), so importing it, building a conversation or rendering the widget
changes no allocator or garbage-collector setting of the host process. The bundled Streamlit
app and the ``voicechat`` command call :func:`tune_process` when they start; an embedder whose
process serves little but conversations may call it too.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import os
import threading
from typing import Any

M_ARENA_MAX = -8  # glibc's mallopt parameter number
MALLOC_ARENAS = 2

_tuned = threading.Event()
_frozen = threading.Lock()
_frozen_once = False


def tune_process(*, malloc_arenas: int = MALLOC_ARENAS) -> None:
    """Tune the whole process for serving conversations; call it early, before models load.

    Caps glibc's heaps at ``malloc_arenas`` (:func:`cap_malloc_arenas`), and lets the Streamlit
    layer freeze the loaded models out of the garbage collector's passes once the first engine is
    ready (:func:`freeze_heap_once`). Idempotent: a Streamlit script may call it on every run.
    """
    if not _tuned.is_set():
        cap_malloc_arenas(malloc_arenas)
        _tuned.set()


def freeze_heap_once() -> bool:
    """Freeze what the heap holds now out of the collector's full passes (``gc.freeze``), once per
    process, and only if :func:`tune_process` asked for it. Returns whether it froze now.

    Call it when the models are loaded. Streamlit runs a full collection after every script run
    (``runner.postScriptGC``). Over the heap the loaded models, their libraries and Streamlit leave
    behind, that held the GIL for tens of milliseconds each time, several times a second with a
    few sessions, and the event loop that carries every call's audio lagged: a closed tab was
    noticed 0.9-1.9 s late instead of 0.2-0.8 s. What is frozen lives as long as the process
    anyway; objects made later are collected as usual. (Turning ``postScriptGC`` off instead left
    aiortc's per-call threads waiting for a collection: 13 threads more after 20 calls.) An
    embedder's process keeps its collector as it was: its own objects are not ours to freeze.
    """
    global _frozen_once
    if not _tuned.is_set():
        return False
    with _frozen:
        if _frozen_once:
            return False
        _frozen_once = True
    gc.freeze()
    return True


def cap_malloc_arenas(arenas: int = MALLOC_ARENAS) -> None:
    """Let glibc keep at most ``arenas`` heaps, however many threads allocate.

    By default every thread that calls malloc may get its own arena (up to 8 per core), and
    model calls move between the pool's threads, so each arena ends up holding its own cached
    free pages: measured over one local conversation, RSS kept stepping up by ~15 MB between
    turn 10 and turn 100 (42 MB in all) with nothing leaked; with two arenas it stays flat.
    ``MALLOC_ARENA_MAX`` in the environment wins. Threads that already have an arena keep it, so
    call it before the pool's threads start (:func:`tune_process` does); a no-op where libc is
    not glibc.
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
