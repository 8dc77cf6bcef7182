"""One reply: stream the LLM, cut sentences, speak each while the next is still being written.

The LLM producer and the TTS consumer are two tasks joined by a queue of sentences,
so speech of sentence 1 overlaps generation of sentence 2. Both run on the engine's
loop; the blocking model calls inside the backends run on worker threads.

When both models compute on this machine's cores (llama.cpp and Piper), the LLM waits between
tokens while the first piece is synthesised: the user is waiting for that audio, and the words
after it are not needed until it has played. On 2 cores Piper took ~205 ms for a four-word piece
while llama.cpp decoded beside it, ~110 ms alone (bench/first_piece_contention.py).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import cast

import numpy as np

from voicechat.audio import FrameChunker, OutputConverter
from voicechat.backend_abilities import RunsOnThisCPU
from voicechat.errors import StreamInterrupted, VoicechatError
from voicechat.events import AudioOut, ErrorEvent, Event, ReplyDelta
from voicechat.llm.base import ChatModel, Message, PausableChat
from voicechat.speakable import SpeakableText
from voicechat.text import SentenceSplitter
from voicechat.tts.base import TextToSpeech


@dataclass
class ReplyTimes:
    """Wall-clock marks (``time.perf_counter``) of one reply, filled in as it runs."""

    llm_start: float = 0.0
    llm_first_token: float | None = None
    first_sentence: float | None = None
    tts_first_start: float | None = None
    first_audio: float | None = None
    audio_s: float = 0.0
    text: str = ""
    cut_off: bool = False
    errors: list[str] = field(default_factory=list)
    spoken: list[tuple[float, str]] = field(default_factory=list)  # (reply audio second it starts at, sentence)

    def heard_text(self, played_s: float) -> str:
        """The words of the reply that ``played_s`` seconds of its audio carried.

        Whole sentences whose audio had played, then the same share of the words of the sentence
        that was playing as of its audio (speech rate is near even within one sentence).
        """
        out: list[str] = []
        for i, (start, sentence) in enumerate(self.spoken):
            end = self.spoken[i + 1][0] if i + 1 < len(self.spoken) else self.audio_s
            if played_s >= end - 0.02:
                out.append(sentence)
                continue
            if played_s > start and end > start:
                words = sentence.split()
                out.append(" ".join(words[: int(len(words) * (played_s - start) / (end - start))]))
            break
        return " ".join(w for w in out if w).strip()


class ReplyPipeline:
    """Runs one reply to completion or cancellation; ``times`` holds what it measured.

    ``emit`` is called on the engine's loop thread for every delta and audio frame.
    """

    def __init__(
        self, turn: int, llm: ChatModel, tts: TextToSpeech | None, output_rate: int, emit: Callable[[Event], None]
    ) -> None:
        self.turn = turn
        self.llm = llm
        self.tts = tts
        self.emit = emit
        self.times = ReplyTimes()
        self._out = OutputConverter(output_rate)
        self._chunker = FrameChunker(output_rate)
        self._rate = output_rate
        # Cleared from the first piece until its first audio: the LLM's worker waits (loop sets/clears it).
        self._first_voice: threading.Event | None = None
        if _on_this_cpu(llm) and _on_this_cpu(tts):
            self._first_voice = threading.Event()
            self._first_voice.set()

    async def run(self, messages: list[Message]) -> ReplyTimes:
        sentences: asyncio.Queue[str | None] = asyncio.Queue()
        speaker = asyncio.create_task(self._speak(sentences))
        try:
            await self._generate(messages, sentences)
            sentences.put_nowait(None)
            await speaker
        finally:
            self._voice_started()  # never leave the LLM's worker waiting
            if not speaker.done():
                speaker.cancel()
                await asyncio.gather(speaker, return_exceptions=True)
        return self.times

    def _stream(self, messages: list[Message]) -> AsyncIterator[str]:
        if self._first_voice is None:
            return self.llm.stream(messages)
        return cast(PausableChat, self.llm).stream(messages, gate=self._first_voice)

    def _voice_started(self) -> None:
        """The first piece has audio (or will get none): the LLM may use the cores again."""
        if self._first_voice is not None:
            self._first_voice.set()

    async def _generate(self, messages: list[Message], sentences: asyncio.Queue[str | None]) -> None:
        t = self.times
        splitter = SentenceSplitter()
        t.llm_start = time.perf_counter()
        stream = self._stream(messages)
        try:
            async for delta in stream:
                if t.llm_first_token is None:
                    t.llm_first_token = time.perf_counter()
                t.text += delta
                self.emit(ReplyDelta(self.turn, delta))
                for piece in splitter.push(delta):
                    self._queue_sentence(piece, sentences)
        except StreamInterrupted as exc:
            t.cut_off = True
            if exc.partial and not t.text:
                t.text = exc.partial
            t.errors.append(str(exc))
            self.emit(ErrorEvent(str(exc), "llm"))
        except VoicechatError as exc:
            t.cut_off = bool(t.text)
            t.errors.append(str(exc))
            self.emit(ErrorEvent(str(exc), "llm"))
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
        for piece in splitter.flush():
            self._queue_sentence(piece, sentences)

    def _queue_sentence(self, piece: str, sentences: asyncio.Queue[str | None]) -> None:
        if self.times.first_sentence is None:
            self.times.first_sentence = time.perf_counter()
            if self._first_voice is not None:
                self._first_voice.clear()
        sentences.put_nowait(piece)

    async def _speak(self, sentences: asyncio.Queue[str | None]) -> None:
        t = self.times
        tts_failed = False
        speakable = SpeakableText()  # the voice says this; the transcript keeps the reply as written
        while (sentence := await sentences.get()) is not None:
            spoken = speakable.clean(sentence)
            if self.tts is None or tts_failed or not spoken:
                self._voice_started()  # nothing to voice here: the LLM must not wait for it
                continue
            if t.tts_first_start is None:
                t.tts_first_start = time.perf_counter()
            t.spoken.append((t.audio_s, sentence))
            try:
                async for chunk in self.tts.synthesize(spoken):
                    self._voice_started()
                    self._send(self._out.convert(chunk, self.tts.sample_rate))
            except VoicechatError as exc:
                # The text is already shown and kept; only the voice is lost.
                tts_failed = True
                t.errors.append(str(exc))
                self.emit(ErrorEvent(str(exc), "tts"))
            self._voice_started()
        self._send(self._out.flush())
        tail = self._chunker.flush()
        if tail.size:
            self._deliver(tail)

    def _send(self, pcm: np.ndarray) -> None:
        frames = self._chunker.push(pcm)
        if frames.size:
            self._deliver(frames)

    def _deliver(self, frames: np.ndarray) -> None:
        if self.times.first_audio is None:
            self.times.first_audio = time.perf_counter()
        self.times.audio_s += len(frames) / self._rate
        self.emit(AudioOut(self.turn, frames, self._rate))


def _on_this_cpu(backend: object) -> bool:
    return isinstance(backend, RunsOnThisCPU) and backend.on_this_cpu
