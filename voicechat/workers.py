"""One process-wide pool of worker threads for blocking model calls.

Every session's STT, LLM and TTS work runs here rather than on a fresh executor per event
loop. Models are shared and serialised by their own locks, so more threads would not run
more work at once; long-lived threads also keep the native libraries' per-thread caches
(onnxruntime, CTranslate2, llama.cpp) from being rebuilt, and leaked, for every session.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

from voicechat.process_tuning import glibc

T = TypeVar("T")

POOL_THREADS = 8
_pool: concurrent.futures.ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def pool() -> concurrent.futures.ThreadPoolExecutor:
    """The shared pool, made on first use: importing voicechat starts and reserves nothing."""
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = concurrent.futures.ThreadPoolExecutor(POOL_THREADS, thread_name_prefix="voicechat-model")
    return _pool


def submit(fn: Callable[..., T], *args: Any, **kwargs: Any) -> asyncio.Future[T]:
    """Run ``fn`` on the pool; await the returned future from the calling event loop."""
    loop = asyncio.get_running_loop()
    return loop.run_in_executor(pool(), functools.partial(fn, *args, **kwargs))


async def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await submit(fn, *args, **kwargs)


async def iterate(
    produce: Callable[..., Iterator[T]], *args: Any, gate: threading.Event | None = None
) -> AsyncIterator[T]:
    """Drive a blocking generator on the pool and yield its items on the caller's loop.

    Items cross to the loop with ``call_soon_threadsafe`` as soon as each is made. When the
    consumer stops early (barge-in cancels it, or it closes the iterator) the worker stops
    before its next item and closes the generator, releasing whatever lock it held.

    ``gate``: while the loop holds it closed (cleared), the worker waits before making the next
    item, so other work on the same cores runs alone (see :mod:`voicechat.reply`). The wait
    ends when the gate opens, the consumer stops, or after ``GATE_MAX_S`` whatever happens.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    cancelled = threading.Event()
    end = object()

    def work() -> None:
        gen = produce(*args)
        try:
            for item in gen:
                if cancelled.is_set():
                    break
                loop.call_soon_threadsafe(queue.put_nowait, item)
                if gate is not None:
                    _wait_open(gate, cancelled)
        except BaseException as exc:  # handed to the consumer, which re-raises it on its loop
            loop.call_soon_threadsafe(queue.put_nowait, _Failure(exc))
        finally:
            close = getattr(gen, "close", None)
            if close is not None:
                close()
            loop.call_soon_threadsafe(queue.put_nowait, end)

    worker = submit(work)
    try:
        while True:
            item = await queue.get()
            if item is end:
                break
            if isinstance(item, _Failure):
                raise item.exc
            yield item
    finally:
        cancelled.set()
        if not worker.done():
            worker.add_done_callback(lambda f: f.exception())


GATE_MAX_S = 2.0  # a gate left closed by a bug only slows the generator down, never stops it


def _wait_open(gate: threading.Event, cancelled: threading.Event) -> None:
    """Worker thread: wait for ``gate`` to open, checking every 20 ms whether the consumer left."""
    waited = 0.0
    while not gate.wait(0.02) and not cancelled.is_set() and waited < GATE_MAX_S:
        waited += 0.02


def trim_heap() -> None:
    """Hand freed heap back to the OS (glibc otherwise keeps it cached in per-thread arenas).

    Called when a session closes and after each reply: without it a long-running server's RSS
    climbs by tens of MB over a conversation, and about 100 MB over many sessions, before the
    arenas stop growing, though nothing is leaked. A no-op where libc is not glibc.
    """
    libc = glibc()
    if libc is not None:
        libc.malloc_trim(0)


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
