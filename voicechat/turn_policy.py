"""When a pause ends the user's turn: silence bands plus how finished their words look.

Pure and synchronous, fed numbers: the silence so far; ``line_end``, the probability that the
user's line ends after the words heard so far (:mod:`voicechat.llm.line_end`); and ``question``,
whether the user asked a question (:func:`heard_question`). The engine asks
:meth:`TurnPolicy.decide` after every chunk of audio while the user is silent, and again when a
score arrives. The bands were chosen on the paused-speech benchmark (docs/benchmarks.md,
"Turn-taking"), where finished questions scored 0.46–0.98 and words cut at a pause 0.00–0.89:

- a question with ``line_end >= confident_question``, or any ``line_end >= confident`` → the
  turn ends after ``early_ms`` (200 ms) of silence;
- anything else that was scored — plainly unfinished words, and statements, whose end a text
  model cannot tell from a pause between clauses — is held up to ``ceiling_ms``;
- a score still on its way holds too; when none can be had (no scorer, no words) the turn
  ends after ``end_of_turn_ms``.

``silence`` mode ends every turn after ``end_of_turn_ms`` of silence, whatever the words.
"""

from __future__ import annotations

import enum
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
    """A text end-of-turn signal (:class:`voicechat.llm.line_end.LineEndScorer` is the one we have)."""

    name: str

    async def ascore(self, history: Sequence[Message], text: str) -> float | None: ...


class Verdict(str, enum.Enum):
    END = "end"  # the turn is over: release the reply
    WAIT = "wait"  # not yet: ask again when more silence has passed


@dataclass(frozen=True)
class TurnPolicy:
    mode: EndOfTurnMode = "semantic"
    early_ms: float = 200.0
    end_of_turn_ms: float = 500.0
    ceiling_ms: float = 1600.0
    confident: float = 0.95  # line_end at or above: finished, whatever the punctuation
    confident_question: float = 0.3  # line_end at or above, for a heard question: finished

    @property
    def semantic(self) -> bool:
        return self.mode == "semantic"

    @property
    def longest_wait_ms(self) -> float:
        """The most silence any turn can need (what the detector must wait for on its own)."""
        return max(self.ceiling_ms, self.end_of_turn_ms) if self.semantic else self.end_of_turn_ms

    def likely_finished(self, line_end: float | None, *, question: bool = False) -> bool:
        """The words so far read as a finished turn: worth a speculative (e.g. paid) request now."""
        if line_end is None:
            return False
        return line_end >= self.confident or (question and line_end >= self.confident_question)

    def wait_for(self, line_end: float | None, *, question: bool = False, scoring: bool = False) -> float:
        """Silence (ms) after which the turn ends, given the score (``scoring``: one is on its way)."""
        if not self.semantic:
            return self.end_of_turn_ms
        if line_end is None:
            return self.longest_wait_ms if scoring else self.end_of_turn_ms
        if self.likely_finished(line_end, question=question):
            return min(self.early_ms, self.end_of_turn_ms)
        return self.longest_wait_ms

    def decide(
        self, silence_ms: float, line_end: float | None, *, question: bool = False, scoring: bool = False
    ) -> Verdict:
        wait = self.wait_for(line_end, question=question, scoring=scoring)
        return Verdict.END if silence_ms >= wait else Verdict.WAIT
