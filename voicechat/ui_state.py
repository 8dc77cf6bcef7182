"""What a UI shows, kept up to date from engine events: one lock, snapshots out.

Both surfaces (Streamlit, notebook) need the same picture of the conversation: the status
light, the live transcript, the messages with the reply streaming in, metrics and errors.
:class:`UiBridge` is the listener given to :class:`voicechat.conversation_thread.ConversationThread`:
``handle`` runs on the engine thread, ``snapshot`` on the UI thread (Streamlit's script
thread, the kernel's main thread). Reply audio is not stored here; it goes straight to
the surface's audio sink (``on_audio``/``on_flush``), which must be thread-safe itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

import numpy as np

from voicechat.events import (
    AudioOut,
    ErrorEvent,
    Event,
    FinalTranscript,
    Interrupted,
    PartialTranscript,
    ReplyDelta,
    ReplyDone,
    SpeechStarted,
    State,
    StateChanged,
    TurnMetrics,
)

MAX_ERRORS = 20


@dataclass(frozen=True)
class ChatLine:
    role: str  # "user" | "assistant"
    text: str
    turn: int
    at: str
    streaming: bool = False
    interrupted: bool = False
    cut_off: bool = False


@dataclass(frozen=True)
class Snapshot:
    state: State = State.IDLE
    partial: str = ""
    lines: tuple[ChatLine, ...] = ()
    metrics: tuple[TurnMetrics, ...] = ()
    errors: tuple[str, ...] = ()
    audio_frames_out: int = 0
    heard_speech: int = 0
    version: int = 0
    extra: dict[str, object] = field(default_factory=dict)


def _now() -> str:
    return datetime.now(timezone.utc).astimezone().strftime("%H:%M:%S")


class UiBridge:
    """Thread-safe: ``handle`` on the engine thread, ``snapshot``/``reset`` on any other."""

    def __init__(
        self, on_audio: Callable[[np.ndarray, int], None] | None = None, on_flush: Callable[[], None] | None = None
    ) -> None:
        self._lock = threading.Lock()
        self._snap = Snapshot()
        self._on_audio = on_audio
        self._on_flush = on_flush

    def handle(self, event: Event) -> None:
        if isinstance(event, AudioOut):
            if self._on_audio is not None:
                self._on_audio(event.pcm, event.sample_rate)
            with self._lock:
                self._snap = replace(self._snap, audio_frames_out=self._snap.audio_frames_out + 1)
            return
        if isinstance(event, Interrupted) and self._on_flush is not None:
            self._on_flush()
        with self._lock:
            self._snap = replace(self._apply(self._snap, event), version=self._snap.version + 1)

    @staticmethod
    def _apply(s: Snapshot, ev: Event) -> Snapshot:
        if isinstance(ev, StateChanged):
            return replace(s, state=ev.state)
        if isinstance(ev, SpeechStarted):
            return replace(s, heard_speech=s.heard_speech + 1)
        if isinstance(ev, PartialTranscript):
            return replace(s, partial=ev.text)
        if isinstance(ev, FinalTranscript):
            return replace(s, partial="", lines=(*s.lines, ChatLine("user", ev.text, ev.turn, _now())))
        if isinstance(ev, ReplyDelta):
            lines = list(s.lines)
            if lines and lines[-1].role == "assistant" and lines[-1].turn == ev.turn and lines[-1].streaming:
                lines[-1] = replace(lines[-1], text=lines[-1].text + ev.text)
            else:
                lines.append(ChatLine("assistant", ev.text.lstrip(), ev.turn, _now(), streaming=True))
            return replace(s, lines=tuple(lines))
        if isinstance(ev, ReplyDone):
            lines = list(s.lines)
            for i in range(len(lines) - 1, -1, -1):
                if lines[i].role == "assistant" and lines[i].turn == ev.turn:
                    lines[i] = replace(
                        lines[i],
                        text=ev.text or lines[i].text,
                        streaming=False,
                        interrupted=ev.interrupted,
                        cut_off=ev.cut_off,
                    )
                    break
            else:
                if ev.text:
                    lines.append(
                        ChatLine("assistant", ev.text, ev.turn, _now(), interrupted=ev.interrupted, cut_off=ev.cut_off)
                    )
            return replace(s, lines=tuple(lines))
        if isinstance(ev, Interrupted):
            lines = list(s.lines)
            for i in range(len(lines) - 1, -1, -1):
                if lines[i].role == "assistant" and lines[i].turn == ev.turn:
                    lines[i] = replace(lines[i], interrupted=True, streaming=False)
                    break
            return replace(s, lines=tuple(lines))
        if isinstance(ev, TurnMetrics):
            return replace(s, metrics=(*s.metrics, ev))
        if isinstance(ev, ErrorEvent):
            return replace(s, errors=(*s.errors, ev.message)[-MAX_ERRORS:])
        return s

    def snapshot(self) -> Snapshot:
        with self._lock:
            return self._snap

    def reset(self) -> None:
        """Clear the picture (the "clear conversation" button)."""
        with self._lock:
            self._snap = replace(Snapshot(), state=self._snap.state, version=self._snap.version + 1)
