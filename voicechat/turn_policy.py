"""When a pause ends the user's turn: a wait that follows how finished their words look.

Pure and synchronous, fed numbers: the silence so far; ``line_end``, the probability that the
user's line ends after the words heard so far (:mod:`voicechat.llm.line_end`); and ``question``,
whether the user asked a question (:func:`heard_question`). The engine asks
:meth:`TurnPolicy.decide` after every chunk of audio while the user is silent, and again when a
score arrives.

The silence needed falls continuously with the evidence, from ``ceiling_ms`` (1.6 s: plainly
unfinished words, "…a table for" scores 0.000) to the ``early_ms`` floor (200 ms: a confident
finish), linearly in the log-odds of ``line_end`` between ``unsure`` and ``sure``; a heard question
adds ``question_lift`` to the log-odds. It replaced two bands (200 ms for a question ≥ 0.3 or any
line ≥ 0.95, else the ceiling) that held every statement and most commands 1.6 s.

Words alone cannot tell a finished statement from a finished clause with more to come ("It was the
best of times." scores 0.31, "…by the sea." 0.76, both followed by more), so two things make an
early guess safe: a speaker seen to pause long inside turns (:class:`PauseHabit`) waits past their
own pauses for anything but a plainly finished question, and a release the user talks on after,
within ``resume_ms``, is undone by the engine (the two parts are answered as one): a wrong guess
costs a moment. The curve and habit were chosen on a tuning set that is not the bundled one
(``bench/turn_curve.py``; docs/benchmarks.md, "Turn-taking"). A score still on its way holds; when
none can be had (no scorer, no words) the turn ends after ``end_of_turn_ms``.

``silence`` mode ends every turn after ``end_of_turn_ms`` of silence, whatever the words.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from voicechat.llm.base import Message

EndOfTurnMode = Literal["semantic", "silence"]
END_OF_TURN_MODES: tuple[EndOfTurnMode, ...] = ("semantic", "silence")


# Not "when" or "where": they open statements too ("When I was young, I lived by the sea." was cut).
_ASKING = {
    "what",
    "who",
    "whom",
    "whose",
    "why",
    "which",
    "how",
    "can",
    "could",
    "would",
    "will",
    "shall",
    "should",
    "is",
    "are",
    "was",
    "were",
    "do",
    "does",
    "did",
    "have",
    "has",
    "may",
}


def heard_question(text: str) -> bool:
    """The transcriber wrote a question mark, or (English) the words open the way a question does.

    Whisper drops the "?" of a question now and then ("who wrote Romeo and Juliet"); the opening
    word still says it. Only a question the model also finds finished is released early.
    """
    t = text.strip()
    if t.endswith(("?", "？")):
        return True
    first = t.split(maxsplit=1)[0].strip(",.").lower() if t else ""
    return first in _ASKING


class LineEndScoring(Protocol):
    """A text end-of-turn signal: :class:`voicechat.llm.line_end.LineEndScorer` (a model in this process) or
    :class:`voicechat.llm.served_line_end.ServedLineEndScorer` (the reply model's server)."""

    name: str

    async def ascore(self, history: Sequence[Message], text: str) -> float | None: ...


class Verdict(str, enum.Enum):
    END = "end"  # the turn is over: release the reply
    WAIT = "wait"  # not yet: ask again when more silence has passed


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1.0 - 1e-6)
    return math.log(p / (1.0 - p))


