"""Text-to-speech through ``/audio/speech`` as raw 24 kHz PCM, streamed while it downloads.

``response_format="pcm"`` is headerless signed 16-bit little-endian mono at 24 kHz, so
bytes can be played the moment they arrive; an MP3 would need a decoder and a buffer.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterator
from typing import Any, cast

import numpy as np

from voicechat.config import OPENAI_VOICES, Settings
from voicechat.errors import ConfigError, VoicechatError
from voicechat.openai_client import OpenAIBackend

SAMPLE_RATE = 24_000
BYTES_PER_SAMPLE = 2
# Yield at least 20 ms (so playback is not flooded with tiny chunks) and at most 100 ms
# (so the first sound is not held back waiting for a large network read to be split).
MIN_CHUNK_BYTES = SAMPLE_RATE * BYTES_PER_SAMPLE // 50
MAX_CHUNK_BYTES = SAMPLE_RATE * BYTES_PER_SAMPLE // 10


class PcmChunker:
    """Turns arbitrary byte pieces into int16 chunks of 20–100 ms.

    Network reads can split a sample between two pieces (odd byte counts); the odd byte
    waits here for its partner instead of shifting every later sample by one byte.
    """

    def __init__(self) -> None:
        self._pending = bytearray()

    def feed(self, data: bytes) -> Iterator[np.ndarray]:
        self._pending.extend(data)
        while len(self._pending) >= MIN_CHUNK_BYTES:
            yield self._take(min(len(self._pending), MAX_CHUNK_BYTES))

    def flush(self) -> Iterator[np.ndarray]:
        """Emit what is left; a trailing odd byte is half a sample and is dropped."""
        while len(self._pending) >= BYTES_PER_SAMPLE:
            yield self._take(min(len(self._pending), MAX_CHUNK_BYTES))
        self._pending.clear()

    def _take(self, size: int) -> np.ndarray:
        size -= size % BYTES_PER_SAMPLE
        piece = bytes(self._pending[:size])
        del self._pending[:size]
        return np.frombuffer(piece, dtype="<i2").astype(np.int16)


class OpenAITTS(OpenAIBackend):
    """Speaks with ``settings.openai_tts_model`` in ``settings.openai_voice`` at ``tts_speed``."""

    stage = "tts"

    sample_rate = SAMPLE_RATE

    def __init__(self, settings: Settings) -> None:
        if settings.openai_voice not in OPENAI_VOICES:
            raise ConfigError(
                f"OpenAI voice {settings.openai_voice!r} is not one of {', '.join(OPENAI_VOICES)}",
                "set VOICECHAT_OPENAI_VOICE to one of them",
            )
        if not 0.25 <= settings.tts_speed <= 4.0:
            raise ConfigError(
                f"speech speed {settings.tts_speed:g} is outside OpenAI's 0.25–4.0",
                "set VOICECHAT_TTS_SPEED between 0.25 and 4.0",
            )
        super().__init__(settings)

    async def synthesize(self, text: str) -> AsyncGenerator[np.ndarray, None]:
        """Yield int16 mono chunks at 24 kHz as the response body arrives.

        The response is closed when this generator finishes or is closed early (barge-in),
        which drops the connection instead of downloading speech nobody will hear.
        """
        if not text.strip():
            return
        client = self.client()
        chunker = PcmChunker()
        try:
            async with client.audio.speech.with_streaming_response.create(
                model=self.settings.openai_tts_model,
                voice=cast(Any, self.settings.openai_voice),
                input=text,
                speed=self.settings.tts_speed,
                response_format="pcm",
            ) as response:
                async for data in response.iter_bytes():
                    for chunk in chunker.feed(data):
                        yield chunk
            for chunk in chunker.flush():
                yield chunk
        except VoicechatError:
            raise
        except Exception as exc:
            raise self.failure(exc) from exc
