"""The browser end of the notebook widget: an anywidget that owns the microphone and the speaker.

Why an anywidget: its ESM (``voicechat.js``) ships as a plain file inside the package, so there is
no JavaScript build step and no extra server or port: audio travels over the widget's own comm.

Wire protocol (ipywidgets *custom* messages; PCM always in binary buffers, never JSON):

browser → kernel
    ``{"type": "audio", "rate": 16000, "seq": n}`` + ``[Int16 mono PCM]``  ~100 ms of microphone
    ``{"type": "transcript", "text": str, "final": bool}``                  browser speech recognition
kernel → browser
    ``{"type": "audio", "rate": r, "gen": g, "turn": t}`` + ``[Int16 mono PCM]``  reply audio
    ``{"type": "flush", "gen": g, "turn": t}``  drop queued reply audio now (barge-in, stop)

``gen`` counts engine restarts (language/backend switch) so that audio of an old conversation,
whose turn numbers start again at 1, is never mistaken for the new one's.

Thread boundaries
    * Custom messages and trait changes from the browser are handled on the **kernel's main
      thread** (ipykernel dispatches comm messages there); :attr:`on_audio` and friends are
      therefore called on that thread and must only hand work off, never block.
    * :meth:`send_audio` and :meth:`flush` may be called from **any thread** (the engine thread
      calls them). They touch no trait state, only ``Comm.send``, which in ipykernel ≥ 6 hands the
      message to the IOPub thread through a per-thread pipe (checked in ipykernel 7.4:
      ``Comm.publish_msg`` → ``Session.send`` → ``BackgroundSocket`` → ``IOPubThread.schedule``).
      Trait updates are never made off the main thread; see ``widget.py`` for how those travel.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anywidget
import numpy as np
import traitlets

log = logging.getLogger(__name__)

MIC_RATE = 16_000
_HERE = Path(__file__).parent


class VoiceBridge(anywidget.AnyWidget):
    """Microphone capture, reply playback and browser speech recognition, as one small widget.

    Its view is the mic button and level meter; the rest of the UI lives in
    :class:`voicechat.notebook.VoiceChatWidget`.
    """

    _esm = _HERE / "voicechat.js"
    _css = _HERE / "voicechat.css"

    # Set by Python and by the browser (the mic button).
    listening = traitlets.Bool(False).tag(sync=True)
    # Set by Python only.
    echo_cancellation = traitlets.Bool(True).tag(sync=True)
    stt_mode = traitlets.Unicode("server").tag(sync=True)  # "server" | "browser"
    language = traitlets.Unicode("en-US").tag(sync=True)  # for browser speech recognition
    chunk_ms = traitlets.Int(100).tag(sync=True)
    jitter_ms = traitlets.Int(120).tag(sync=True)
    instance_id = traitlets.Unicode().tag(sync=True)
    # Set by the browser only (what actually happened there).
    mic_state = traitlets.Unicode("off").tag(sync=True)  # "off" | "starting" | "on" | "error: …"
    stt_state = traitlets.Unicode("").tag(sync=True)  # "server" | "browser" | "fallback: <reason>"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(instance_id=uuid.uuid4().hex, **kwargs)
        # Hooks the owner sets; all are called on the kernel's main thread.
        self.on_audio: Callable[[np.ndarray, int], None] | None = None
        self.on_transcript: Callable[[str, bool], None] | None = None
        self._stats_lock = threading.Lock()
        self.chunks_in = 0
        self.chunks_out = 0
        self.senders: set[str] = set()  # threads that sent reply audio (the engine's, in practice)
        self.on_msg(self._on_custom)

    # ------------------------------------------------------------ kernel main thread
    def _on_custom(self, _widget: Any, content: Any, buffers: Sequence[Any] | None) -> None:
        """A custom message from the browser (main thread): decode and hand off, never block."""
        if not isinstance(content, dict):
            return
        kind = content.get("type")
        try:
            if kind == "audio" and buffers:
                # Copy out of the zmq frame: the array crosses to the engine thread.
                pcm = np.frombuffer(bytes(buffers[0]), dtype="<i2").astype(np.int16)
                rate = int(content.get("rate", MIC_RATE))
                with self._stats_lock:
                    self.chunks_in += 1
                if self.on_audio is not None and pcm.size:
                    self.on_audio(pcm, rate)
            elif kind == "transcript" and self.on_transcript is not None:
                self.on_transcript(str(content.get("text", "")), bool(content.get("final", False)))
        except Exception:  # a bad message from the page must not break the comm handler
            log.exception("voicechat: could not handle a %r message from the browser", kind)

    # ------------------------------------------------------------ any thread
    def send_audio(self, pcm: np.ndarray, sample_rate: int, *, gen: int, turn: int) -> None:
        """Reply audio to the browser's jitter buffer; safe from any thread (touches no traits)."""
        data = np.ascontiguousarray(pcm, dtype="<i2").tobytes()
        self.send({"type": "audio", "rate": int(sample_rate), "gen": gen, "turn": turn}, buffers=[data])
        with self._stats_lock:
            self.chunks_out += 1
            self.senders.add(threading.current_thread().name)

    def flush(self, *, gen: int, turn: int) -> None:
        """Tell the browser to drop reply audio up to ``(gen, turn)`` at once; safe from any thread."""
        self.send({"type": "flush", "gen": gen, "turn": turn})