@dataclass(frozen=True)
class TurnPolicy:
    """The silence a turn needs, as a continuous function of how finished it looks.

    The evidence is the log-odds of ``line_end``, lifted by ``question_lift`` when a question was
    heard (a question's words end it more plainly than a statement's: "…of Italy?" cannot go on the
    way "I went to the store," can). Between ``unsure`` and ``sure`` the wait falls linearly in
    those log-odds from ``ceiling_ms`` to ``early_ms`` (the floor): a confident finish after
    ~200 ms, a likely one after a few hundred, a dangling phrase up to the ceiling — LiveKit's
    dynamic endpointing, drawn as a line instead of a step.
    """

    mode: EndOfTurnMode = "semantic"
    early_ms: float = 200.0  # the floor: the least silence any turn needs
    end_of_turn_ms: float = 500.0  # no score to be had (no scorer, no words): the silence rule
    ceiling_ms: float = 1600.0
    unsure: float = 0.1  # line_end at or below: the ceiling
    sure: float = 0.6  # line_end (after any question lift) at or above: the floor
    question_lift: float = 1.0  # log-odds a heard question adds (0.36 with it reads as 0.6 without)
    # Speech starting this soon after a release continues the turn: the reply stops and the two parts
    # are answered as one (the engine's "resumed"), so an early release costs a moment, not the turn.
    resume_ms: float = 1000.0
    # A speaker seen to pause this long inside turns waits a little longer than their pauses, for any
    # words not plainly finished; never more than ``habit_most_ms`` on that account.
    habit_margin_ms: float = 150.0
    habit_most_ms: float = 1300.0

    @property
    def semantic(self) -> bool:
        return self.mode == "semantic"

    @property
    def longest_wait_ms(self) -> float:
        """The most silence any turn can need (what the detector must wait for on its own)."""
        return max(self.ceiling_ms, self.end_of_turn_ms) if self.semantic else self.end_of_turn_ms

    def evidence(self, line_end: float, *, question: bool = False) -> float:
        """How far along the way from ``unsure`` (0) to ``sure`` (1) the words are, unclamped."""
        lo, hi = _logit(self.unsure), _logit(self.sure)
        return (_logit(line_end) + (self.question_lift if question else 0.0) - lo) / (hi - lo)

    def likely_finished(self, line_end: float | None, *, question: bool = False) -> bool:
        """The words so far read as a finished turn: worth a speculative (e.g. paid) request now."""
        if line_end is None:
            return False
        return self.wait_for(line_end, question=question) <= self.end_of_turn_ms

    def wait_for(
        self,
        line_end: float | None,
        *,
        question: bool = False,
        scoring: bool = False,
        speaker_pause_ms: float | None = None,
    ) -> float:
        """Silence (ms) after which the turn ends, given the score (``scoring``: one is on its way).

        ``speaker_pause_ms``: the longest recent pause this speaker made inside a turn
        (:class:`PauseHabit`); anything but a plainly finished question then waits past it, within
        ``habit_most_ms``: a statement's words read finished at every clause of a monologue.
        """
        if not self.semantic:
            return self.end_of_turn_ms
        if line_end is None:
            return self.longest_wait_ms if scoring else self.end_of_turn_ms
        floor = min(self.early_ms, self.end_of_turn_ms)
        t = min(1.0, max(0.0, self.evidence(line_end, question=question)))
        wait = round(self.longest_wait_ms - (self.longest_wait_ms - floor) * t, 1)
        if speaker_pause_ms is not None and not (question and t >= 1.0):
            wait = max(wait, min(speaker_pause_ms + self.habit_margin_ms, self.habit_most_ms, self.longest_wait_ms))
        return wait

    def decide(
        self,
        silence_ms: float,
        line_end: float | None,
        *,
        question: bool = False,
        scoring: bool = False,
        speaker_pause_ms: float | None = None,
    ) -> Verdict:
        wait = self.wait_for(line_end, question=question, scoring=scoring, speaker_pause_ms=speaker_pause_ms)
        return Verdict.END if silence_ms >= wait else Verdict.WAIT


class PauseHabit:
    """How long this speaker pauses inside a turn: the longest of their last few such pauses.

    People differ by hundreds of milliseconds; one who stops for a second between clauses would be
    cut at every clause by a wait set for the average speaker. Only pauses of ``shortest_ms`` or
    more count (shorter gaps are stops inside words). Fed by the engine's loop: pauses the speaker
    resumed after before the turn was released, and releases they talked on after (``resumed``).
    """

    def __init__(self, shortest_ms: float = 250.0, keep: int = 8) -> None:
        self.shortest_ms = shortest_ms
        self._recent: deque[float] = deque(maxlen=keep)

    def observe(self, pause_ms: float) -> None:
        if pause_ms >= self.shortest_ms:
            self._recent.append(pause_ms)

    @property
    def longest_ms(self) -> float | None:
        """The longest recent pause inside a turn (``None``: none seen yet)."""
        return max(self._recent) if self._recent else None
