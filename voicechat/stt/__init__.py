"""Speech-to-text backends: ``local`` (faster-whisper) and ``openai`` (any compatible server)."""

from voicechat.stt.base import SpeechToText, language_code

__all__ = ["SpeechToText", "language_code"]
