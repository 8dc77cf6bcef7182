"""End-of-turn detection: a pure, synchronous state machine over VAD scores.

Positions are counted in samples of the 16 kHz input, never in wall-clock time, so the
same recording always gives the same turns. Buffers are bounded by ``max_utterance_s``:
a user who never pauses is cut into pieces rather than grown into an unbounded array.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from voicechat.audio import SPEECH_RATE
from voicechat.vad import VoiceActivityDetector


@dataclass(frozen=True)
class TurnConfig:
    threshold: float = 0.5
    min_speech_ms: int = 200
    end_of_turn_ms: int = 500
    pause_ms: int = 200  # first silence worth a speculative transcript
    max_utterance_s: float = 30.0
    pre_roll_ms: int = 300  # audio kept from before speech was confirmed
    tail_ms: int = 150  # silence kept after the last voiced window

    @property
    def neg_threshold(self) -> float:
        return max(self.threshold - 0.15, 0.01)


@dataclass(frozen=True)
class SpeechStart:
    at: int  # sample index of the first voiced window


@dataclass(frozen=True)
class SpeechPause:
    """Silence began mid-turn; ``audio`` is the utterance so far (for a speculative transcript)."""

    audio: np.ndarray
    last_voiced: int
    at: int  # sample index where the pause was noticed


@dataclass(frozen=True)
class SpeechResume:
    """Speech came back after a pause: any speculative work on the pause is stale."""

    at: int
    silence_ms: float = 0.0  # how long the pause inside the turn lasted (a speaker's habit, see turn_policy)


@dataclass(frozen=True)
class TurnEnd:
    audio: np.ndarray
    start: int
    last_voiced: int  # sample index just after the last voiced window: the true end of speech
    at: int  # sample index where the end was decided
    forced: bool = False


TurnEvent = SpeechStart | SpeechPause | SpeechResume | TurnEnd


class SilenceSegmenter:
    """Cuts 16 kHz mono float32 audio of any length into utterances by the VAD's silences, reporting turn events.

    Not thread-safe: one per input stream, called from one thread (the engine's loop).
    """

    def __init__(self, vad: VoiceActivityDetector, config: TurnConfig | None = None) -> None:
        self.vad = vad
        self.config = config or TurnConfig()
        self._win = vad.window
        self._pending = np.zeros(0, dtype=np.float32)
        self._pos = 0  # samples consumed so far
        self._reset_turn()

    def _reset_turn(self) -> None:
        cfg = self.config
        self._pre_roll: deque[np.ndarray] = deque(maxlen=max(1, cfg.pre_roll_ms * SPEECH_RATE // 1000 // self._win))
        self._utt: list[np.ndarray] = []
        self._utt_len = 0
        self._speaking = False
        self._voiced_run = 0
        self._voiced_total = 0  # voiced samples of this utterance, candidate run included
        self._candidate_start = 0
        self._silence_run = 0
        self._paused = False
        self._start = 0
        self._last_voiced = 0

    @property
    def speaking(self) -> bool:
        return self._speaking

    @property
    def utterance_voiced_ms(self) -> float:
        """Voiced audio in the utterance under way (a cough is short; a barge-in says more)."""
        return (self._voiced_total if self._speaking else self._voiced_run) * 1000 / SPEECH_RATE

    @property
    def voiced_ms(self) -> float:
        """Length of the voiced run not yet confirmed as speech (for an early barge-in decision)."""
        return 0.0 if self._speaking else self._voiced_run * 1000 / SPEECH_RATE

    @property
    def utterance_start(self) -> int:
        """Sample index where the utterance under way, or the voiced run not yet confirmed, began."""
        return self._start if self._speaking else self._candidate_start

    @property
    def position(self) -> int:
        return self._pos

    @property
    def silence_ms(self) -> float:
        """Silence since the last voiced window of the current utterance (0 when nobody is speaking)."""
        return self._silence_run * 1000 / SPEECH_RATE if self._speaking else 0.0

    @property
    def last_voiced(self) -> int:
        return self._last_voiced

    def end_turn(self) -> TurnEnd | None:
        """End the current utterance now (a turn policy decided it is finished); None if nobody spoke."""
        if not self._speaking:
            return None
        ev = TurnEnd(self._trimmed(), self._start, self._last_voiced, self._pos)
        self._reset_turn()
        return ev

    def current_audio(self) -> np.ndarray:
        """The utterance so far (for interim transcripts); empty when nobody is speaking."""
        if not self._speaking or not self._utt:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(self._utt)

    def reset(self) -> None:
        self._pending = np.zeros(0, dtype=np.float32)
        self.vad.reset()
        self._reset_turn()

    def feed(self, audio: np.ndarray) -> list[TurnEvent]:
        if audio.size == 0:
            return []
        data = np.concatenate([self._pending, audio]) if self._pending.size else audio
        n = len(data) - len(data) % self._win
        self._pending = data[n:].copy()
        events: list[TurnEvent] = []
        for i in range(0, n, self._win):
            self._step(data[i : i + self._win], events)
        return events

    def _step(self, window: np.ndarray, events: list[TurnEvent]) -> None:
        cfg = self.config
        prob = self.vad(window)
        start_of_window = self._pos
        self._pos += self._win
        voiced = prob >= cfg.threshold
        silent = prob < cfg.neg_threshold
        if not self._speaking:
            self._pre_roll.append(window.copy())
            if voiced:
                if self._voiced_run == 0:
                    self._candidate_start = start_of_window
                self._voiced_run += self._win
                if self._voiced_run * 1000 >= cfg.min_speech_ms * SPEECH_RATE:
                    self._speaking = True
                    self._voiced_total = self._voiced_run
                    self._start = self._candidate_start
                    self._last_voiced = self._pos
                    self._utt = list(self._pre_roll)
                    self._utt_len = sum(len(w) for w in self._utt)
                    self._pre_roll.clear()
                    events.append(SpeechStart(self._start))
            elif silent:
                self._voiced_run = 0
            return

        self._utt.append(window.copy())
        self._utt_len += self._win
        if not silent:
            before = self._last_voiced
            if voiced:
                self._last_voiced = self._pos
                self._voiced_total += self._win
            if self._paused and voiced:
                self._paused = False
                events.append(SpeechResume(start_of_window, (start_of_window - before) * 1000 / SPEECH_RATE))
            if voiced:
                self._silence_run = 0
        else:
            self._silence_run += self._win
            if not self._paused and self._silence_run * 1000 >= cfg.pause_ms * SPEECH_RATE:
                self._paused = True
                events.append(SpeechPause(self._trimmed(), self._last_voiced, self._pos))
            if self._silence_run * 1000 >= cfg.end_of_turn_ms * SPEECH_RATE:
                events.append(TurnEnd(self._trimmed(), self._start, self._last_voiced, self._pos))
                self._reset_turn()
                return
        if self._utt_len >= cfg.max_utterance_s * SPEECH_RATE:
            # Forced cut: the user is still talking, so the next piece starts right away.
            events.append(TurnEnd(np.concatenate(self._utt), self._start, self._pos, self._pos, forced=True))
            self._utt, self._utt_len = [], 0
            self._start = self._last_voiced = self._pos
            self._silence_run = 0
            self._paused = False

    def _trimmed(self) -> np.ndarray:
        """The utterance up to the last voiced window plus a short tail of silence."""
        audio = np.concatenate(self._utt)
        keep = len(audio) - (self._pos - self._last_voiced) + self.config.tail_ms * SPEECH_RATE // 1000
        return audio[: max(0, min(len(audio), keep))]
