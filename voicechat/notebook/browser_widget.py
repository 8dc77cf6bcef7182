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

Input bounds: the page is untrusted (any code in the notebook's origin can post on the comm), and
each accepted chunk becomes a task on the engine loop. So a message carrying more than
:data:`MAX_CHUNK_BYTES` (1 s of 16 kHz Int16; the page sends 100 ms) is refused, and so is audio
arriving more than :attr:`VoiceBridge.max_audio_bytes` ahead of real time (a flood). A real
microphone never hits either; a refusal is reported through :attr:`VoiceBridge.on_refused` (the
widget shows it) and the next acceptable chunk is taken as usual.

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
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anywidget
import numpy as np
import traitlets

from voicechat.audio import SPEECH_RATE

log = logging.getLogger(__name__)

REALTIME_BYTES_PER_S = 2 * SPEECH_RATE  # what a live microphone sends: the JS resamples to 16 kHz mono Int16
MAX_CHUNK_S = 1.0  # ten times the page's chunk; also the upper bound of ``chunk_ms``
MAX_CHUNK_BYTES = int(REALTIME_BYTES_PER_S * MAX_CHUNK_S)
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

    @traitlets.validate("chunk_ms")
    def _check_chunk_ms(self, proposal: Any) -> int:
        """Chunks longer than :data:`MAX_CHUNK_S` would be refused, so such a setting is an error."""
        value = int(proposal["value"])
        if not 10 <= value <= MAX_CHUNK_S * 1000:
            raise traitlets.TraitError(f"chunk_ms must be between 10 and {MAX_CHUNK_S * 1000:g}, not {value}")
        return value

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(instance_id=uuid.uuid4().hex, **kwargs)
        # Hooks the owner sets; all are called on the kernel's main thread.
        self.on_audio: Callable[[np.ndarray, int], None] | None = None
        self.on_transcript: Callable[[str, bool], None] | None = None
        self.on_refused: Callable[[str], None] | None = None  # a message saying what was refused
        # How far ahead of real time the page may send (Settings.max_audio_bytes; the widget sets it).
        self.max_audio_bytes = 10 * 1024 * 1024
        self._credit: float | None = None  # bytes the page may still send now (a token bucket)
        self._credit_at = 0.0
        self._refusing = False
        self.chunks_refused = 0
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
                size = memoryview(buffers[0]).nbytes
                refusal = self._admit(size)
                if refusal is not None:
                    self._refuse(refusal)
                    return
                # Copy out of the zmq frame: the array crosses to the engine thread.
                pcm = np.frombuffer(bytes(buffers[0]), dtype="<i2").astype(np.int16)
                rate = int(content.get("rate", SPEECH_RATE))
                with self._stats_lock:
                    self.chunks_in += 1
                if self.on_audio is not None and pcm.size:
                    self.on_audio(pcm, rate)
            elif kind == "transcript" and self.on_transcript is not None:
                self.on_transcript(str(content.get("text", "")), bool(content.get("final", False)))
        except Exception:  # a bad message from the page must not break the comm handler
            log.exception("voicechat: could not handle a %r message from the browser", kind)

    def _admit(self, size: int) -> str | None:
        """``None`` if an audio message of ``size`` bytes may be taken, else why it is refused."""
        if size > MAX_CHUNK_BYTES:
            return (
                f"refused an audio message of {size} bytes from the page: at most {MAX_CHUNK_S:g} s of "
                f"16 kHz Int16 audio ({MAX_CHUNK_BYTES} bytes) per message"
            )
        now = time.monotonic()
        credit = self.max_audio_bytes if self._credit is None else self._credit
        credit = min(float(self.max_audio_bytes), credit + (now - self._credit_at) * REALTIME_BYTES_PER_S)
        self._credit_at = now
        if size > credit:
            self._credit = credit
            return (
                f"refused audio arriving faster than real time: the page is more than "
                f"{self.max_audio_bytes} bytes ahead (limit: VOICECHAT_MAX_AUDIO_BYTES)"
            )
        self._credit = credit - size
        self._refusing = False
        return None

    def _refuse(self, why: str) -> None:
        """Count a refused message; report only the first of a run, so a flood is one message."""
        with self._stats_lock:
            self.chunks_refused += 1
        if not self._refusing:
            self._refusing = True
            log.info("voicechat: %s", why)  # the widget shows it; no stderr noise
            if self.on_refused is not None:
                self.on_refused(why)

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
