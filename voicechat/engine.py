"""The conversation engine: audio frames in, events out, one object per conversation.

Threading: a :class:`Conversation` lives on one asyncio event loop and every public
method must be called on that loop's thread. Surfaces whose audio arrives on other
threads (aiortc, ipykernel comms) go through :class:`voicechat.runner.ConversationThread`,
the one class that crosses threads. Blocking model work runs on worker threads inside
the backends; the per-frame path (resample + VAD) runs inline because it costs well
under 1 % of real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import av
import numpy as np

from voicechat.audio import InputConverter
from voicechat.config import Settings
from voicechat.errors import VoicechatError
from voicechat.events import (
    AudioOut,
    ErrorEvent,
    Event,
    FinalTranscript,
    Interrupted,
    PartialTranscript,
    ReplyDone,
    SpeechEnded,
    SpeechStarted,
    State,
    StateChanged,
    TurnMetrics,
)
from voicechat.history import Entry, History
from voicechat.llm.base import ChatModel, Message
from voicechat.reply import ReplyPipeline
from voicechat.stt.base import SpeechToText
from voicechat.tts.base import TextToSpeech
from voicechat.turns import RATE, SpeechPause, SpeechResume, SpeechStart, TurnConfig, TurnDetector, TurnEnd
from voicechat.vad import VoiceActivityDetector, make_vad


def _ms(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round((b - a) * 1000.0, 1)


class Conversation:
    """Listens, transcribes, replies and speaks; barge-in and ``stop_speaking()`` cut a reply.

    Events go to ``listener`` if given, else to a queue read with :meth:`events`.
    """

    def __init__(self, stt: SpeechToText | None, llm: ChatModel, tts: TextToSpeech | None, *,
                 settings: Settings | None = None, vad: VoiceActivityDetector | None = None,
                 output_rate: int = 48_000, listener: Callable[[Event], None] | None = None) -> None:
        self.settings = settings or Settings()
        s = self.settings
        self.stt, self.llm, self.tts = stt, llm, tts
        self.output_rate = output_rate
        self.history = History()
        self.metrics: list[TurnMetrics] = []
        self.state = State.LISTENING
        self.half_duplex = False
        cfg = TurnConfig(threshold=s.vad_threshold, min_speech_ms=s.min_speech_ms,
                         end_of_turn_ms=s.end_of_turn_ms, max_utterance_s=s.max_utterance_s)
        self.turns = TurnDetector(vad or make_vad(s.vad), cfg)
        self._input = InputConverter(RATE)
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self._listener = listener or self._queue.put_nowait
        self._turn = 0
        self._reply: asyncio.Task[None] | None = None
        self._reply_turn = 0
        self._playback_end = 0.0
        self._idle_timer: asyncio.TimerHandle | None = None
        self._partial: asyncio.Task[None] | None = None
        self._last_partial_pos = 0
        self._speculative: tuple[int, asyncio.Task[str]] | None = None
        self._pieces: list[asyncio.Task[str]] = []
        self._closed = False

    # ------------------------------------------------------------------ output
    def _emit(self, event: Event) -> None:
        self._listener(event)

    def _set_state(self, state: State) -> None:
        if state != self.state:
            self.state = state
            self._emit(StateChanged(state))

    async def events(self) -> AsyncIterator[Event]:
        """Events as they happen (only when no ``listener`` was given)."""
        while True:
            yield await self._queue.get()

    def drain(self) -> list[Event]:
        """Every event queued so far, without waiting."""
        out = []
        while not self._queue.empty():
            out.append(self._queue.get_nowait())
        return out

    # ------------------------------------------------------------------ input
    @property
    def turn(self) -> int:
        """Number of turns begun so far."""
        return self._turn

    @property
    def generating(self) -> bool:
        """A turn is being transcribed or its reply generated (playback not counted)."""
        return self._reply is not None and not self._reply.done()

    @property
    def replying(self) -> bool:
        """A reply is being generated or its audio is still playing at the surface."""
        return self.generating or time.perf_counter() < self._playback_end

    async def feed(self, audio: av.AudioFrame | np.ndarray, sample_rate: int | None = None) -> None:
        """One chunk of microphone audio in any format; never raises for bad audio (reports it)."""
        if self._closed:
            return
        if self.half_duplex and self.replying:
            return
        try:
            samples = self._input.convert(audio, sample_rate)
        except VoicechatError as exc:
            self._emit(ErrorEvent(str(exc), "audio"))
            return
        self.feed_16k(samples)

    def feed_16k(self, samples: np.ndarray) -> None:
        """Already-converted 16 kHz mono float32 audio (the hot path)."""
        events = self.turns.feed(samples)
        if self.turns.voiced_ms >= self.settings.barge_in_ms and self.replying:
            self._interrupt("barge-in")  # before speech is confirmed: the reply must stop at once
        for ev in events:
            if isinstance(ev, SpeechStart):
                self._on_speech_start(ev)
            elif isinstance(ev, SpeechPause):
                self._start_speculative(ev)
            elif isinstance(ev, SpeechResume):
                self._speculative = None
            elif isinstance(ev, TurnEnd):
                self._on_turn_end(ev)
        self._maybe_partial()

    def _on_speech_start(self, ev: SpeechStart) -> None:
        if self.replying:
            self._interrupt("barge-in")
        self._last_partial_pos = self.turns.position
        self._set_state(State.LISTENING)
        self._emit(SpeechStarted(ev.at / RATE))

    def _maybe_partial(self) -> None:
        s = self.settings
        if (self.stt is None or not self.turns.speaking or s.partial_interval_ms <= 0
                or (self._partial is not None and not self._partial.done())):
            return
        if (self.turns.position - self._last_partial_pos) * 1000 < s.partial_interval_ms * RATE:
            return
        self._last_partial_pos = self.turns.position
        audio = self.turns.current_audio()
        turn = self._turn
        self._partial = asyncio.create_task(self._partial_transcript(audio, turn))

    async def _partial_transcript(self, audio: np.ndarray, turn: int) -> None:
        assert self.stt is not None
        try:
            text = await self.stt.transcribe(audio, language=self.settings.language)
        except VoicechatError:
            return  # an interim result is best-effort; the final transcript reports errors
        if text and turn == self._turn and self.turns.speaking:
            earlier = " ".join(t.result() for t in self._pieces if t.done() and not t.exception())
            self._emit(PartialTranscript(f"{earlier} {text}".strip()))

    def _start_speculative(self, ev: SpeechPause) -> None:
        """Transcribe at the first pause, while end of turn is still being confirmed."""
        if self.stt is None:
            return
        task = asyncio.create_task(self.stt.transcribe(ev.audio, language=self.settings.language))
        self._speculative = (ev.last_voiced, task)

    def _on_turn_end(self, ev: TurnEnd) -> None:
        if self.stt is None:
            return
        if ev.forced:
            # Still talking: transcribe this piece now, answer once the user stops.
            self._pieces.append(asyncio.create_task(self.stt.transcribe(ev.audio, language=self.settings.language)))
            self._emit(SpeechEnded(ev.at / RATE, (ev.at - ev.start) / RATE, forced=True))
            return
        spec = self._speculative
        self._speculative = None
        final = spec[1] if spec and spec[0] == ev.last_voiced else None
        eot_s = (ev.at - ev.last_voiced) / RATE
        self._emit(SpeechEnded(ev.last_voiced / RATE, (ev.last_voiced - ev.start) / RATE))
        pieces, self._pieces = self._pieces, []
        self._begin_turn(audio=ev.audio, text=None, pieces=pieces, speculative=final,
                         eot_ms=round(eot_s * 1000, 1))

    def submit_text(self, text: str) -> None:
        """A final transcript from elsewhere (the browser's speech recognition): reply to it."""
        text = text.strip()
        if text:
            if self.replying:
                self._interrupt("barge-in")
            self._begin_turn(audio=None, text=text, pieces=[], speculative=None, eot_ms=0.0)

    async def end_of_input(self) -> None:
        """The input ended (end of a file): treat trailing speech as a finished turn."""
        if self.turns.speaking:
            silence = np.zeros(int(RATE * (self.settings.end_of_turn_ms + 100) / 1000), dtype=np.float32)
            self.feed_16k(silence)

    # ------------------------------------------------------------------ turns
    def _begin_turn(self, *, audio: np.ndarray | None, text: str | None, pieces: list[asyncio.Task[str]],
                    speculative: asyncio.Task[str] | None, eot_ms: float) -> None:
        self._turn += 1
        decided = time.perf_counter()
        self._reply_turn = self._turn
        self._reply = asyncio.create_task(
            self._run_turn(self._turn, audio, text, pieces, speculative, eot_ms, decided))

    async def _transcribe_turn(self, audio: np.ndarray | None, pieces: list[asyncio.Task[str]],
                               speculative: asyncio.Task[str] | None) -> str:
        assert self.stt is not None
        parts = [await p for p in pieces]
        if speculative is not None:
            parts.append(await speculative)
        elif audio is not None:
            parts.append(await self.stt.transcribe(audio, language=self.settings.language))
        return " ".join(p for p in parts if p).strip()

    async def _run_turn(self, turn: int, audio: np.ndarray | None, text: str | None,
                        pieces: list[asyncio.Task[str]], speculative: asyncio.Task[str] | None,
                        eot_ms: float, decided: float) -> None:
        s = self.settings
        self._set_state(State.THINKING)
        metrics = TurnMetrics(turn, eot_ms=eot_ms)
        pipeline: ReplyPipeline | None = None
        try:
            if text is None:
                t0 = time.perf_counter()
                try:
                    text = await self._transcribe_turn(audio, pieces, speculative)
                except VoicechatError as exc:
                    self._emit(ErrorEvent(str(exc), "stt"))
                    text = ""
                metrics = TurnMetrics(turn, stt_ms=_ms(t0, time.perf_counter()), eot_ms=eot_ms)
            if not text:
                self._set_state(State.LISTENING)  # silence or noise: no LLM call
                return
            self._emit(FinalTranscript(turn, text))
            messages = self.history.messages(s.prompt(), s.history_messages)
            self.history.add(Entry("user", text, turn))
            messages.append(Message("user", text))
            pipeline = ReplyPipeline(turn, self.llm, self.tts, self.output_rate, self._on_reply_event)
            times = await pipeline.run(messages)
            self._finish_reply(turn, pipeline, interrupted=False)
            metrics = TurnMetrics(
                turn, stt_ms=metrics.stt_ms, eot_ms=eot_ms,
                llm_first_token_ms=_ms(times.llm_start, times.llm_first_token),
                first_sentence_ms=_ms(times.llm_start, times.first_sentence),
                tts_first_audio_ms=_ms(times.tts_first_start, times.first_audio),
                first_audio_ms=None if times.first_audio is None
                else round(eot_ms + (times.first_audio - decided) * 1000.0, 1),
                extra={"reply_audio_s": round(times.audio_s, 3)},
            )
            self.metrics.append(metrics)
            self._emit(metrics)
            self._schedule_idle()
        except asyncio.CancelledError:
            if pipeline is not None:
                self._finish_reply(turn, pipeline, interrupted=True)
            raise
        except Exception as exc:  # a backend bug must not kill the session
            self._emit(ErrorEvent(f"turn {turn} failed: {exc!r}", "engine"))
            self._set_state(State.LISTENING)

    def _on_reply_event(self, event: Event) -> None:
        if isinstance(event, AudioOut):
            now = time.perf_counter()
            self._playback_end = max(now, self._playback_end) + event.duration_s
            self._set_state(State.SPEAKING)
        self._emit(event)

    def _finish_reply(self, turn: int, pipeline: ReplyPipeline, *, interrupted: bool) -> None:
        t = pipeline.times
        if t.text.strip():
            self.history.add(Entry("assistant", t.text.strip(), turn, interrupted=interrupted, cut_off=t.cut_off))
        self._emit(ReplyDone(turn, t.text.strip(), interrupted=interrupted, cut_off=t.cut_off))

    def _schedule_idle(self) -> None:
        """Back to listening when the surface has played the last reply audio."""
        delay = max(0.0, self._playback_end - time.perf_counter())
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        loop = asyncio.get_running_loop()
        self._idle_timer = loop.call_later(delay, self._back_to_listening)

    def _back_to_listening(self) -> None:
        if not self.generating:
            self._set_state(State.LISTENING)

    def _interrupt(self, reason: str) -> None:
        if self._reply is not None and self.generating:
            self._reply.cancel()  # its handler records the partial reply as interrupted
        else:
            self.history.mark_interrupted(self._reply_turn)  # generated, but still playing
        self._playback_end = 0.0
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        self._emit(Interrupted(self._reply_turn, reason))
        self._set_state(State.LISTENING)

    def stop_speaking(self) -> None:
        """The stop button: cancel the reply and drop its queued audio."""
        if self.replying:
            self._interrupt("stop")

    async def wait_reply(self) -> None:
        """Until the current reply (if any) has been generated."""
        if self._reply is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reply

    def clear(self) -> None:
        self.stop_speaking()
        self.history.clear()
        self.metrics.clear()

    async def aclose(self) -> None:
        """Cancel everything in flight; the backends' worker threads finish their current step."""
        self._closed = True
        tasks: list[asyncio.Task[Any]] = [t for t in (self._reply, self._partial) if t is not None]
        tasks += self._pieces + ([self._speculative[1]] if self._speculative else [])
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        self._set_state(State.IDLE)
