"""A Conversation run on an event loop that someone else owns: the media loop, with no hop per frame.

:class:`~voicechat.conversation_thread.ConversationThread` gives each conversation a thread and a
loop of its own, so every 20 ms microphone frame crosses a thread: a write to that loop's
self-pipe, a thread switch, the interpreter lock handed over and back. With many calls in one
process those hops cost a measurable share of each call's CPU (docs/per-call-cost.md, "Cutting the
per-call cost"). Where the frames already arrive on an asyncio loop — aiortc's, in the Streamlit
app — :class:`ConversationOnLoop` runs the conversation on that same loop: a frame pushed there
goes straight into :meth:`Conversation.accept`. The engine's blocking model calls already run on
worker threads (:mod:`voicechat.workers`), so the loop is never held for longer than the per-frame
voice detection.

The public methods are :class:`~voicechat.conversation_thread.LoopFedConversation`'s, shared with
:class:`ConversationThread`, so a surface can hold either.

Threads: the factory (model loading) runs on a short-lived loader thread, ``<name>-load``, so the
loop never waits for a model; everything else runs on ``loop``, and the listener is called there.
Every public method may be called from any thread: on the loop's own thread it acts at once, from
any other it schedules the work on the loop (frames through the same inbox as ConversationThread).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import weakref
from collections.abc import Callable

from voicechat.conversation_thread import LoopFedConversation
from voicechat.engine import Conversation
from voicechat.events import Event

_live: weakref.WeakSet[ConversationOnLoop] = weakref.WeakSet()  # ready and not closed, for running_engines()


def running_engines(thread_name: str = "voicechat-engine") -> int:
    """Conversations running in this process: on shared loops, plus engine threads named ``thread_name``.

    For the app's test hook (a stopped call must leave none behind); any thread.
    """
    return len(list(_live)) + sum(t.name == thread_name for t in threading.enumerate())


def _on(loop: asyncio.AbstractEventLoop) -> bool:
    """The caller runs on ``loop`` (so it may act on the conversation directly)."""
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


class ConversationOnLoop(LoopFedConversation):
    """Runs one :class:`Conversation` on ``loop`` (already running, owned by the caller)."""

    def __init__(
        self,
        factory: Callable[[Callable[[Event], None]], Conversation],
        listener: Callable[[Event], None],
        *,
        loop: asyncio.AbstractEventLoop,
        name: str = "voicechat-engine",
    ) -> None:
        super().__init__(loop, listener)
        self._loader = threading.Thread(target=self._load, args=(factory,), name=f"{name}-load", daemon=True)
        self._loader.start()

    # ----------------------------------------------------------------- loader thread
    def _load(self, factory: Callable[[Callable[[Event], None]], Conversation]) -> None:
        try:
            conv = factory(self._listener)
        except BaseException as exc:  # reported to whoever waits in ``wait_ready``
            self._error = exc
            self._ready.set()
            return
        try:
            warm = asyncio.run_coroutine_threadsafe(conv.warm_up(), self._loop)
            with contextlib.suppress(Exception):  # a failed warm-up shows up again, clearly, on the first turn
                warm.result(300)
        except RuntimeError:  # the loop closed meanwhile: nothing will run this conversation
            self._error = RuntimeError("the event loop closed before the conversation started")
            self._ready.set()
            return
        self._conv = conv
        _live.add(self)
        self._ready.set()
        if self._closed:  # closed while loading: release what the factory made
            self._closed = False
            self.close()

    # ----------------------------------------------------------------- any thread
    def _here(self) -> bool:
        return _on(self._loop)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the conversation (the loop goes on); safe to call twice and from any thread.

        On the loop's own thread the stop is scheduled, not waited for (waiting there would block
        the very loop that has to run it).
        """
        if self._closed:
            return
        self._closed = True
        _live.discard(self)
        conv = self._conv
        if conv is None:  # still loading: ``_load`` closes it when it is made
            return
        self._inbox.drop()
        if _on(self._loop):
            self._loop.create_task(conv.aclose())
            return
        with contextlib.suppress(RuntimeError):  # the loop closed: nothing left to stop
            fut = asyncio.run_coroutine_threadsafe(conv.aclose(), self._loop)
            with contextlib.suppress(concurrent.futures.TimeoutError):
                fut.result(timeout)

    @property
    def alive(self) -> bool:
        """Loading or running (a conversation on a shared loop has no thread of its own to ask)."""
        return not self._closed and self._error is None and not self._loop.is_closed()
