"""A Conversation on its own event-loop thread, fed from any thread.

Surfaces receive audio on threads they do not own (aiortc's track thread in Streamlit,
the kernel's comm handler in Jupyter). :class:`ConversationThread` owns a private asyncio
loop in a daemon thread; every public method may be called from any thread and only
schedules work on that loop. Events are handed to ``listener`` on the loop thread, so the
listener itself must be thread-safe (a lock-protected bridge, a queue). A surface whose audio
already arrives on an asyncio loop can run the conversation there instead, without a hop per
frame (:class:`voicechat.conversation_on_loop.ConversationOnLoop`, the Streamlit app's choice).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable
from typing import Any, Protocol

import av
import numpy as np

from voicechat import workers
from voicechat.engine import Conversation
from voicechat.events import Event


class ConversationRunner(Protocol):
    """What a surface holds to talk to a running conversation from any thread.

    :class:`ConversationThread` (its own thread and loop) and
    :class:`voicechat.conversation_on_loop.ConversationOnLoop` (a loop the surface already runs).
    """

    @property
    def ready(self) -> bool: ...
    @property
    def alive(self) -> bool: ...
    @property
    def conversation(self) -> Conversation | None: ...
    def wait_ready(self, timeout: float | None = None) -> Conversation: ...
    def push(self, audio: av.AudioFrame | np.ndarray, sample_rate: int | None = None) -> None: ...
    def submit_text(self, text: str) -> None: ...
    def stop_speaking(self) -> None: ...
    def clear(self) -> None: ...
    def run(self, fn: Callable[[Conversation], Any], timeout: float = 10.0) -> Any: ...
    def close(self, timeout: float = 5.0) -> None: ...


class FrameInbox:
    """Microphone frames on their way from the thread that receives them to the engine's loop.

    :meth:`put` says whether the loop must be woken (the inbox was empty and no drain is due);
    :meth:`take`, on the loop, empties it. One wake then carries every frame that queued meanwhile.
    Thread-safe (a lock around two assignments).
    """

    def __init__(self) -> None:
        self._frames: list[tuple[av.AudioFrame | np.ndarray, int | None]] = []
        self._lock = threading.Lock()
        self._due = False  # a drain is scheduled and has not taken the frames yet

    def put(self, audio: av.AudioFrame | np.ndarray, sample_rate: int | None) -> bool:
        with self._lock:
            self._frames.append((audio, sample_rate))
            if self._due:
                return False
            self._due = True
            return True

    def take(self) -> list[tuple[av.AudioFrame | np.ndarray, int | None]]:
        with self._lock:
            frames, self._frames = self._frames, []
            self._due = False
        return frames

    def drop(self) -> None:
        self.take()


class LoopFedConversation:
    """What both runners share: a :class:`Conversation` on an asyncio ``loop``, fed from any thread.

    Subclasses set up the loop and start the conversation (:class:`ConversationThread` on a thread
    of its own, :class:`~voicechat.conversation_on_loop.ConversationOnLoop` on one the caller runs),
    set ``_conv`` or ``_error`` and then ``_ready``, and say how to close. Every method here may be
    called from any thread; ``_here`` says whether the caller is on the loop's thread, where work
    runs at once instead of being scheduled.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, listener: Callable[[Event], None]) -> None:
        self._loop = loop
        self._listener = listener
        self._ready = threading.Event()
        self._conv: Conversation | None = None
        self._error: BaseException | None = None
        self._closed = False
        self._inbox = FrameInbox()

    def _here(self) -> bool:
        """The caller runs on the loop's thread (only a shared loop is ever called from there)."""
        return False

    def wait_ready(self, timeout: float | None = None) -> Conversation:
        """Block until the models are loaded; re-raises the factory's error. Not on the loop's thread."""
        if not self._ready.wait(timeout):
            raise TimeoutError("the conversation engine did not start in time")
        if self._error is not None:
            raise self._error
        assert self._conv is not None
        return self._conv

    @property
    def ready(self) -> bool:
        return self._ready.is_set() and self._conv is not None

    @property
    def conversation(self) -> Conversation | None:
        return self._conv

    def _call(self, fn: Callable[..., Any], *args: Any) -> bool:
        """Run ``fn`` on the loop (now, when already there); False when it never will (not ready, closed)."""
        if self._closed or not self.ready:
            return False
        if self._here():
            fn(*args)
            return True
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop closed between the check and the call
            return False
        return True

    def push(self, audio: av.AudioFrame | np.ndarray, sample_rate: int | None = None) -> None:
        """Microphone audio; dropped silently before ready or after close.

        On the loop's thread it goes straight into the engine. From any other, frames wait in a
        :class:`FrameInbox`; the loop is woken only when the inbox was empty, and takes everything
        there in one callback, so a busy engine wakes once for several frames (no task per frame).
        """
        conv = self._conv
        if conv is None or self._closed:
            return
        if self._here():
            conv.accept(audio, sample_rate)
        elif self._inbox.put(audio, sample_rate) and not self._call(self._drain):
            self._inbox.drop()  # the engine is gone: nothing will take these

    def _drain(self) -> None:
        """The loop's thread: every frame pushed since the last drain, in order."""
        conv = self._conv
        for audio, rate in self._inbox.take():
            if conv is not None:
                conv.accept(audio, rate)

    def submit_text(self, text: str) -> None:
        if self._conv is not None:
            self._call(self._conv.submit_text, text)

    def stop_speaking(self) -> None:
        if self._conv is not None:
            self._call(self._conv.stop_speaking)

    def clear(self) -> None:
        if self._conv is not None:
            self._call(self._conv.clear)

    def run(self, fn: Callable[[Conversation], Any], timeout: float = 10.0) -> Any:
        """``fn(conversation)`` on the loop and its result (for reads); directly when already there."""
        conv = self._conv
        if not self.ready or self._closed or conv is None:
            raise RuntimeError("the conversation is not running")
        if self._here():
            return fn(conv)
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def call() -> None:
            try:
                fut.set_result(fn(conv))
            except BaseException as exc:
                fut.set_exception(exc)

        self._loop.call_soon_threadsafe(call)
        return fut.result(timeout)


