"""Text-to-speech backends: ``local`` (Piper, espeak-ng) and ``openai`` (any compatible server)."""

from voicechat.tts.base import TextToSpeech

__all__ = ["TextToSpeech"]
