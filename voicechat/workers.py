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
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

POOL = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="voicechat-model")


def submit(fn: Callable[..., T], *args: Any, **kwargs: Any) -> asyncio.Future[T]:
    """Run ``fn`` on the pool; await the returned future from the calling event loop."""
    loop = asyncio.get_running_loop()
    return loop.run_in_executor(POOL, functools.partial(fn, *args, **kwargs))


async def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await submit(fn, *args, **kwargs)
