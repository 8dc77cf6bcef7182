"""Voice activity: Silero's ONNX model on onnxruntime, or webrtcvad as a light fallback.

Both score one fixed window of 16 kHz float32 audio. The ONNX session is shared by all
sessions (``InferenceSession.run`` is thread-safe); the recurrent state is per detector,
so each conversation owns its own :class:`SileroVAD`.
"""

from __future__ import annotations

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


def make_vad(kind: str = "silero") -> VoiceActivityDetector:
    """Silero when onnxruntime and its model are present; webrtcvad otherwise or on request."""
    if kind == "webrtc":
        return WebRtcVAD()
    try:
        return SileroVAD()
    except BackendUnavailable:
        return WebRtcVAD()
