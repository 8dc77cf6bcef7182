"""Speech-to-text through OpenAI's (or a compatible server's) ``/audio/transcriptions``.

The utterance is sent as a 16-bit WAV built in memory: lossless, needs no encoder, and
every Whisper-style server accepts it.
"""

from __future__ import annotations

import io
import wave
from typing import Any

import numpy as np

from voicechat.audio import SPEECH_RATE
from voicechat.errors import AudioFormatError, AudioTooLarge, VoicechatError
from voicechat.openai_client import OpenAIBackend
from voicechat.stt.base import language_code

# OpenAI refuses uploads over 25 MB; refusing locally saves uploading them first.
MAX_UPLOAD_BYTES = 25 * 1024 * 1024
WAV_HEADER_BYTES = 44
# Whisper's API rejects clips shorter than 0.1 s ("audio_too_short"); there is nothing to hear.
MIN_SAMPLES = SPEECH_RATE // 10


def wav_bytes(audio: np.ndarray, sample_rate: int = SPEECH_RATE) -> bytes:
    """Float audio in [-1, 1] → mono 16-bit PCM WAV; out-of-range samples are clipped."""
    pcm = np.clip(np.nan_to_num(audio.astype(np.float32, copy=False)), -1.0, 1.0)
    samples = (pcm * 32767.0).round().astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(samples.tobytes())
    return buffer.getvalue()


def _as_mono(audio: np.ndarray) -> np.ndarray:
    """Accept (n,), (n, 1) or (1, n); anything else is a caller bug worth naming."""
    array = np.asarray(audio)
    if array.ndim == 2 and 1 in array.shape:
        array = array.reshape(-1)
    if array.ndim != 1:
        raise AudioFormatError(
            f"speech-to-text needs mono audio, got an array of shape {array.shape}",
            "mix down to one channel at 16 kHz before transcribing",
        )
    if not np.issubdtype(array.dtype, np.floating):
        raise AudioFormatError(
            f"speech-to-text needs float audio in [-1, 1], got {array.dtype}",
            "convert int16 samples with audio / 32768",
        )
    return array


class OpenAISTT(OpenAIBackend):
    """Transcribes one utterance per request with ``settings.openai_stt_model`` (whisper-1)."""

    stage = "stt"

    async def transcribe(self, audio: np.ndarray, *, language: str | None = None) -> str:
        """Upload the utterance and return its text; ``language`` None lets the server detect it."""
        samples = _as_mono(audio)
        if samples.size < MIN_SAMPLES:
            return ""
        size = samples.size * 2 + WAV_HEADER_BYTES
        if size > MAX_UPLOAD_BYTES:
            seconds = samples.size / SPEECH_RATE
            raise AudioTooLarge(
                f"{seconds:.0f} s of audio makes a {size / 1e6:.1f} MB WAV, over the "
                f"{MAX_UPLOAD_BYTES // (1024 * 1024)} MB transcription upload limit",
                f"send utterances shorter than {MAX_UPLOAD_BYTES // (2 * SPEECH_RATE * 60)} minutes",
            )
        payload = wav_bytes(samples)
        options: dict[str, Any] = {}
        code = language_code(language)
        if code:
            options["language"] = code
        client = self.client()
        try:
            result = await client.audio.transcriptions.create(
                model=self.settings.openai_stt_model,
                file=("speech.wav", payload, "audio/wav"),
                **options,
            )
        except VoicechatError:
            raise
        except Exception as exc:
            raise self.failure(exc) from exc
        text = getattr(result, "text", result)
        return str(text).strip()
