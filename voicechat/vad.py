"""Voice activity: Silero's ONNX model on onnxruntime, or webrtcvad as a light fallback.

Both score one fixed window of 16 kHz float32 audio. The ONNX session is shared by all
sessions (``InferenceSession.run`` is thread-safe); the recurrent state is per detector,
so each conversation owns its own :class:`SileroVAD`. :func:`make_vad` puts Silero behind a
:class:`QuietGate`, so the windows of a call that are plainly silent (most of them: the user
listens, or says nothing) cost a dot product instead of a model run.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Protocol

import numpy as np

from voicechat.audio import SPEECH_RATE
from voicechat.errors import BackendUnavailable
from voicechat.models import LOCAL_INSTALL_HINT, SHARED_MODELS, silero_vad_path


class VoiceActivityDetector(Protocol):
    """Scores windows of ``window`` samples at 16 kHz; returns the speech probability."""

    window: int

    def __call__(self, window: np.ndarray) -> float: ...

    def reset(self) -> None: ...


def _load_silero_session(path: str) -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendUnavailable("onnxruntime is needed for Silero VAD", LOCAL_INSTALL_HINT) from exc
    opts = onnxruntime.SessionOptions()
    opts.inter_op_num_threads = 1
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 4
    return onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"], sess_options=opts)


class SileroVAD:
    """Streaming Silero v5/v6: 512-sample windows with 64 samples of context and an LSTM state."""

    window = 512
    _context = 64

    def __init__(self, path: str | None = None) -> None:
        model_path = path or silero_vad_path()
        self._session = SHARED_MODELS.get(("silero", model_path), lambda: _load_silero_session(model_path))
        self._outputs = [o.name for o in self._session.get_outputs()]
        self._buf = np.zeros((1, self._context + self.window), dtype=np.float32)
        self.reset()

    def reset(self) -> None:
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._buf[:] = 0.0

    def __call__(self, window: np.ndarray) -> float:
        buf = self._buf
        buf[0, self._context :] = window
        prob, self._h, self._c = self._session.run(self._outputs, {"input": buf, "h": self._h, "c": self._c}, None)
        buf[0, : self._context] = buf[0, -self._context :]
        return float(np.ravel(prob)[0])


class WebRtcVAD:
    """Google's WebRTC VAD: 30 ms windows, a yes/no answer scored as 1.0 or 0.0."""

    window = 480

    def __init__(self, aggressiveness: int = 2) -> None:
        try:
            import webrtcvad
        except ImportError as exc:
            raise BackendUnavailable("webrtcvad is not installed", 'pip install "voicechat[local]"') from exc
        self._vad = webrtcvad.Vad(aggressiveness)

    def reset(self) -> None:
        pass

    def __call__(self, window: np.ndarray) -> float:
        pcm = (np.clip(window, -1.0, 1.0) * 32767).astype(np.int16).tobytes()
        return 1.0 if self._vad.is_speech(pcm, SPEECH_RATE) else 0.0


class QuietGate:
    """Scores a window with ``inner`` only when it is not plainly silent; a plainly silent one scores 0.0.

    Plainly silent: the window's level is under ``floor_dbfs`` (-55 dBFS RMS) and so were the
    ``hangover`` windows before it (10 windows, 320 ms, so a soft ending or a stop consonant
    inside a word is still Silero's to judge). Silero itself gives such audio under 0.01 (white
    noise at -55 dBFS: at most 0.008), below every threshold the turn detector can be set to
    (its silence threshold is at least 0.01), so a skipped window is judged as Silero would.

    Silero is recurrent, so skipping is not free of consequence: its state carries on from the
    last window it read. When the gate opens again the model first reads the last ``warm_up``
    skipped windows (3, 96 ms; their scores discarded), so it meets the sound with the quiet audio
    just before it as context. Borderline windows inside speech can still come out on the other
    side of the threshold; tests/test_vad_gate.py bounds what that moves in real speech (the same
    turns and pauses, positions within 320 ms, most of them identical) against ungated Silero.
    Not thread-safe: one per conversation.
    """

    def __init__(
        self, inner: VoiceActivityDetector, floor_dbfs: float = -55.0, hangover: int = 10, warm_up: int = 3
    ) -> None:
        self.inner = inner
        self.window = inner.window
        self.hangover = hangover
        self._floor = float(inner.window * 10 ** (floor_dbfs / 10))  # sum of squares at the floor level
        self._skipped_tail: deque[np.ndarray] = deque(maxlen=warm_up)
        self.scored = 0  # windows the model read (for benchmarks and tests)
        self.skipped = 0
        self.reset()

    def reset(self) -> None:
        self.inner.reset()
        self._open_for = 0
        self._skipped_tail.clear()

    def __call__(self, window: np.ndarray) -> float:
        if float(np.dot(window, window)) >= self._floor:
            self._open_for = self.hangover
        elif self._open_for > 0:
            self._open_for -= 1
        else:
            self._skipped_tail.append(window.copy())  # a copy: the caller's buffer may be reused
            self.skipped += 1
            return 0.0
        while self._skipped_tail:
            self.inner(self._skipped_tail.popleft())
            self.scored += 1
        self.scored += 1
        return self.inner(window)


def make_vad(kind: str = "silero") -> VoiceActivityDetector:
    """Silero behind a :class:`QuietGate` when onnxruntime and its model are present; webrtcvad otherwise."""
    if kind == "webrtc":
        return WebRtcVAD()
    try:
        return QuietGate(SileroVAD())
    except BackendUnavailable:
        return WebRtcVAD()