class ConversationThread(LoopFedConversation):
    """Runs one :class:`Conversation`; build it with a factory so models load off the caller's thread."""

    def __init__(
        self,
        factory: Callable[[Callable[[Event], None]], Conversation],
        listener: Callable[[Event], None],
        *,
        name: str = "voicechat-engine",
    ) -> None:
        super().__init__(asyncio.new_event_loop(), listener)
        self._thread = threading.Thread(target=self._main, args=(factory,), name=name, daemon=True)
        self._thread.start()

    # ----------------------------------------------------------------- engine thread
    def _main(self, factory: Callable[[Callable[[Event], None]], Conversation]) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._conv = factory(self._listener)
            with contextlib.suppress(Exception):  # a failed warm-up shows up again, clearly, on the first turn
                self._loop.run_until_complete(self._conv.warm_up())
        except BaseException as exc:  # reported to whoever waits in ``wait_ready``
            self._error = exc
            self._conv = None
        finally:
            self._ready.set()
        if self._conv is not None:
            self._loop.run_forever()
        # Run until every scheduled callback and task has finished, then close.
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        if pending:
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.run_until_complete(self._loop.shutdown_default_executor())
        self._loop.close()

    # ----------------------------------------------------------------- any thread
    def close(self, timeout: float = 5.0) -> None:
        """Stop the engine and join its thread; safe to call twice and from any thread but its own."""
        if self._closed:
            return
        self._closed = True
        self._ready.wait(timeout)
        if self._conv is not None and not self._loop.is_closed():
            # Not ``is_running()``: just after ready, the thread may not have entered run_forever
            # yet; work queued now runs as soon as it does, and ``stop`` then ends it.
            fut = asyncio.run_coroutine_threadsafe(self._conv.aclose(), self._loop)
            with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
                fut.result(timeout)
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        workers.trim_heap()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()
