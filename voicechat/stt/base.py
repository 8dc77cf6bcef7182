"""The speech-to-text interface: one async method, 16 kHz mono float32 in, text out."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class SpeechToText(Protocol):
    """A backend turns one utterance into text.

    ``audio`` is float32 mono at 16 kHz in [-1, 1]. ``language`` is a BCP-47 tag
    ("en-US") or None for auto. Implementations must not block the event loop:
    local models run in a worker thread.
    """

    name: str

    async def transcribe(self, audio: np.ndarray, *, language: str | None = None) -> str: ...


def language_code(language: str | None) -> str | None:
    """ "en-US" → "en": what Whisper-style APIs take as a hint."""
    if not language:
        return None
    return language.split("-")[0].lower()


def is_billed(stt: SpeechToText | None) -> bool:
    """A provider that charges per second of uploaded audio (every OpenAI-format STT counts as one)."""
    return stt is not None and stt.name.startswith("openai")
