"""Pay once for each second of speech: the part of an utterance a paid STT has already heard.

A speculative turn starts at every pause in speech. With a local model, transcribing the
whole utterance again after the user resumes costs a little CPU; with a provider billing
per uploaded second, each false pause would bill the words before it again. So on a billed
STT each speculative start sends only the audio since the last cut (a pause, where no word
is split) and keeps that request's transcript even if the speculative reply is dropped:
the final transcript is the pieces' texts joined, and the audio sent equals the audio
spoken, whatever the number of pauses.

Lives on the engine's event loop, like the :class:`voicechat.engine.Conversation` that owns it.
"""

from __future__ import annotations

import asyncio

import numpy as np

from voicechat.stt.base import SpeechToText


class TranscribedPrefix:
    """Transcripts of the utterance's leading pieces, in order, and how many samples they cover."""

    def __init__(self) -> None:
        self.samples = 0
        self.pieces: list[asyncio.Task[str]] = []

    def extend(self, stt: SpeechToText, utterance: np.ndarray, language: str | None) -> tuple[asyncio.Task[str], ...]:
        """Send the audio after the last cut up to the end of ``utterance``; returns every piece so far."""
        rest = utterance[self.samples :]
        if rest.size:
            self.pieces.append(asyncio.create_task(stt.transcribe(rest, language=language)))
            self.samples = len(utterance)
        return tuple(self.pieces)

    def take(self, utterance: np.ndarray) -> tuple[tuple[asyncio.Task[str], ...], np.ndarray]:
        """The pieces so far and the part of ``utterance`` they do not cover; starts a new utterance."""
        pieces, rest = tuple(self.pieces), utterance[self.samples :]
        self.reset()
        return pieces, rest

    def reset(self) -> None:
        """Forget the pieces (their requests run on: a turn that took them awaits them)."""
        self.samples = 0
        self.pieces = []
