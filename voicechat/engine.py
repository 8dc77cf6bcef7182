"""The conversation engine: audio frames in, events out, one object per conversation.

Threading: a :class:`Conversation` lives on one asyncio event loop and every public
method must be called on that loop's thread. Surfaces whose audio arrives on other
threads (aiortc, ipykernel comms) go through :class:`voicechat.conversation_thread.ConversationThread`,
the one class that crosses threads. Blocking model work runs on worker threads inside
the backends; the per-frame path (resample + VAD) runs inline because it costs well
under 1 % of real time. The microphone's half (frames to turns: voice, pauses, barge-in) is
:mod:`voicechat.microphone_turns`; here are the turns' lifecycle, their outputs and interruptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from voicechat import workers
from voicechat.audio import SPEECH_RATE, InputConverter
from voicechat.backend_abilities import Closes
from voicechat.config import Settings
from voicechat.end_of_turn import SilenceSegmenter, TurnConfig
from voicechat.events import (
    AudioOut,
    ErrorEvent,
    Event,
    Interrupted,
    InterruptReason,
    SpeechEnded,
    State,
    StateChanged,
    TurnMetrics,
)
from voicechat.history import History
from voicechat.live_captions import LiveCaptions
from voicechat.llm.base import ChatModel, Message
from voicechat.microphone_turns import MicrophoneTurns
from voicechat.realtime.base import speech_to_speech
from voicechat.recording import ConversationRecorder
from voicechat.speculative_turn import RunningTurn, TurnInput
from voicechat.stt.base import SpeechToText, is_billed
from voicechat.transcribed_prefix import TranscribedPrefix
from voicechat.tts.base import TextToSpeech
from voicechat.turn_policy import LineEndScoring, PauseHabit, TurnPolicy
from voicechat.vad import VoiceActivityDetector, make_vad
from voicechat.warm_up import warm_up_once


class Conversation(MicrophoneTurns):
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

    def submit_text(self, text: str) -> None:
        """A final transcript from elsewhere (the browser's speech recognition): reply to it."""
        text = text.strip()
        if text:
            if self.replying:
                self._interrupt("barge-in")
            self._drop_speculative()
            self._start_turn(TurnInput(text=text), eot_ms=0.0)

    # ------------------------------------------------------------------ turns
    def _start_turn(self, source: TurnInput, *, eot_ms: float) -> None:
        self._turn += 1
        turn = RunningTurn(self._turn, self, source, held=False)
        turn.eot_ms = eot_ms
        turn.began_at = self.turns.position
        self._current = turn

    def _run_ahead(self, source: TurnInput) -> RunningTurn:
        """A turn prepared ahead (held) while the end of the user's turn is not yet decided."""
        return RunningTurn(self._turn, self, source, held=True)

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
