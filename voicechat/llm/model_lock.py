"""The lock of a loaded llama model that every session of the process shares, and who waits for it.

Replies and end-of-turn scores take the model when they need it (a turn is waiting on them);
priming reads a conversation in ahead of time, only when the model is free. A prime of a reply
just played is ~16–60 tokens, 50–250 ms of one core: a score arriving meanwhile would wait all of
that. :attr:`ModelLock.wanted` lets the prime read in short pieces and stop between two of them
as soon as anyone waits, keeping what it has read (see :func:`voicechat.llm.local.extend_cache`).

Threads: any (worker threads take it; the counter has its own small lock).
"""

from __future__ import annotations

import threading
from types import TracebackType


class ModelLock:
    """A :class:`threading.Lock` that counts the threads blocked on it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = threading.Lock()
        self._waiting = 0

    def acquire(self, blocking: bool = True) -> bool:
        if not blocking:
            return self._lock.acquire(blocking=False)
        with self._count:
            self._waiting += 1
        try:
            return self._lock.acquire()
        finally:
            with self._count:
                self._waiting -= 1

    def release(self) -> None:
        self._lock.release()

    @property
    def wanted(self) -> bool:
        """Someone is blocked waiting for the model now (work ahead of time should give way)."""
        return self._waiting > 0

    def __enter__(self) -> ModelLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
