"""``VoiceChatWidget``: the voicechat conversation inside a Jupyter notebook.

The widget is a thin surface: the same :class:`voicechat.engine.Conversation` the other surfaces
use runs on a :class:`voicechat.conversation_thread.ConversationThread` (see ``_engine_link.py``), and
:class:`voicechat.ui_state.UiBridge` keeps the picture the view shows. Nothing here decides turns,
transcribes or replies.

Thread boundaries:

* **kernel main thread** — the constructor, every public method, button/dropdown handlers,
  the bridge's custom messages (mic chunks, browser transcripts) and :meth:`_refresh`, the *only*
  place that writes widget traits (ipywidgets' trait sync is not thread-safe). User callbacks
  (``on_transcript``/``on_reply``) run here too, so they may update other widgets safely.
* **engine thread** — the session's listener sends reply audio to the browser itself and asks for
  a refresh through :meth:`_request_refresh`, which hops to the main thread with
  ``loop.call_soon_threadsafe`` on the kernel's asyncio loop (captured at construction).
* **voicechat-feed** — :meth:`feed_wav` pushes a file from its own thread (``push`` is thread-safe).

While a cell blocks the main thread (``wait_reply``, a long computation) the view and callbacks
wait; reply audio does not (it leaves from the engine thread). Without a running kernel loop
(plain Python), refreshes run on the calling thread under a lock.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import numpy as np

from voicechat.audio import SPEECH_RATE
from voicechat.backends import end_of_turn_signals
from voicechat.config import LANGUAGES, LLM_CHOICES, Settings
from voicechat.events import ErrorEvent, State
from voicechat.notebook import _view
from voicechat.notebook._engine_link import EngineSession
from voicechat.notebook.browser_widget import VoiceBridge

REFRESH_S = 0.05  # at most ~20 view updates a second while a reply streams in


class VoiceChatWidget(widgets.VBox):
    """Talk to the model from a notebook: mic button, status lights, live transcript, the chat.

    ``VoiceChatWidget()`` uses the offline default (or OpenAI when ``OPENAI_API_KEY`` is set).
    Models load in the background; the widget shows at once and says when it is ready.
    Switching language or backend starts a new engine, and with it a new, empty conversation
    (export first to keep the old one).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        language: str | None = None,
        backend: str | None = None,
        stt_mode: str = "server",
        echo_cancellation: bool = True,
        half_duplex: bool | None = None,
        output_rate: int = 24_000,
        record_audio: bool | None = None,
    ) -> None:
        s = settings or Settings.load({"language": language})
        if language is not None:
            s = s.replace(language=language)
        if record_audio is not None:
            s = s.replace(record_audio=record_audio)
        if backend is not None:
            s = s.replace(**_backend_changes(backend))
        if s.stt == "browser":  # the engine always keeps a server STT: it is the fallback
            stt_mode, s = "browser", s.replace(stt="auto")
        if stt_mode not in ("server", "browser"):
            raise ValueError(f"stt_mode must be 'server' or 'browser', not {stt_mode!r}")
        self._settings = s
        self._half_duplex = half_duplex
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._refresh_pending = False
        self._on: dict[str, list[Callable[[str], Any]]] = {"transcript": [], "reply": []}
        self._browser_partial = ""
        self._closed = False

        self.bridge = VoiceBridge(echo_cancellation=echo_cancellation, stt_mode=stt_mode, language=s.language)
        self.bridge.on_audio = self._on_mic_audio
        self.bridge.on_transcript = self._on_browser_transcript
        self.bridge.on_refused = self._on_refused
        self.bridge.max_audio_bytes = s.max_audio_bytes
        self.bridge.observe(lambda _c: self._request_refresh(), names=["mic_state", "stt_state"])
        self._session = EngineSession(self.bridge, self._request_refresh, output_rate)

        self._stop_button = widgets.Button(description="Stop speaking", icon="stop")
        self._clear_button = widgets.Button(description="Clear", icon="trash")
        self._stop_button.on_click(lambda _b: self.stop_speaking())
        self._clear_button.on_click(lambda _b: self.clear())
        self._language = widgets.Dropdown(
            options=[(name, code) for code, name in LANGUAGES.items()], value=s.language, description="Language"
        )
        self._backend = widgets.Dropdown(
            options=list(LLM_CHOICES), value=s.llm if s.llm in LLM_CHOICES else "auto", description="Backend"
        )
        self._stt = widgets.Dropdown(options=["server", "browser"], value=stt_mode, description="STT")
        self._echo = widgets.Checkbox(value=echo_cancellation, description="echo cancellation", indent=False)
        for w in (self._language, self._backend, self._stt):
            w.layout = widgets.Layout(width="220px")
        self._language.observe(self._on_language, names="value")
        self._backend.observe(self._on_backend, names="value")
        self._stt.observe(lambda c: setattr(self.bridge, "stt_mode", c["new"]), names="value")
        self._echo.observe(self._on_echo, names="value")
        self._lights = widgets.HTML(
            _view.lights_html(State.IDLE, mic_on=False, engine="loading models…", ready=False, language=s.language)
        )
        self._partial, self._chat = widgets.HTML(_view.partial_html("")), widgets.HTML(_view.chat_html(()))
        self._latency, self._errors = widgets.HTML(_view.latency_html(())), widgets.HTML(_view.errors_html(()))
        super().__init__(
            [
                widgets.HBox([self.bridge, self._stop_button, self._clear_button]),
                self._lights,
                self._partial,
                self._chat,
                self._latency,
                self._errors,
                widgets.HBox([self._language, self._backend, self._stt, self._echo]),
            ]
        )
        self.add_class("vc-root")
        self._restart_engine()

    # ------------------------------------------------------------------ public API (main thread)
    @property
    def settings(self) -> Settings:
        """The settings the running engine was built with."""
        return self._settings

    def start(self) -> None:
        """Start listening: the page opens the microphone (it may ask for permission)."""
        self.bridge.listening = True

    def stop(self) -> None:
        """Stop listening: the page closes the microphone. A reply in progress still finishes."""
        self.bridge.listening = False

    def stop_speaking(self) -> None:
        """Cut the current reply: generation stops and the page drops its queued audio."""
        self._session.stop_speaking()

    def clear(self) -> None:
        """Forget the conversation (history, metrics, the chat view) and stop any reply."""
        self._session.clear()
        self._browser_partial = ""
        self._refresh()

    def configure(self, **changes: Any) -> None:
        """Change settings (a corrected ``openai_api_key``, another model…) and restart the engine on them.

        The way out after a rejected key: the backends send nothing more until their settings
        change. The new engine starts with an empty conversation, as after a language switch.
        """
        self._settings = self._settings.replace(**changes)
        self._restart_engine()

    def ask(self, text: str) -> None:
        """Send ``text`` as if it had been heard (what browser speech recognition does)."""
        self._session.submit_text(text)

    def feed(self, pcm: np.ndarray, sample_rate: int = SPEECH_RATE) -> None:
        """Push microphone-like audio (any rate; int16 or float mono) into the conversation."""
        self._session.push(np.asarray(pcm), sample_rate)

    def feed_wav(self, path: str | Path, *, realtime: bool = False) -> threading.Thread:
        """Send an audio file (WAV, FLAC, OGG…) in 100 ms chunks of 16 kHz Int16, as the page does, from a thread.

        Trailing silence is added so the end of the turn is detected. Follow with :meth:`wait_reply`.
        """
        from voicechat.audio import float_to_int16, read_audio

        pcm = float_to_int16(read_audio(path, SPEECH_RATE))
        tail = np.zeros(int(SPEECH_RATE * (self._settings.turn.end_of_turn_ms + 1500) / 1000), dtype=np.int16)
        pcm = np.concatenate([pcm, tail])
        step = SPEECH_RATE // 10
        self._session.mark_awaiting()

        def run() -> None:  # voicechat-feed thread
            for i in range(0, len(pcm), step):
                self.feed(pcm[i : i + step], SPEECH_RATE)
                time.sleep(0.1 if realtime else 0.004)

        t = threading.Thread(target=run, name="voicechat-feed", daemon=True)
        t.start()
        return t

    def wait_ready(self, timeout: float = 300.0) -> VoiceChatWidget:
        """Block until the models are loaded (re-raises a backend error)."""
        self._session.wait_ready(timeout)
        return self

    def wait_reply(self, timeout: float = 180.0) -> str:
        """Block until the reply after the last :meth:`ask`/:meth:`feed_wav` is done; returns its text.

        The view and callbacks catch up when the cell finishes (they run on this thread).
        """
        return self._session.wait_reply(timeout)

    @property
    def history(self) -> list[dict[str, Any]]:
        """The conversation as messages: ``role``, ``content``, ``turn``, ``at``, ``interrupted``, ``cut_off``."""
        return self._session.read(lambda c: [asdict(e) for e in c.history.entries], [])

    @property
    def metrics(self) -> list[dict[str, float | int | bool | None]]:
        """Per-turn latency in ms (``first_audio_ms`` = end of speech → first reply sound)."""
        return self._session.read(lambda c: [m.as_dict() for m in c.metrics], [])

    def metrics_frame(self) -> Any:
        """:attr:`metrics` as a pandas DataFrame indexed by turn (needs pandas)."""
        try:
            import pandas as pd
        except ImportError as exc:
            raise ImportError('metrics_frame() needs pandas: pip install "voicechat[notebook]"') from exc
        rows = self.metrics
        if not rows:
            return pd.DataFrame(columns=["stt_ms", "llm_first_token_ms", "tts_first_audio_ms", "first_audio_ms"])
        return pd.DataFrame(rows).set_index("turn")

    def export(self, path: str | Path) -> Path:
        """Write the conversation to ``.md`` (readable, escaped) or ``.json`` (every field)."""
        out = Path(path)
        suffix = out.suffix.lower()
        if suffix not in (".md", ".json"):
            raise ValueError(f"export to .md or .json, not {suffix or 'a file without suffix'}")
        text = self._session.read(
            lambda c: c.history.to_markdown() if suffix == ".md" else c.history.to_json(),
            "# Conversation\n" if suffix == ".md" else "[]",
        )
        out.write_text(text, encoding="utf-8")
        return out

    def export_audio(self, path: str | Path, *, turn: int | None = None) -> Path:
        """Write the conversation's audio: ``.wav`` = stereo, you on the left and the assistant on the
        right, time-aligned (or one reply, as played, with ``turn``); ``.zip`` = that plus each side
        and every reply as its own WAV.

        Needs ``VoiceChatWidget(record_audio=True)`` (or ``VOICECHAT_RECORD_AUDIO=1``): recording is
        off by default, kept in memory only, and stops at ``VOICECHAT_RECORD_MAX_S`` (10 minutes).
        """
        if not self._settings.record_audio:
            raise ValueError(
                "recording is off: create the widget with VoiceChatWidget(record_audio=True) "
                "or set VOICECHAT_RECORD_AUDIO=1, then talk, then export"
            )
        taken = self._session.read(lambda c: c.recording.take() if c.recording is not None else None, None)
        if taken is None:
            raise RuntimeError("nothing recorded yet: the engine is still loading (see the status line)")
        return taken.write(path, turn=turn)  # built here, on the kernel's main thread, not the engine's

    def on_transcript(self, fn: Callable[[str], Any], remove: bool = False) -> Callable[[str], Any]:
        """Call ``fn(text)`` with each final user transcript, on the kernel's main thread."""
        return self._register("transcript", fn, remove)

    def on_reply(self, fn: Callable[[str], Any], remove: bool = False) -> Callable[[str], Any]:
        """Call ``fn(text)`` with each finished (or interrupted) reply, on the kernel's main thread."""
        return self._register("reply", fn, remove)

    def close(self) -> None:
        """Stop the engine (joins its thread) and close the widget and its children."""
        if self._closed:
            return
        self._closed = True
        self.bridge.listening = False
        self._session.close()
        for child in (
            self.bridge,
            self._stop_button,
            self._clear_button,
            self._language,
            self._backend,
            self._stt,
            self._echo,
            self._lights,
            self._partial,
            self._chat,
            self._latency,
            self._errors,
        ):
            child.close()
        super().close()

    # ------------------------------------------------------------------ handlers (main thread)
    def _restart_engine(self) -> None:
        half = (not self.bridge.echo_cancellation) if self._half_duplex is None else self._half_duplex
        self._browser_partial = ""
        self._session.start(self._settings, half_duplex=half)
        self._refresh()

    def _register(self, kind: str, fn: Callable[[str], Any], remove: bool) -> Callable[[str], Any]:
        if remove:
            self._on[kind] = [f for f in self._on[kind] if f is not fn]
        else:
            self._on[kind].append(fn)
        return fn

    def _on_mic_audio(self, pcm: np.ndarray, rate: int) -> None:
        self._session.push(pcm, rate)

    def _on_refused(self, why: str) -> None:
        """Oversized or flooding audio from the page: say so where errors show; the session goes on."""
        self._session.ui.handle(ErrorEvent(why, "audio"))
        self._request_refresh()

    def _on_browser_transcript(self, text: str, final: bool) -> None:
        if final:
            self._browser_partial = ""
            self._session.submit_text(text)
        else:
            self._browser_partial = text
            if text.strip() and self._session.ui.snapshot().state in (State.THINKING, State.SPEAKING):
                self._session.stop_speaking()  # the user talks over the reply: barge-in
        self._request_refresh()

    def _on_language(self, change: dict[str, Any]) -> None:
        self._settings = self._settings.replace(language=change["new"])
        self.bridge.language = change["new"]
        self._restart_engine()

    def _on_backend(self, change: dict[str, Any]) -> None:
        self._settings = self._settings.replace(**_backend_changes(change["new"]))
        self._restart_engine()

    def _on_echo(self, change: dict[str, Any]) -> None:
        self.bridge.echo_cancellation = change["new"]
        if self._half_duplex is None:
            self._session.set_half_duplex(not change["new"])  # without AEC the mic hears the reply

    # ------------------------------------------------------------------ view refresh
    def _request_refresh(self) -> None:
        """Ask for a view refresh on the main thread; callable from any thread, coalesced."""
        with self._lock:
            if self._refresh_pending:
                return
            self._refresh_pending = True
        loop = self._loop
        if loop is None or loop.is_closed():
            self._refresh()
            return
        try:
            loop.call_soon_threadsafe(loop.call_later, REFRESH_S, self._refresh)
        except RuntimeError:  # the kernel's loop is gone (shutdown)
            with self._lock:
                self._refresh_pending = False

    def _refresh(self) -> None:
        """Write the current picture into the child widgets, then run queued callbacks (main thread)."""
        with self._lock:
            self._refresh_pending = False
        if self._closed:
            return
        session = self._session
        with self._refresh_lock:
            snap = session.ui.snapshot()
            if session.error is not None:
                engine = f"engine failed: {session.error}"
            elif not session.ready:
                engine = "loading models…"
            else:
                engine = (
                    "ready · "
                    + stages_summary(self._settings)
                    + " · end of turn: "
                    + end_of_turn_signals(self._settings)
                )
            self._lights.value = _view.lights_html(
                snap.state,
                mic_on=self.bridge.mic_state == "on" and session.ready,
                engine=engine,
                ready=session.ready,
                language=self._settings.language,
            )
            self._partial.value = _view.partial_html(self._browser_partial or snap.partial)
            self._chat.value = _view.chat_html(snap.lines)
            self._latency.value = _view.latency_html(snap.metrics)
            self._errors.value = _view.errors_html(snap.errors)
        failed = False
        for kind, text in session.take_callbacks():
            for fn in list(self._on[kind]):
                try:
                    fn(text)
                except Exception as exc:  # a user callback must not break the widget: show it
                    session.ui.handle(ErrorEvent(f"on_{kind} callback failed: {exc!r}", "engine"))
                    failed = True
        if failed:
            self._errors.value = _view.errors_html(session.ui.snapshot().errors)


def stages_summary(s: Settings) -> str:
    """Each stage's backend, and for OpenAI-format ones the server it calls (never a key)."""
    parts = []
    for kind in ("stt", "llm", "tts"):
        chosen = s.backend(kind)
        parts.append(f"{kind} {chosen} @ {s.endpoint(kind).shown_url}" if chosen == "openai" else f"{kind} {chosen}")
    return " · ".join(parts)


def _backend_changes(backend: str) -> dict[str, str]:
    if backend not in LLM_CHOICES:
        raise ValueError(f"backend must be one of {', '.join(LLM_CHOICES)}, not {backend!r}")
    if backend == "realtime":  # the model hears and speaks; the STT left as it is writes the captions
        return {"llm": "realtime"}
    return {"stt": backend, "llm": backend, "tts": backend}
