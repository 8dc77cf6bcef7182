"""One voice conversation per browser session: the engine thread, its bridge and the audio outlet.

Streamlit reruns the page script on every interaction, so anything that must outlive a run
(the engine, the transcript, the reply audio queue) lives in a :class:`VoiceSession` kept in
``st.session_state``. The session object itself imports no Streamlit, which keeps it
unit-testable.

Thread boundaries, all of them, and which methods each one calls:

- **aiortc's loop** (Streamlit's server event loop in streamlit-webrtc): :meth:`VoiceSession.push`
  with every microphone frame, counted and handed to the runner's ``push``. The app runs each
  engine on this same loop (``media_loop``, :class:`ConversationOnLoop`: the frame goes straight
  in, and :meth:`UiBridge.handle` is called here too); without it, on an engine thread
  (``voicechat-engine``, :class:`ConversationThread`). ``UiBridge.handle`` calls
  :meth:`AudioOutlet.push` with reply audio and :meth:`AudioOutlet.clear` on barge-in/stop.
- **aiortc's loop again**: pulls 20 ms frames out of the attached ``PcmAudioSource``
  (guarded by that class's own lock).
- **Streamlit's script thread**: every other method (``ensure_engine``, ``submit_text``,
  ``webrtc_changed``, ``history``, ``stats``...).
- **streamlit-webrtc's ``ShutdownPolling_*`` thread**: :meth:`VoiceSession.close` when the browser
  session ends (registered through ``SessionShutdownObserver`` by the page).
- **aiortc's loop**, when the WebRTC connection ends: :meth:`VoiceSession.connection_ended`, from
  the mic sink track's ``on_ended`` (aiortc saw the peer close) or from the page's disconnect
  watch (:class:`voicechat.streamlit.webrtc.DisconnectWatch`: the browser's websocket is gone and no mic
  frame came for 0.5 s — a closed tab whose goodbye packets aiortc never got). Streamlit
  keeps a disconnected browser session alive for minutes and no script run happens after a
  closed tab, so this is what stops a departed browser's engine; it must not block the loop,
  so it hands the stop to a short ``voicechat-disconnect`` thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from voicechat.config import Settings
from voicechat.conversation_factory import conversation_factory
from voicechat.conversation_on_loop import ConversationOnLoop, running_engines
from voicechat.conversation_thread import ConversationRunner, ConversationThread
from voicechat.engine import Conversation
from voicechat.events import AudioOut, Event, FinalTranscript, Interrupted, ReplyDelta, ReplyDone, TurnMetrics
from voicechat.history import Entry, History
from voicechat.recording import Recording, joined
from voicechat.streamlit.audio_outlet import AudioOutlet
from voicechat.streamlit.session_limit import SLOTS
from voicechat.streamlit.stats_log import write_stats
from voicechat.ui_state import UiBridge

log = logging.getLogger(__name__)

OUTPUT_RATE = 48_000  # the engine speaks at WebRTC's native Opus rate: no resampling on the way out
ENGINE_THREAD = "voicechat-engine"


def engine_factory(
    settings: Settings, *, half_duplex: bool = False, history: list[Entry] | None = None
) -> Callable[[Callable[[Event], None]], Conversation]:
    """A conversation factory; runs off the page's thread (the runner's), so the models load there.

    ``stt == "browser"`` builds the conversation without server STT: the page's Web Speech
    component sends final text instead, while server VAD still drives barge-in.
    """
    return conversation_factory(
        settings,
        stt=None if settings.stt == "browser" else "auto",
        output_rate=OUTPUT_RATE,
        half_duplex=half_duplex,
        history=history or (),
    )


_TURN_EVENTS = (AudioOut, FinalTranscript, Interrupted, ReplyDelta, ReplyDone, TurnMetrics)


def continuing_turn_numbers(listener: Callable[[Event], None], offset: int) -> Callable[[Event], None]:
    """Engine thread: pass events on with turn numbers moved up by ``offset``.

    Each engine counts turns from 1; a session restarts its engine on every WebRTC start and
    settings change, and the transcript and latency chart must keep counting, not repeat turn 1.
    """
    if offset == 0:
        return listener

    def handle(event: Event) -> None:
        if isinstance(event, _TURN_EVENTS):
            event = replace(event, turn=event.turn + offset)
        listener(event)

    return handle


class VoiceSession:
    """Everything one browser session needs; see the module docstring for who calls what."""

    def __init__(
        self,
        factory: Callable[..., Callable[[Callable[[Event], None]], Conversation]] = engine_factory,
        *,
        media_loop: Callable[[], asyncio.AbstractEventLoop | None] | None = None,
    ) -> None:
        """``media_loop``: gives the running loop the mic frames arrive on (aiortc's); engines then
        run there (:class:`ConversationOnLoop`, no hop per frame). Else (or no such loop): a thread each."""
        self.id = uuid.uuid4().hex[:8]
        self._media_loop = media_loop
        self.outlet = AudioOutlet()
        self.bridge = UiBridge(on_audio=self.outlet.push, on_flush=self.outlet.clear)
        self._factory = factory
        self._lock = threading.Lock()  # guards _runner swaps against push() on aiortc's loop
        # Serialises starting and stopping engines: two script threads of one session can overlap (a
        # rerun while the old run is stopping) and each would start an engine, the first one leaked;
        # the disconnect thread stops engines too. Never taken by push() or stats().
        self._engine_lock = threading.RLock()
        self._runner: ConversationRunner | None = None
        self._settings: Settings | None = None
        self._half_duplex = False
        self._archive: list[Entry] = []  # history of engines already closed (carried into the next one)
        self._recordings: list[tuple[Recording, int]] = []  # engines already closed: (recording, turns before it)
        self._turn_offset = 0  # turns before the current engine (it counts from 1 again)
        self._frames_in = 0
        self._frames_this_start = 0
        self.webrtc_starts = 0
        self.webrtc_active = False
        self.browser_stt_error: str | None = None
        self.refused_at_limit: int | None = None  # the session limit refused its last Start (the limit then)
        self.engine_started_once = False
        self.engine_starts = 0
        self.page_info: dict[str, Any] = {}  # counters the page adds to stats() (e.g. the run-count barrier)
        self.closed = False
        self.last_frame_at = 0.0  # time.monotonic() of the last mic frame (aiortc loop writes, any reads)
        self.watching = False  # a DisconnectWatch is ticking for this session (aiortc loop)

    # ------------------------------------------------------------------ aiortc loop
    def push(self, frame: Any) -> None:
        """aiortc loop: one microphone frame (an ``av.AudioFrame``) for the engine."""
        with self._lock:
            self._frames_in += 1
            self._frames_this_start += 1
            self.last_frame_at = time.monotonic()
            runner = self._runner
        if runner is not None:
            runner.push(frame)

    def connection_ended(self, cause: str = "track-ended") -> None:
        """aiortc loop: the WebRTC connection ended; stop the engine it was feeding, off the loop.

        Only the engine running now is stopped (a later start may already have made a new one
        by the time the thread runs); the stop is logged to the test hook with its latency.
        """
        with self._lock:
            runner = self._runner
        if runner is None:
            return
        ended = time.time()

        def stop() -> None:
            SLOTS.release(self.id)
            self.close_engine(only=runner)
            write_stats(
                self.id,
                self.stats(),
                event="webrtc-ended",
                cause=cause,
                ended_at=round(ended, 3),
                stop_s=round(time.time() - ended, 3),
            )

        threading.Thread(target=stop, name="voicechat-disconnect", daemon=True).start()

    # ------------------------------------------------------------------ script thread
    @property
    def runner(self) -> ConversationRunner | None:
        return self._runner

    @property
    def settings(self) -> Settings | None:
        return self._settings

    def ensure_engine(self, settings: Settings, *, half_duplex: bool = False) -> ConversationRunner:
        """Start the engine, or restart it when the settings changed; half-duplex changes apply live."""
        with self._engine_lock:
            return self._ensure_engine(settings, half_duplex)

    def _ensure_engine(self, settings: Settings, half_duplex: bool) -> ConversationRunner:
        current = self._runner
        if current is not None and current.alive and self._settings == settings:
            if half_duplex != self._half_duplex and current.ready:
                with contextlib.suppress(RuntimeError, TimeoutError):
                    current.run(lambda c: setattr(c, "half_duplex", half_duplex), timeout=2.0)
                    self._half_duplex = half_duplex
            return current
        if self._settings is not None:
            changed = sorted(f for f, v in vars(settings).items() if getattr(self._settings, f) != v)
            log.info("restarting the engine: %s changed", ", ".join(changed) or "nothing (it had stopped)")
        self.close_engine()
        self.engine_starts += 1
        snap = self.bridge.snapshot()
        self._turn_offset = max([0, *(line.turn for line in snap.lines), *(m.turn for m in snap.metrics)])
        factory = self._factory(settings, half_duplex=half_duplex, history=list(self._archive))
        listener = continuing_turn_numbers(self.bridge.handle, self._turn_offset)
        loop = self._media_loop() if self._media_loop is not None else None
        runner: ConversationRunner = (
            ConversationOnLoop(factory, listener, loop=loop, name=ENGINE_THREAD)
            if loop is not None and loop.is_running()
            else ConversationThread(factory, listener, name=ENGINE_THREAD)
        )
        with self._lock:
            closed = self.closed
            if not closed:
                self._runner = runner
                self._settings = settings
                self._half_duplex = half_duplex
        if closed:  # the session ended (ShutdownPolling thread) while this run was starting an engine
            runner.close()
        self.engine_started_once = True
        return runner

    def close_engine(self, only: ConversationRunner | None = None) -> None:
        """Stop the engine thread (WebRTC stopped, settings changed); its history is kept for the next one.

        With ``only``, stop the engine only if it is still that one (see :meth:`connection_ended`).
        """
        with self._engine_lock:
            self._close_engine(only)

    def _close_engine(self, only: ConversationRunner | None) -> None:
        with self._lock:
            if only is not None and self._runner is not only:
                return
            runner, self._runner = self._runner, None
        if runner is None:
            return
        # Let a starting engine finish loading, then make one call on its loop: once that returns the
        # loop is running, so ConversationThread.close() stops it (closing in the instant between
        # "ready" and the loop starting skips the stop and leaves the thread running for good).
        with contextlib.suppress(Exception):
            runner.wait_ready(5.0)
        if runner.ready:
            with contextlib.suppress(RuntimeError, TimeoutError):
                self._archive = self._merged(runner.run(lambda c: list(c.history.entries), timeout=2.0))
            self._keep_recording(runner)
        runner.close()
        self.outlet.clear()

    def _keep_recording(self, runner: ConversationRunner) -> None:
        """A closing engine's recording outlives it (pressing stop must not lose it), up to the size limit."""
        rec = None
        with contextlib.suppress(RuntimeError, TimeoutError):
            rec = runner.run(lambda c: c.recording.take() if c.recording is not None else None, timeout=2.0)
        limit = self._settings.record_max_s if self._settings is not None else 0.0
        if rec is not None and rec.duration_s > 0 and sum(r.duration_s for r, _ in self._recordings) < limit:
            self._recordings.append((rec, self._turn_offset))

    def recording(self) -> Recording | None:
        """Both sides of the whole conversation so far (earlier engines' and the live one's), or None."""
        parts = list(self._recordings)
        runner, settings = self._runner, self._settings
        if runner is not None and runner.ready:
            with contextlib.suppress(RuntimeError, TimeoutError):
                live = runner.run(lambda c: c.recording.take() if c.recording is not None else None, timeout=2.0)
                if live is not None:
                    parts.append((live, self._turn_offset))
        return joined(parts, settings.record_max_s if settings is not None else 0.0)

    def webrtc_changed(self, active: bool) -> bool:
        """Record the WebRTC state seen by this run; returns True when it just stopped."""
        if active and not self.webrtc_active:
            self.webrtc_starts += 1
            with self._lock:
                self._frames_this_start = 0
        stopped = self.webrtc_active and not active
        self.webrtc_active = active
        return stopped

    def submit_text(self, text: str, settings: Settings, *, half_duplex: bool = False, timeout: float = 120.0) -> None:
        """Typed or browser-recognised text: reply to it (waits for the models the first time)."""
        runner = self.ensure_engine(settings, half_duplex=half_duplex)
        runner.wait_ready(timeout)
        runner.submit_text(text)

    def stop_speaking(self) -> None:
        if self._runner is not None:
            self._runner.stop_speaking()
        self.outlet.clear()

    def clear(self) -> None:
        """The "clear conversation" button: engine history, archived history and the on-screen transcript."""
        if self._runner is not None:
            self._runner.clear()
        self._archive = []
        self._recordings = []
        self.outlet.clear()
        self.bridge.reset()

    def _merged(self, entries: list[Entry]) -> list[Entry]:
        """An engine's history (the archive it was seeded with, then its own) with its turns renumbered."""
        if entries[: len(self._archive)] != self._archive:  # cleared meanwhile: all of it is new
            return [replace(e, turn=e.turn + self._turn_offset) for e in entries]
        own = entries[len(self._archive) :]
        return [*self._archive, *(replace(e, turn=e.turn + self._turn_offset) for e in own)]

    def history(self) -> History:
        """The whole conversation so far, for export (the live engine's, or the last closed one's)."""
        out = History()
        runner = self._runner
        entries = self._archive
        if runner is not None and runner.ready:
            with contextlib.suppress(RuntimeError, TimeoutError):
                entries = self._merged(runner.run(lambda c: list(c.history.entries), timeout=2.0))
        for entry in entries:
            out.add(entry)
        return out

    def stats(self) -> dict[str, Any]:
        """What the server has seen, for the test hook and the stress script."""
        snap = self.bridge.snapshot()
        runner = self._runner
        with self._lock:
            frames_in, frames_start = self._frames_in, self._frames_this_start
        return {
            "frames_in": frames_in,
            "frames_this_start": frames_start,
            "webrtc_starts": self.webrtc_starts,
            "webrtc_active": self.webrtc_active,
            "engine_alive": bool(runner and runner.alive),
            "engine_ready": bool(runner and runner.ready),
            "engine_starts": self.engine_starts,
            "engines_running": running_engines(),
            "state": snap.state.value,
            "heard_speech": snap.heard_speech,
            "user_lines": [line.text for line in snap.lines if line.role == "user"],
            "assistant_lines": [line.text for line in snap.lines if line.role == "assistant" and not line.streaming],
            "audio_frames_out": snap.audio_frames_out,
            "metrics_turns": len(snap.metrics),
            "line_end_scores": [m.line_end for m in snap.metrics],
            "pushed_samples": self.outlet.pushed_samples,
            "errors": list(snap.errors),
            "browser_stt_error": self.browser_stt_error,
            "refused_at_limit": self.refused_at_limit,
            "live_sessions": SLOTS.holders(),
            "closed": self.closed,
            **self.page_info,
        }

    # ------------------------------------------------------------------ any thread
    def close(self) -> None:
        """End of the browser session (ShutdownPolling thread) or of a test: nothing is left running."""
        with self._lock:
            self.closed = True
        SLOTS.release(self.id)
        self.close_engine()
        self.outlet.attach(None)
