"""The conversation engine: audio frames in, events out, one object per conversation.

Threading: a :class:`Conversation` lives on one asyncio event loop and every public
method must be called on that loop's thread. Surfaces whose audio arrives on other
threads (aiortc, ipykernel comms) go through :class:`voicechat.conversation_thread.ConversationThread`,
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

from voicechat import workers
from voicechat.audio import SPEECH_RATE, InputConverter
from voicechat.backend_abilities import Closes
from voicechat.config import Settings
from voicechat.end_of_turn import SilenceSegmenter, SpeechPause, SpeechResume, SpeechStart, TurnConfig, TurnEnd
from voicechat.errors import VoicechatError
from voicechat.events import (
    AudioOut,
    ErrorEvent,
    Event,
    Interrupted,
    InterruptReason,
    SpeechEnded,
    SpeechStarted,
    State,
    StateChanged,
    TurnMetrics,
)
from voicechat.history import History
from voicechat.live_captions import LiveCaptions
from voicechat.llm.base import ChatModel, Message
from voicechat.realtime.base import speech_to_speech
from voicechat.recording import ConversationRecorder
from voicechat.speculative_turn import RunningTurn, TurnInput
from voicechat.stt.base import SpeechToText, is_billed
from voicechat.transcribed_prefix import TranscribedPrefix
from voicechat.tts.base import TextToSpeech
from voicechat.turn_policy import LineEndScoring, PauseHabit, TurnPolicy
from voicechat.vad import VoiceActivityDetector, make_vad
from voicechat.warm_up import prime_next_turn, warm_up_once


class Conversation:
    """Listens, transcribes, replies and speaks; barge-in and ``stop_speaking()`` cut a reply.

    Build one with :func:`voicechat.create_conversation`, which turns the settings into the parts
    this takes. Events go to ``listener`` if given, else to a queue read with :meth:`events`.
    ``interim_stt`` writes the live transcript (``None``: none). ``scorer`` is the text end-of-turn
    signal, used when ``end_of_turn`` is ``semantic``; ``None`` ends turns on silence alone.
    ``half_duplex`` ignores the microphone while a reply plays (speakers without echo
    cancellation); the surfaces may change the attribute while the conversation runs.
    """

    def __init__(
        self,
        stt: SpeechToText | None,
        llm: ChatModel,
        tts: TextToSpeech | None,
        *,
        settings: Settings | None = None,
        vad: VoiceActivityDetector | None = None,
        output_rate: int = 48_000,
        listener: Callable[[Event], None] | None = None,
        interim_stt: SpeechToText | None = None,
        scorer: LineEndScoring | None = None,
        half_duplex: bool = False,
    ) -> None:
        self.settings = settings or Settings()
        s = self.settings
        self.stt, self.llm, self.tts = stt, llm, tts
        # A speech-to-speech reply model (VOICECHAT_LLM=realtime) hears each turn's audio itself:
        # ``stt`` then writes only the live captions, and ``tts`` is not used.
        self.voice = speech_to_speech(llm)
        self._server_turns = self.voice is not None and self.voice.server_turns
        self._heard_until = 0  # with server turns: where the local VAD last heard the user stop
        if self.voice is not None and self._server_turns:
            self.voice.attach(self)
        self._billed_prefix = TranscribedPrefix() if is_billed(stt) and self.voice is None else None
        self.output_rate = output_rate
        self.history = History()
        self.metrics: list[TurnMetrics] = []
        self.state = State.LISTENING
        self.half_duplex = half_duplex
        self.scorer: LineEndScoring | None = scorer if s.turn.end_of_turn == "semantic" else None
        self.policy = TurnPolicy(
            mode="semantic" if self.scorer is not None else "silence",
            early_ms=s.turn.end_of_turn_early_ms,
            end_of_turn_ms=s.turn.end_of_turn_ms,
            ceiling_ms=s.turn.end_of_turn_max_ms,
        )
        cfg = TurnConfig(
            threshold=s.turn.vad_threshold,
            min_speech_ms=s.turn.min_speech_ms,
            end_of_turn_ms=round(self.policy.longest_wait_ms),
            max_utterance_s=s.turn.max_utterance_s,
            pause_ms=s.turn.speculative_pause_ms,
        )
        self.turns = SilenceSegmenter(vad or make_vad(s.turn.vad), cfg)
        self._input = InputConverter(SPEECH_RATE)
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self._listener = listener or self._queue.put_nowait
        self._turn = 0
        self._current: RunningTurn | None = None
        self._playback_end = 0.0
        self._idle_timer: asyncio.TimerHandle | None = None
        self._priming: asyncio.Future[None] | None = None  # the LLM reading the history in (prime_next_turn)
        # The live transcript's STT; see backends.make_interim_stt for why it may differ from ``stt``.
        self.captions = LiveCaptions(
            interim_stt,
            self.turns,
            self._emit,
            language=s.language,
            interval_ms=s.partial_interval_ms,
            heard=self._prime,
        )
        self._pieces: list[asyncio.Task[str]] = []
        self._overlap = False  # the utterance under way began over a reply and is not yet a barge-in
        # Where (input sample) and which turn the last end of turn released: speech beginning within
        # the policy's resume window after it means the user was still going (see _barge_in).
        # (turn, its last voiced sample, where the policy's wait for it ran out): the resume window
        # opens there, not where a late score let the decision be taken.
        self._released: tuple[int, int, int] | None = None
        self._decided_wait_ms: float | None = None  # the policy's wait for the turn being ended now
        self.habit = PauseHabit()  # this speaker's pauses inside turns, which lengthen the wait
        self._closed = False
        # Opt-in, in memory: both sides of the conversation (see voicechat.recording).
        self.recording = ConversationRecorder(output_rate, s.record_max_s) if s.record_audio else None

    # ------------------------------------------------------------------ output
    def _emit(self, event: Event) -> None:
        if self.recording is not None:
            self.recording.on_event(event)
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
    def end_of_turn_signals(self) -> list[str]:
        """What decides that the user has finished, for the doctor and both surfaces to show."""
        return ["silence"] + ([self.scorer.name] if self.scorer is not None else [])

    @property
    def held_turn(self) -> RunningTurn | None:
        """The turn being prepared ahead while the end of the user's turn is not yet decided."""
        cur = self._current
        return cur if cur is not None and cur.held and not cur.done else None

    @property
    def turn(self) -> int:
        """Number of turns begun so far."""
        return self._turn

    @property
    def generating(self) -> bool:
        """A committed turn is being transcribed or its reply generated (playback not counted).

        Not once it is cut: its task ends only at the next loop step, and frames handed over in the
        same batch (a surface drains its inbox at once) would otherwise interrupt it again, with
        its queued audio already dropped, so counting all of it as heard."""
        cur = self._current
        return cur is not None and not cur.held and not cur.done and not cur.cancelled

    @property
    def replying(self) -> bool:
        """A reply is being generated or its audio is still playing at the surface."""
        return self.generating or time.perf_counter() < self._playback_end

    async def feed(self, audio: av.AudioFrame | np.ndarray, sample_rate: int | None = None) -> None:
        """One chunk of microphone audio in any format; never raises for bad audio (reports it)."""
        self.accept(audio, sample_rate)

    def accept(self, audio: av.AudioFrame | np.ndarray, sample_rate: int | None = None) -> None:
        """:meth:`feed` without a coroutine, for a caller already on the loop with many frames at once."""
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
        if self.recording is not None:
            self.recording.add_input(samples)
        if self.voice is not None and self._server_turns:
            self.voice.hear(samples)  # the server's detector decides when the turn ends
        events = self.turns.feed(samples)
        if self.turns.utterance_voiced_ms >= self.settings.turn.barge_in_ms:
            if self.replying:
                self._barge_in()  # enough voice to be more than a cough or a click
            else:
                self._overlap = False  # the reply ended meanwhile: this is an ordinary turn
        for ev in events:
            if isinstance(ev, SpeechStart):
                self._on_speech_start(ev)
            elif isinstance(ev, SpeechPause):
                self._start_speculative(ev)
            elif isinstance(ev, SpeechResume):
                self.habit.observe(ev.silence_ms)
                self._drop_speculative()
            elif isinstance(ev, TurnEnd):
                self._on_turn_end(ev)
        self._maybe_end_turn()
        self.captions.tick(busy=self.held_turn is not None, earlier=self._earlier_text)

    def _maybe_end_turn(self) -> None:
        """Semantic end of turn: ask the policy, with the held turn's score, whether this silence ends it."""
        if not self.policy.semantic or not self.turns.speaking or self.turns.silence_ms <= 0:
            return
        turn = self._current
        if turn is not None and turn.held and turn.source.last_voiced == self.turns.last_voiced:
            line_end, scoring, question = turn.line_end, turn.scoring, turn.question
        else:  # no turn prepared ahead on this silence: nothing scored
            line_end, scoring, question = None, False, False
        habit = self.habit.longest_ms
        wait = self.policy.wait_for(line_end, question=question, scoring=scoring, speaker_pause_ms=habit)
        if self.turns.silence_ms >= wait:
            ev = self.turns.end_turn()
            if ev is not None:
                self._decided_wait_ms = wait
                self._on_turn_end(ev)
                self._decided_wait_ms = None

    def _barge_in(self) -> None:
        """The user talks over the reply. If none of it has been heard yet, or they began within the
        resume window after their turn was released, they were still going: drop the reply (its
        queued audio too) and answer their words merged with what they add; else interrupt it.
        An early release thus costs a moment of reply, not a turn answered in two halves."""
        self._overlap = False
        turn = self._current
        released, window = self._released, self.policy.resume_ms * SPEECH_RATE / 1000
        went_on = (
            turn is not None
            and released is not None
            and turn.number == released[0]
            and self.turns.utterance_start - released[2] <= window
        )
        unheard = turn is not None and turn.delivered_s == 0 and self.generating and self._carries(turn)
        # a speech-to-speech reply whose words the engine has not got cannot be merged: interrupt it
        unheard_words = self.voice is not None and turn is not None and (turn.transcript is None or self._server_turns)
        if turn is None or turn.held or not (unheard or went_on) or unheard_words:
            self._interrupt("barge-in")
            return
        if went_on and released is not None:
            self.habit.observe((self.turns.utterance_start - released[1]) * 1000 / SPEECH_RATE)  # the pause we cut
        heard_s = self._heard_s(turn)
        turn.retract()
        self._playback_end = 0.0  # the surface drops what it queued on Interrupted
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        self.history.drop_turn(turn.number)
        carried: list[asyncio.Task[str]] = []
        text = turn.transcript if turn.transcript is not None else turn.source.text
        if text is not None:
            carried.append(asyncio.create_task(_already_transcribed(text)))
        else:
            carried += turn.source.pieces
            if turn.source.audio is not None and self.stt is not None:
                carried.append(
                    asyncio.create_task(self.stt.transcribe(turn.source.audio, language=self.settings.language))
                )
        self._pieces[:0] = carried
        self._current = None
        self._emit(Interrupted(turn.number, "resumed", round(heard_s, 3)))
        self._set_state(State.LISTENING)

    def _carries(self, turn: RunningTurn) -> bool:
        """Whether the words of ``turn`` may wait for what the user adds, to be answered with it.

        Typed words may not when the speech talking over them began before they were sent (it is
        not their continuation: it would be answered first-typed, then-said, as one line) or when
        no transcriber hears the speech (the browser recognises it: the carried words would never
        be answered). Such a reply is interrupted instead; the typed line stays in the history."""
        if turn.source.text is None:
            return True
        return self._hears_audio and self.turns.utterance_start >= turn.began_at

    def _on_speech_start(self, ev: SpeechStart) -> None:
        # Speech over a reply is not a barge-in until it has enough voice (see feed_16k).
        self._overlap = self.replying
        self.captions.new_utterance()
        self._prime()
        self._set_state(State.LISTENING)
        self._emit(SpeechStarted(ev.at / SPEECH_RATE))

    def _prime(self, heard: str = "") -> None:
        """The local reply model (or, beside a cloud one, the local scorer) reads the conversation, and
        the user's words so far (a caption), ahead of the turn: the score and the reply then read only
        what the final transcript adds. Not while a turn is prepared ahead: a late caption must not
        make its score wait for the model."""
        if not self.replying and self.held_turn is None and (self._priming is None or self._priming.done()):
            s = self.settings
            messages = self.history.messages(s.prompt(), s.history_messages)
            self._priming = prime_next_turn(self.llm, messages, heard, self.scorer)

    def _earlier_text(self) -> str:
        """What the utterance's pieces transcribed so far said (a long monologue is cut in pieces)."""
        return " ".join(t.result() for t in self._pieces if t.done() and not t.exception())

    @property
    def _hears_audio(self) -> bool:
        """Turns come from the microphone (not only from the browser's recogniser via submit_text)."""
        return self.stt is not None or self.voice is not None

    def _on_turn_end(self, ev: TurnEnd) -> None:
        if not self._hears_audio:
            return
        if self._server_turns:  # the server ends the turn (see server_turn)
            self._heard_until = ev.last_voiced
            return
        if self._overlap:  # a short sound over the reply, never a barge-in: not a turn either
            self._overlap = False
            return
        if ev.forced and self.stt is not None:
            # Still talking: transcribe this piece now, answer once the user stops.
            audio = ev.audio
            if self._billed_prefix is not None:
                sent, audio = self._billed_prefix.take(audio)
                self._pieces += sent
            self._pieces.append(asyncio.create_task(self.stt.transcribe(audio, language=self.settings.language)))
            self._emit(SpeechEnded(ev.at / SPEECH_RATE, (ev.at - ev.start) / SPEECH_RATE, forced=True))
            return
        eot_ms = round((ev.at - ev.last_voiced) / SPEECH_RATE * 1000, 1)
        self._emit(SpeechEnded(ev.last_voiced / SPEECH_RATE, (ev.last_voiced - ev.start) / SPEECH_RATE))
        turn = self._current
        if turn is not None and turn.held and turn.source.last_voiced == ev.last_voiced:
            if self._billed_prefix is not None:
                self._billed_prefix.reset()  # the turn holds the pieces
            turn.commit(eot_ms)  # the speculative turn was right: release it now
            self._released = (turn.number, ev.last_voiced, self._due(ev))
            return
        self._drop_speculative()
        pieces, self._pieces = tuple(self._pieces), []
        audio = ev.audio
        if self._billed_prefix is not None:
            sent, audio = self._billed_prefix.take(audio)
            pieces += sent
        self._start_turn(TurnInput(audio=audio, pieces=pieces, last_voiced=ev.last_voiced), eot_ms=eot_ms)
        self._released = (self._turn, ev.last_voiced, self._due(ev))

    def _due(self, ev: TurnEnd) -> int:
        """Where the wait for this turn ran out: a score that came late moved the decision, not the due point."""
        if self._decided_wait_ms is None:
            return ev.at
        return min(ev.at, ev.last_voiced + round(self._decided_wait_ms * SPEECH_RATE / 1000))

    def _start_speculative(self, ev: SpeechPause) -> None:
        """At the first pause, run the whole turn ahead while end of turn is still being confirmed."""
        if (
            not self._hears_audio
            or self._server_turns
            or self._overlap
            or self._pieces
            or (self._current is not None and not self._current.done)
        ):
            return
        self._turn += 1
        lead = round((ev.at - ev.last_voiced) / SPEECH_RATE * 1000, 1)
        if self._billed_prefix is not None and self.stt is not None:  # only what the provider has not heard
            pieces = self._billed_prefix.extend(self.stt, ev.audio, self.settings.language)
            source = TurnInput(pieces=pieces, last_voiced=ev.last_voiced, started_after_eos_ms=lead)
        else:
            source = TurnInput(audio=ev.audio, last_voiced=ev.last_voiced, started_after_eos_ms=lead)
        self._current = RunningTurn(self._turn, self, source, held=True)

    def _drop_speculative(self) -> None:
        turn = self._current
        if turn is not None and turn.held:
            turn.cancel()
            self._current = None
            self._turn -= 1  # it never happened

    def submit_text(self, text: str) -> None:
        """A final transcript from elsewhere (the browser's speech recognition): reply to it."""
        text = text.strip()
        if text:
            if self.replying:
                self._interrupt("barge-in")
            self._drop_speculative()
            self._start_turn(TurnInput(text=text), eot_ms=0.0)

    async def end_of_input(self) -> None:
        """The input ended (end of a file): treat trailing speech as a finished turn."""
        if self.turns.speaking:
            silence = np.zeros(int(SPEECH_RATE * (self.turns.config.end_of_turn_ms + 100) / 1000), dtype=np.float32)
            self.feed_16k(silence)

    # ------------------------------------------------------------------ turns
    def _start_turn(self, source: TurnInput, *, eot_ms: float) -> None:
        self._turn += 1
        turn = RunningTurn(self._turn, self, source, held=False)
        turn.eot_ms = eot_ms
        turn.began_at = self.turns.position
        self._current = turn

    # ServerTurnHost: called by a speech-to-speech model whose server ends the turns, on this loop
    def server_turn(self, response_id: str) -> None:
        ended = self.turns.end_turn()  # the local utterance is over too: its voice must not barge in
        last = ended.last_voiced if ended is not None else self._heard_until
        eot_ms = round(max(0, self.turns.position - last) / SPEECH_RATE * 1000, 1)
        self._emit(SpeechEnded(last / SPEECH_RATE, 0.0))
        if self.replying:
            self._interrupt("barge-in")
        self._start_turn(TurnInput(response_id=response_id, last_voiced=last), eot_ms=eot_ms)

    def server_error(self, message: str) -> None:
        self._emit(ErrorEvent(message, "llm"))

    def history_for_server(self) -> list[Message]:
        return self.history.messages(self.settings.prompt(), self.settings.history_messages)

    # TurnHost: called by the RunningTurn on this loop
    def deliver(self, event: Event) -> None:
        if isinstance(event, AudioOut):
            now = time.perf_counter()
            self._playback_end = max(now, self._playback_end) + event.duration_s
            self._set_state(State.SPEAKING)
        self._emit(event)

    def set_state(self, state: State) -> None:
        self._set_state(state)

    def line_end_scored(self) -> None:
        self._maybe_end_turn()

    def reply_finished(self) -> None:
        self._schedule_idle()
        workers.pool().submit(workers.trim_heap)  # off the loop: it can take a few milliseconds

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

    def _interrupt(self, reason: InterruptReason) -> None:
        turn = self._current
        number = turn.number if turn is not None else self._turn
        heard_s = self._heard_s(turn)
        if turn is not None and not turn.held:
            turn.interrupted_at(heard_s)
        if turn is not None and self.generating:
            turn.cancel()  # its handler records the partial reply as interrupted
        else:
            heard = turn.heard_text() if turn is not None and turn.number == number else None
            self.history.mark_interrupted(number, heard)  # generated, but still playing
        self._playback_end = 0.0
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        self._emit(Interrupted(number, reason, round(heard_s, 3)))
        self._set_state(State.LISTENING)

    def _heard_s(self, turn: RunningTurn | None) -> float:
        """Seconds of ``turn``'s reply played so far: the surface plays delivered audio in real time,
        so what is still queued was never heard."""
        if turn is None or turn.held:
            return 0.0
        unplayed = max(0.0, self._playback_end - time.perf_counter())
        return max(0.0, turn.delivered_s - unplayed)

    def playback_done(self) -> None:
        """The surface has played every reply sample already (a file or a benchmark, not a speaker)."""
        self._playback_end = min(self._playback_end, time.perf_counter())

    def stop_speaking(self) -> None:
        """The stop button: cancel the reply and drop its queued audio."""
        if self.replying:
            self._interrupt("stop")

    async def wait_reply(self) -> None:
        """Until the current reply (if any) has been generated."""
        turn = self._current
        if turn is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await turn.task

    async def warm_up(self) -> None:
        """Prime the models once per process (see :mod:`voicechat.warm_up`)."""
        prompt = self.settings.prompt()
        await warm_up_once(
            self.llm,
            prompt,
            self.history.messages(prompt, 0),
            self.scorer,
            (self.stt, self.captions.stt),
            self.tts if self.voice is None else None,
            language=self.settings.language,
        )

    def clear(self) -> None:
        """Forget the conversation: stop any reply, drop work prepared ahead, empty history and metrics."""
        self.stop_speaking()
        self._drop_speculative()
        if self.voice is not None:
            self.voice.new_conversation()  # the speech-to-speech model's memory too
        self.history.clear()
        self.metrics.clear()
        if self.recording is not None:
            self.recording.clear()

    async def aclose(self) -> None:
        """Cancel everything in flight; the backends' worker threads finish their current step."""
        self._closed = True
        tasks: list[asyncio.Task[Any]] = [t for t in (self.captions.task,) if t is not None]
        if self._current is not None:
            tasks.append(self._current.task)
        tasks += self._pieces
        if self._billed_prefix is not None:
            tasks += self._billed_prefix.pieces
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        for backend in (self.stt, self.llm, self.tts, self.scorer):
            if isinstance(backend, Closes):  # remote backends hold pooled connections
                with contextlib.suppress(Exception):
                    await backend.aclose()
        self._set_state(State.IDLE)


async def _already_transcribed(text: str) -> str:
    """A transcript already in hand, in the shape of a pending one (a carried piece)."""
    return text
