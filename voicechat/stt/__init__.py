"""Speech-to-text backends: ``local`` (faster-whisper) and ``openai`` (any compatible server)."""

from voicechat.stt.base import STT_SAMPLE_RATE, SpeechToText, language_code

__all__ = ["STT_SAMPLE_RATE", "SpeechToText", "language_code"]
