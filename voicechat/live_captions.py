"""The live transcript while the user is still speaking: an interim caption every few hundred ms.

Split from the engine because it is a side show with rules of its own: a caption is best-effort
(errors are swallowed, the final transcript reports them), it never runs while a reply is being
prepared ahead (that work needs the CPU more), and a late caption of an utterance that has ended
is dropped. Runs on the engine's event loop; the transcription itself runs on worker threads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np

from voicechat.audio import SPEECH_RATE
from voicechat.backend_abilities import TranscribesInterim
from voicechat.end_of_turn import SilenceSegmenter
from voicechat.errors import VoicechatError
from voicechat.events import Event, PartialTranscript
from voicechat.stt.base import SpeechToText


class LiveCaptions:
    """Emits :class:`PartialTranscript` for the utterance under way, every ``interval_ms`` of it."""

    def __init__(
        self,
        stt: SpeechToText | None,
        turns: SilenceSegmenter,
        emit: Callable[[Event], None],
        *,
        language: str,
        interval_ms: int,
        heard: Callable[[str], None] | None = None,
    ) -> None:
        self.stt = stt
        self._turns = turns
        self._emit = emit
        self._heard = heard  # the engine reads each caption's words ahead into the reply model
        self._language = language
        self._interval_ms = interval_ms
        self._utterance = 0  # counts utterances, so late captions of an old one are dropped
        self._last_pos = 0
        self.task: asyncio.Task[None] | None = None

    def new_utterance(self) -> None:
        self._last_pos = self._turns.position
        self._utterance += 1

    def tick(self, *, busy: bool, earlier: Callable[[], str]) -> None:
        """After each chunk of audio: start a caption if one is due. ``busy``: a reply is being
        prepared ahead; ``earlier``: the text of the utterance's pieces already transcribed."""
        turns = self._turns
        if (
            self.stt is None
            or not turns.speaking
            or self._interval_ms <= 0
            or busy
            or (self.task is not None and not self.task.done())
        ):
            return
        if (turns.position - self._last_pos) * 1000 < self._interval_ms * SPEECH_RATE:
            return
        self._last_pos = turns.position
        self.task = asyncio.create_task(self._caption(turns.current_audio(), self._utterance, earlier))

    async def _caption(self, audio: np.ndarray, utterance: int, earlier: Callable[[], str]) -> None:
        assert self.stt is not None
        stt = self.stt
        try:
            if isinstance(stt, TranscribesInterim):  # local Whisper: steps aside for the final one
                text = await stt.transcribe_interim(audio, language=self._language)
            else:
                text = await stt.transcribe(audio, language=self._language)
        except VoicechatError:
            return  # an interim result is best-effort; the final transcript reports errors
        if text and utterance == self._utterance and self._turns.speaking:
            words = f"{earlier()} {text}".strip()
            self._emit(PartialTranscript(words))
            if self._heard is not None:
                self._heard(words)
