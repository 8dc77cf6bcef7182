"""The microphone half of a conversation: audio frames in, turns decided.

Each frame is converted to 16 kHz, its voice detected and the silence after it measured
(:class:`~voicechat.end_of_turn.SilenceSegmenter`); from that come the decisions a listener makes:
a turn prepared ahead at the first pause, released when the policy says the user has finished,
dropped when they go on; a reply talked over, cut (barge-in) or, when the user was only pausing,
taken back and answered with what they add. :class:`~voicechat.engine.Conversation` is this
class plus the turns' lifecycle and its outputs; the attributes declared below are its, set in its
``__init__``. Runs on the conversation's loop thread only, like every method of it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import av
import numpy as np

from voicechat.audio import SPEECH_RATE, InputConverter
from voicechat.config import Settings
from voicechat.end_of_turn import SilenceSegmenter, SpeechPause, SpeechResume, SpeechStart, TurnEnd
from voicechat.errors import VoicechatError
from voicechat.events import ErrorEvent, Event, Interrupted, InterruptReason, SpeechEnded, SpeechStarted, State
from voicechat.history import History
from voicechat.live_captions import LiveCaptions
from voicechat.llm.base import ChatModel
from voicechat.realtime.base import SpeechToSpeech
from voicechat.recording import ConversationRecorder
from voicechat.speculative_turn import RunningTurn, TurnInput
from voicechat.stt.base import SpeechToText
from voicechat.transcribed_prefix import TranscribedPrefix
from voicechat.turn_policy import LineEndScoring, PauseHabit, TurnPolicy
from voicechat.warm_up import prime_next_turn


class MicrophoneTurns:
    """Decides the turns from microphone audio; the rest of the conversation is in the subclass."""

    # The conversation's, used here (see Conversation.__init__).
    settings: Settings
    stt: SpeechToText | None
    llm: ChatModel
    voice: SpeechToSpeech | None
    scorer: LineEndScoring | None
    history: History
    recording: ConversationRecorder | None
    half_duplex: bool
    turns: SilenceSegmenter
    policy: TurnPolicy
    habit: PauseHabit
    captions: LiveCaptions
    _input: InputConverter
    _closed: bool
    _server_turns: bool
    _heard_until: int
    _billed_prefix: TranscribedPrefix | None
    _turn: int
    _current: RunningTurn | None
    _pieces: list[asyncio.Task[str]]
    _overlap: bool
    _released: tuple[int, int, int] | None
    _decided_wait_ms: float | None
    _priming: asyncio.Future[None] | None
    _playback_end: float
    _idle_timer: asyncio.TimerHandle | None

    if TYPE_CHECKING:  # the conversation's, too

        @property
        def replying(self) -> bool: ...

        @property
        def generating(self) -> bool: ...

        @property
        def held_turn(self) -> RunningTurn | None: ...

        def _emit(self, event: Event) -> None: ...

        def _set_state(self, state: State) -> None: ...

        def _start_turn(self, source: TurnInput, *, eot_ms: float) -> None: ...

        def _run_ahead(self, source: TurnInput) -> RunningTurn: ...

        def _interrupt(self, reason: InterruptReason) -> None: ...

        def _heard_s(self, turn: RunningTurn | None) -> float: ...

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
        self._current = self._run_ahead(source)

    def _drop_speculative(self) -> None:
        turn = self._current
        if turn is not None and turn.held:
            turn.cancel()
            self._current = None
            self._turn -= 1  # it never happened

    async def end_of_input(self) -> None:
        """The input ended (end of a file): treat trailing speech as a finished turn."""
        if self.turns.speaking:
            silence = np.zeros(int(SPEECH_RATE * (self.turns.config.end_of_turn_ms + 100) / 1000), dtype=np.float32)
            self.feed_16k(silence)


async def _already_transcribed(text: str) -> str:
    """A transcript already in hand, in the shape of a pending one (a carried piece)."""
    return text
