"""The kernel side of the widget that crosses threads: one engine, its listener, and waiting on it.

Split from ``widget.py`` so the view code never touches engine-thread state directly.

Thread boundaries
    * **kernel main thread** calls every public method here (the widget's API and handlers).
    * **engine thread** (``voicechat-engine``, owned by :class:`ConversationThread`) runs the
      listener made by :meth:`EngineSession._listener`: it updates the lock-protected
      :class:`UiBridge`, sends reply audio and flushes to the browser (``VoiceBridge.send_audio``
      and ``flush`` only call ``Comm.send``, thread-safe in ipykernel ≥ 6), records what
      :meth:`wait_reply` and the callbacks need under ``_cond``, then calls ``on_change`` — which
      must itself be thread-safe (the widget's ``_request_refresh``).
    * **voicechat-ready** waits for the models to load and reports a factory error;
      **voicechat-close** joins an engine replaced by a language/backend switch, so the main
      thread never waits for it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from voicechat.config import Settings
from voicechat.conversation_factory import conversation_factory
from voicechat.conversation_thread import ConversationThread
from voicechat.engine import Conversation
from voicechat.events import (
    AudioOut,
    Event,
    FinalTranscript,
    Interrupted,
    ReplyDone,
    State,
    StateChanged,
    TurnMetrics,
)
from voicechat.notebook.browser_widget import VoiceBridge
from voicechat.ui_state import UiBridge


class EngineSession:
    """One conversation engine at a time (a restart makes a new generation ``gen``)."""

    def __init__(self, bridge: VoiceBridge, on_change: Callable[[], None], output_rate: int) -> None:
        self._bridge = bridge
        self._on_change = on_change
        self._output_rate = output_rate
        self._cond = threading.Condition()
        self.gen = 0
        self.runner: ConversationThread | None = None
        self.ui = UiBridge()
        self.error: BaseException | None = None
        self._cleared_upto = 0
        self._replies = 0
        self._awaiting = 0
        self._last_reply: tuple[int, str, bool] = (0, "", False)
        self._metric_turns: set[int] = set()
        self._state = State.IDLE
        self._callbacks: deque[tuple[str, str]] = deque()

    @property
    def ready(self) -> bool:
        return self.runner is not None and self.runner.ready

    # ------------------------------------------------------------------ lifecycle (main thread)
    def start(self, settings: Settings, *, half_duplex: bool) -> None:
        """(Re)start on ``settings``; the old engine's audio is flushed and it is closed off-thread."""
        old = self.runner
        if old is not None:
            self._bridge.flush(gen=self.gen, turn=1 << 30)
            threading.Thread(target=old.close, name="voicechat-close", daemon=True).start()
        with self._cond:
            self.gen += 1
            gen = self.gen
            self.ui = UiBridge()
            self.error = None
            self._cleared_upto = 0
        factory = conversation_factory(settings, output_rate=self._output_rate, half_duplex=half_duplex)
        runner = ConversationThread(factory, self._listener(gen, self.ui))
        self.runner = runner

        def watch() -> None:  # voicechat-ready thread
            try:
                runner.wait_ready(None)
            except BaseException as exc:
                with self._cond:
                    if gen == self.gen:
                        self.error = exc
                    self._cond.notify_all()
            self._on_change()

        threading.Thread(target=watch, name="voicechat-ready", daemon=True).start()

    def close(self) -> None:
        """Stop the engine and join its thread (blocks up to a few seconds)."""
        runner, self.runner = self.runner, None
        with self._cond:
            self.gen += 1
            self._cond.notify_all()
        if runner is not None:
            runner.close()

    # ------------------------------------------------------------------ engine thread
    def _listener(self, gen: int, ui: UiBridge) -> Callable[[Event], None]:
        def listener(ev: Event) -> None:
            if gen != self.gen:
                return  # an engine being replaced
            if isinstance(ev, AudioOut):
                self._bridge.send_audio(ev.pcm, ev.sample_rate, gen=gen, turn=ev.turn)
                ui.handle(ev)
                return
            if isinstance(ev, Interrupted):
                self._bridge.flush(gen=gen, turn=ev.turn)
            turn = getattr(ev, "turn", None)
            if isinstance(ev, FinalTranscript) and ev.turn <= self._cleared_upto:
                self._cleared_upto = ev.turn - 1  # a turn number reused after clear(): a new turn
            elif turn is not None and turn <= self._cleared_upto:
                return  # the tail of a turn that clear() cancelled
            ui.handle(ev)
            with self._cond:
                if isinstance(ev, FinalTranscript):
                    self._callbacks.append(("transcript", ev.text))
                elif isinstance(ev, ReplyDone):
                    self._callbacks.append(("reply", ev.text))
                    self._replies += 1
                    self._last_reply = (ev.turn, ev.text, ev.interrupted or ev.cut_off)
                elif isinstance(ev, TurnMetrics):
                    self._metric_turns.add(ev.turn)
                elif isinstance(ev, StateChanged):
                    self._state = ev.state
                self._cond.notify_all()
            self._on_change()

        return listener

    # ------------------------------------------------------------------ any thread → engine
    def push(self, pcm: np.ndarray, rate: int) -> None:
        if self.runner is not None:
            self.runner.push(pcm, rate)  # schedules on the engine loop; never blocks

    def submit_text(self, text: str) -> None:
        self.mark_awaiting()
        if self.runner is not None:
            self.runner.submit_text(text)

    def stop_speaking(self) -> None:
        if self.runner is not None:
            self.runner.stop_speaking()

    def clear(self) -> None:
        """Clear the conversation and the picture together, on the engine thread."""
        ui = self.ui

        def on_engine(c: Conversation) -> None:
            self._cleared_upto = c.turn
            c.clear()
            ui.reset()

        if self.ready:
            self.read(on_engine, None)
        else:
            ui.reset()

    def set_half_duplex(self, value: bool) -> None:
        self.read(lambda c: setattr(c, "half_duplex", value), None)

    def read(self, fn: Callable[[Conversation], Any], default: Any) -> Any:
        """``fn(conversation)`` on the engine thread, or ``default`` while no engine runs."""
        runner = self.runner
        if runner is None or not runner.ready:
            return default
        return runner.run(fn)

    # ------------------------------------------------------------------ waiting (main thread)
    def mark_awaiting(self) -> None:
        """The next :meth:`wait_reply` waits for a reply newer than every one so far."""
        with self._cond:
            self._awaiting = self._replies

    def wait_ready(self, timeout: float | None) -> None:
        if self.runner is None:
            raise RuntimeError("the widget is closed")
        self.runner.wait_ready(timeout)

    def wait_reply(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        with self._cond:
            if not self._cond.wait_for(lambda: self._replies > self._awaiting or self.error is not None, timeout):
                raise TimeoutError(f"no reply within {timeout:.0f} s (was anything said?)")
            if self.error is not None:
                raise self.error
            turn, text, interrupted = self._last_reply
            # The turn's metrics follow its ReplyDone: wait a little so .metrics includes them.
            self._cond.wait_for(
                lambda: interrupted or turn in self._metric_turns, max(0.0, min(10.0, deadline - time.monotonic()))
            )
            # Done means heard: wait until its audio has played (the engine is listening again),
            # so audio fed next is not taken for a barge-in.
            self._cond.wait_for(
                lambda: self._state in (State.LISTENING, State.IDLE), max(0.0, deadline - time.monotonic())
            )
            self._awaiting = self._replies
        return text

    def take_callbacks(self) -> list[tuple[str, str]]:
        with self._cond:
            calls = list(self._callbacks)
            self._callbacks.clear()
        return calls
