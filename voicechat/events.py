"""Everything the engine emits, as frozen dataclasses.

Surfaces (CLI, Streamlit, notebook) consume one stream of these and never reach into
the engine's state, which keeps the engine the single owner of the conversation.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

InterruptReason = Literal["barge-in", "stop", "resumed"]
"""Why queued reply audio is dropped: the user talked over it, pressed stop, or was still talking
(the reply is dropped before any of it was heard, and their words are answered together)."""

ErrorStage = Literal["stt", "llm", "tts", "audio", "engine"]
"""Where an :class:`ErrorEvent` came from."""


class State(str, enum.Enum):
    """What the conversation is doing now; drives the status lights."""

    IDLE = "idle"
    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"


@dataclass(frozen=True)
class StateChanged:
    state: State


@dataclass(frozen=True)
class SpeechStarted:
    """The user started talking (after the minimum speech length)."""

    at_s: float  # position in the input stream, seconds


@dataclass(frozen=True)
class SpeechEnded:
    """End of turn confirmed; ``forced`` when the maximum utterance length cut it."""

    at_s: float
    duration_s: float
    forced: bool = False


@dataclass(frozen=True)
class PartialTranscript:
    text: str


@dataclass(frozen=True)
class FinalTranscript:
    turn: int
    text: str


@dataclass(frozen=True)
class ReplyDelta:
    turn: int
    text: str


@dataclass(frozen=True)
class ReplyDone:
    """The reply ended. ``interrupted``: barge-in or stop; ``cut_off``: the provider failed mid-reply."""

    turn: int
    text: str
    interrupted: bool = False
    cut_off: bool = False


@dataclass(frozen=True, eq=False)
class AudioOut:
    """Reply audio: mono int16 at ``sample_rate`` (the surface's rate), 20 ms multiples."""

    turn: int
    pcm: np.ndarray
    sample_rate: int

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / self.sample_rate


@dataclass(frozen=True)
class Interrupted:
    """Queued reply audio must be dropped now (see :data:`InterruptReason`)."""

    turn: int
    reason: InterruptReason
    # Seconds of the reply the user had heard when it stopped (the surface plays delivered audio in real
    # time): what a "resumed" release cost them, and where a speech-to-speech model's memory is cut.
    heard_s: float = 0.0


@dataclass(frozen=True)
class TurnMetrics:
    """Per-turn latency in milliseconds; ``None`` where a stage did not run.

    The fields after ``first_sentence_ms`` say how the turn ran, for the benchmarks and the
    notebook's metrics table.
    """

    turn: int
    stt_ms: float | None = None
    llm_first_token_ms: float | None = None
    tts_first_audio_ms: float | None = None
    first_audio_ms: float | None = None
    eot_ms: float | None = None
    first_sentence_ms: float | None = None
    reply_audio_s: float | None = None  # seconds of reply speech produced
    speculative: bool = False  # prepared at a pause, before the end of turn was confirmed
    line_end: float | None = None  # P(the user's words are a finished line), when scored
    question: bool | None = None  # the transcriber heard a question ("?"), when scored
    line_end_ms: float | None = None  # how long the end-of-turn score took
    started_after_eos_ms: float | None = None  # from the end of speech to the turn's work beginning
    started_perf_s: float | None = None  # time.perf_counter() when the work began (benchmarks' clock)
    speculative_lead_ms: float | None = None  # how far the reply had started before the commit

    def as_dict(self) -> dict[str, float | int | bool | None]:
        return asdict(self)


@dataclass(frozen=True)
class ErrorEvent:
    """Something failed; the session keeps going unless ``fatal``."""

    message: str
    stage: ErrorStage
    fatal: bool = False


Event = (
    StateChanged
    | SpeechStarted
    | SpeechEnded
    | PartialTranscript
    | FinalTranscript
    | ReplyDelta
    | ReplyDone
    | AudioOut
    | Interrupted
    | TurnMetrics
    | ErrorEvent
)
