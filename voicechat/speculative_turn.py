"""One user turn, from transcript to the last reply frame — possibly run ahead of time.

A turn may start *speculatively* at the first pause in speech, before the end-of-turn
silence has been confirmed: it transcribes, asks the LLM and synthesises the first
sentence while the engine is still waiting. Until :meth:`RunningTurn.commit` every side effect
(events, history, state) is held back in order; if the user resumes speaking the turn is
cancelled and leaves no trace. On commit the held effects run at once, so the first reply
audio leaves the moment the end of turn is confirmed.

Runs entirely on the engine's event loop; backends do their blocking work on worker threads.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from voicechat.backends import is_billed
from voicechat.config import Settings
from voicechat.errors import VoicechatError
from voicechat.events import AudioOut, ErrorEvent, Event, FinalTranscript, ReplyDone, State, TurnMetrics
from voicechat.history import Entry, History
from voicechat.llm.base import ChatModel, Message
from voicechat.realtime.base import SpeechToSpeech, VoiceReply, speech_to_speech
from voicechat.reply import ReplyPipeline
from voicechat.stt.base import SpeechToText
from voicechat.tts.base import TextToSpeech
from voicechat.turn_policy import LineEndScoring, heard_question


def _ms(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round((b - a) * 1000.0, 1)


class TurnHost(Protocol):
    """What a turn needs from its conversation (implemented by :class:`voicechat.engine.Conversation`)."""

    settings: Settings
    stt: SpeechToText | None
    llm: ChatModel
    tts: TextToSpeech | None
    scorer: LineEndScoring | None
    history: History
    output_rate: int
    metrics: list[TurnMetrics]

    def deliver(self, event: Event) -> None: ...

    def set_state(self, state: State) -> None: ...

    def reply_finished(self) -> None: ...

    def line_end_scored(self) -> None: ...


@dataclass
class TurnInput:
    audio: np.ndarray | None = None
    text: str | None = None
    pieces: tuple[asyncio.Task[str], ...] = ()  # transcripts of forced cuts of a long utterance
    last_voiced: int = -1  # identifies the speech a speculative turn was started on
    started_after_eos_ms: float = 0.0  # how long after the end of speech the work began
    response_id: str | None = None  # a reply the speech-to-speech server began on its own (server_vad)


class RunningTurn:
    """A running turn; ``held`` until :meth:`commit` (speculative) or live from the start."""

    def __init__(self, number: int, host: TurnHost, source: TurnInput, *, held: bool) -> None:
        self.number = number
        self.host = host
        self.source = source
        self.held = held
        self.speculative = held
        self._pending: list[Callable[[], None]] = []
        self.created_at = time.perf_counter()
        self.committed_at: float | None = None if held else self.created_at
        self.eot_ms = 0.0
        self.first_audio_out: float | None = None
        self.delivered_s = 0.0  # reply audio handed to the surface so far
        self.heard_s: float | None = None  # set on interruption: how much of it had played
        self._pipeline: ReplyPipeline | VoiceReply | None = None
        self.transcript: str | None = None
        self._retracted = False
        self._cancelled = False  # from cancel() on: nothing more of the reply goes out
        self.line_end: float | None = None  # P(the user's words are a finished line), scored while held
        self.question = False  # the transcriber heard a question ("?")
        self._scored = False
        self.began_at = 0  # the microphone's position (16 kHz samples) when the turn began
        self._heard_user = False  # the user's words of this turn are shown and kept
        self._earlier: list[Message] | None = None  # the conversation before typed words were kept
        if not held and source.text is not None and source.audio is None and not source.pieces:
            # Typed words are the user's at once: kept even if the turn is cut before it runs.
            s = host.settings
            self._earlier = host.history.messages(s.prompt(), s.history_messages)
            self.transcript = source.text
            self._hear(source.text)
        self.task: asyncio.Task[None] = asyncio.create_task(self._run())

    # ------------------------------------------------------------------ hold / release
    def _hold_or_run(self, effect: Callable[[], None]) -> None:
        """A side effect (event, history, state) runs now, or waits in order for :meth:`commit` while held."""
        if self.held:
            self._pending.append(effect)
        else:
            effect()

    def commit(self, eot_ms: float) -> None:
        """The end of turn is confirmed: release everything held, in order, now."""
        self.eot_ms = eot_ms
        self.committed_at = time.perf_counter()
        self.held = False
        pending, self._pending = self._pending, []
        for effect in pending:
            effect()

    @property
    def done(self) -> bool:
        return self.task.done()

    @property
    def cancelled(self) -> bool:
        """Cut (barge-in, stop, dropped): its task may run one more loop step to record that."""
        return self._cancelled

    @property
    def scoring(self) -> bool:
        """The end-of-turn score of this turn's words is still on its way."""
        return not self._scored and not self.task.done()

    async def _score(self, messages: list[Message], text: str, stats: dict[str, float]) -> None:
        """While held, judge whether the words are finished (before the reply takes the model's lock)."""
        scorer = self.host.scorer
        try:
            if self.held and scorer is not None:
                self.question = heard_question(text)
                t0 = time.perf_counter()
                self.line_end = await scorer.ascore(messages, text)
                stats["line_end"] = (time.perf_counter() - t0) * 1000.0
        except Exception:  # a failed score only costs the early release
            self.line_end = None
        finally:
            self._scored = True
        if self.held:
            self.host.line_end_scored()  # decide now, not at the next audio chunk

    def cancel(self) -> None:
        """Stop the turn now. The reply's speaker task may still hand over audio it has queued
        before the cancellation reaches it (same loop, earlier in the ready queue): dropped here, as
        the surface has already flushed what it had and the state is back to listening."""
        self._cancelled = True
        if self.held:
            self._pending.clear()  # never happened, as far as anyone can tell
        if (
            (self.held or self._retracted)
            and self._pipeline is not None
            and not isinstance(self._pipeline, ReplyPipeline)
        ):
            self._pipeline.forget()  # nor in the speech-to-speech model's memory
        self.task.cancel()

    def _raise_if_cancelled(self) -> None:
        """A cancel that arrives as the awaited reply gets its last event can be lost on Python 3.11
        (``asyncio.wait_for`` returns the event instead of raising), and the reply then ends as if
        whole: kept unmarked in the history after a barge-in. The turn was cut short: end it so."""
        if self._cancelled:
            raise asyncio.CancelledError

    @property
    def _voice_reply(self) -> VoiceReply | None:
        return None if self._pipeline is None or isinstance(self._pipeline, ReplyPipeline) else self._pipeline

    def interrupted_at(self, heard_s: float) -> None:
        """The user cut in after ``heard_s`` seconds of the reply had played (barge-in or stop)."""
        self.heard_s = heard_s
        if self._voice_reply is not None:
            self._voice_reply.stop(heard_s)  # the model keeps only what was heard

    def retract(self) -> None:
        """Cancel a committed turn whose words the user is still adding to: it leaves no reply behind."""
        self._retracted = True
        self.cancel()

    def _hear(self, text: str) -> None:
        """The user's words of this turn: shown and kept in the history, once."""
        if self._heard_user:
            return
        self._heard_user = True
        host, n = self.host, self.number
        self._hold_or_run(lambda: host.deliver(FinalTranscript(n, text)))
        self._hold_or_run(lambda: host.history.add(Entry("user", text, n)))

    def _conversation_before(self) -> list[Message]:
        if self._earlier is not None:
            return self._earlier
        s = self.host.settings
        return self.host.history.messages(s.prompt(), s.history_messages)

    # ------------------------------------------------------------------ the work
    async def _transcribe(self, stats: dict[str, float]) -> str:
        src, host = self.source, self.host
        if src.text is not None:
            return src.text
        assert host.stt is not None
        t0 = time.perf_counter()
        # Shielded: a piece outlives a dropped speculative turn, and the next turn reuses it.
        parts = [await asyncio.shield(p) for p in src.pieces]
        if src.audio is not None:
            parts.append(await host.stt.transcribe(src.audio, language=host.settings.language))
        stats["stt"] = (time.perf_counter() - t0) * 1000.0
        return " ".join(p for p in parts if p).strip()

    async def _run(self) -> None:
        host, n = self.host, self.number
        stats: dict[str, float] = {}
        self._hold_or_run(lambda: host.set_state(State.THINKING))
        voice = speech_to_speech(host.llm)
        if voice is not None:
            await self._speak_for_itself(voice, stats)
            return
        pipeline: ReplyPipeline | None = None
        try:
            try:
                text = await self._transcribe(stats)
            except VoicechatError as exc:
                message = str(exc)
                self._hold_or_run(lambda: host.deliver(ErrorEvent(message, "stt")))
                text = ""
            self.transcript = text
            if not text:
                self._scored = True
                self._hold_or_run(lambda: host.set_state(State.LISTENING))  # silence or noise: no LLM call
                return
            earlier = self._conversation_before()
            await self._score(earlier, text, stats)
            messages = [*earlier, Message("user", text)]
            self._hear(text)
            pipeline = self._pipeline = ReplyPipeline(n, host.llm, host.tts, host.output_rate, self._reply_event)
            await pipeline.run(messages)
            self._raise_if_cancelled()
            self._hold_or_run(lambda: self._finish(pipeline, interrupted=False, stats=stats))
        except asyncio.CancelledError:
            if pipeline is not None and not self.held and not self._retracted:
                self._finish(pipeline, interrupted=True, stats=None)
            raise
        except Exception as exc:  # a backend bug must not end the session
            message = f"turn {n} failed: {exc!r}"
            self._hold_or_run(lambda: host.deliver(ErrorEvent(message, "engine")))
            self._hold_or_run(lambda: host.set_state(State.LISTENING))

    async def _speak_for_itself(self, voice: SpeechToSpeech, stats: dict[str, float]) -> None:
        """The turn on a speech-to-speech model: it hears the audio and answers aloud (no STT, no TTS)."""
        host, n = self.host, self.number
        reply = self._pipeline = voice.voice_reply(n, host.output_rate, self._reply_event)
        earlier = self._conversation_before()
        # A turn started ahead is scored on its words, as on the pipeline; until the score is in it
        # counts as on its way (the policy waits up to its ceiling).
        self._scored = not (self.held and host.scorer is not None)
        server_words: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        scoring = [] if self._scored else [asyncio.create_task(self._score_words(earlier, server_words, stats))]

        def heard(text: str) -> None:
            self.transcript = text
            if not server_words.done():
                server_words.set_result(text)
            self._hear(text)

        try:
            await reply.run(self.source, earlier, heard)
            self._raise_if_cancelled()
            if not server_words.done():
                server_words.set_result("")  # the server sent no transcript: nothing to score
            await asyncio.gather(*scoring, return_exceptions=True)  # the end of turn still reads it
            self._hold_or_run(lambda: self._finish(reply, interrupted=False, stats=stats))
        except asyncio.CancelledError:
            if not self.held and not self._retracted:
                self._finish(reply, interrupted=True, stats=None)
            raise
        except Exception as exc:  # a backend bug must not end the session
            message = f"turn {n} failed: {exc!r}"
            self._hold_or_run(lambda: host.deliver(ErrorEvent(message, "engine")))
            self._hold_or_run(lambda: host.set_state(State.LISTENING))
        finally:
            for task in scoring:
                task.cancel()

    async def _score_words(
        self, earlier: list[Message], server_words: asyncio.Future[str], stats: dict[str, float]
    ) -> None:
        """The semantic end of turn of a speech-to-speech turn started ahead.

        The words come from the engine's own transcriber when it has a free (local) one, run beside
        the request: the server's transcript of the turn arrives only after its commit and a round
        trip, and waiting for it held most turns to the policy's ceiling (realtime/semantic measured
        1488 ms p50 voice-to-voice against 528 ms on silence, docs/realtime.md). Without one, or if
        it hears nothing, the server's transcript is scored.
        """
        stt, audio, text = self.host.stt, self.source.audio, ""
        if stt is not None and not is_billed(stt) and audio is not None and not self.source.pieces:
            t0 = time.perf_counter()
            try:
                text = await stt.transcribe(audio, language=self.host.settings.language)
            except VoicechatError:
                text = ""
            stats["stt"] = (time.perf_counter() - t0) * 1000.0
        if not text.strip():
            text = await asyncio.shield(server_words)
        if text.strip():
            await self._score(earlier, text, stats)
        else:
            self._scored = True
            if self.held:
                self.host.line_end_scored()

    def _reply_event(self, event: Event) -> None:
        if self._cancelled:
            return

        def deliver() -> None:
            if isinstance(event, AudioOut):
                self.delivered_s += event.duration_s
                if self.first_audio_out is None:
                    self.first_audio_out = time.perf_counter()
            self.host.deliver(event)

        self._hold_or_run(deliver)

    def heard_text(self) -> str | None:
        """What the user heard of an interrupted reply (``None``: all of it, or no voice to go by)."""
        if self.heard_s is None or self._pipeline is None:
            return None
        if self.host.tts is None and isinstance(self._pipeline, ReplyPipeline):
            return None
        return self._pipeline.times.heard_text(self.heard_s)

    def _finish(
        self, pipeline: ReplyPipeline | VoiceReply, *, interrupted: bool, stats: dict[str, float] | None
    ) -> None:
        host, t, n = self.host, pipeline.times, self.number
        text = t.text.strip()
        heard = self.heard_text() if interrupted else None
        if text:
            kept = text if heard is None else heard  # the next turn must not build on words never heard
            host.history.add(Entry("assistant", kept, n, interrupted=interrupted, cut_off=t.cut_off))
        host.deliver(ReplyDone(n, text, interrupted=interrupted, cut_off=t.cut_off))
        if stats is None:
            return
        committed = self.committed_at or time.perf_counter()
        metrics = TurnMetrics(
            n,
            stt_ms=round(stats["stt"], 1) if "stt" in stats else None,
            eot_ms=self.eot_ms,
            llm_first_token_ms=_ms(t.llm_start, t.llm_first_token),
            first_sentence_ms=_ms(t.llm_start, t.first_sentence),
            tts_first_audio_ms=_ms(t.tts_first_start, t.first_audio),
            first_audio_ms=None
            if self.first_audio_out is None
            else round(self.eot_ms + (self.first_audio_out - committed) * 1000.0, 1),
            reply_audio_s=round(t.audio_s, 3),
            speculative=self.speculative,
            line_end=None if self.line_end is None else round(self.line_end, 4),
            question=None if self.line_end is None else self.question,
            line_end_ms=round(stats["line_end"], 1) if "line_end" in stats else None,
            started_after_eos_ms=self.source.started_after_eos_ms if self.speculative else self.eot_ms,
            started_perf_s=self.created_at,
            speculative_lead_ms=round(max(0.0, (committed - t.llm_start) * 1000.0), 1),
        )
        host.metrics.append(metrics)
        host.deliver(metrics)
        host.reply_finished()
