"""When a pause ends the user's turn: silence bands plus how finished their words look.

Pure and synchronous, fed numbers: the silence so far and, when known, ``line_end`` — the
probability that the user's line ends after the words heard so far (from
:mod:`voicechat.llm.line_end`). The engine asks :meth:`TurnPolicy.decide` after every chunk
of audio while the user is silent; the thresholds are tested with recorded scores and chose
by the paused-speech benchmark (docs/benchmarks.md, "Turn-taking").

Bands (``semantic`` mode):

- ``line_end >= confident`` → the turn ends after ``early_ms`` of silence;
- ``line_end < unfinished`` (or the score is still being computed) → hold up to ``ceiling_ms``;
- otherwise, or when no score can be had (no scorer, no transcript) → today's ``end_of_turn_ms``.

``silence`` mode ends every turn after ``end_of_turn_ms``, exactly as before this module.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from voicechat.llm.base import Message

MODES = ("semantic", "silence")


class LineEndScoring(Protocol):
    """A text end-of-turn signal (:class:`voicechat.llm.line_end.LineEndScorer` is the one we have)."""

    name: str

    async def ascore(self, history: Sequence[Message], text: str) -> float | None: ...


class Verdict(str, enum.Enum):
    END = "end"  # the turn is over: release the reply
    WAIT = "wait"  # not yet: ask again when more silence has passed


@dataclass(frozen=True)
class TurnPolicy:
    mode: str = "semantic"
    early_ms: float = 200.0
    end_of_turn_ms: float = 500.0
    ceiling_ms: float = 1500.0
    confident: float = 0.2  # line_end at or above: finished
    unfinished: float = 0.05  # line_end below: plainly unfinished

    @property
    def semantic(self) -> bool:
        return self.mode == "semantic"

    @property
    def longest_wait_ms(self) -> float:
        """The most silence any turn can need (what the detector must wait for on its own)."""
        return max(self.ceiling_ms, self.end_of_turn_ms) if self.semantic else self.end_of_turn_ms

    def likely_finished(self, line_end: float | None) -> bool:
        """The words so far read as a finished turn: worth a speculative (e.g. paid) request now."""
        return line_end is not None and line_end >= self.confident

    def wait_for(self, line_end: float | None, *, scoring: bool = False) -> float:
        """Silence (ms) after which the turn ends, given the score (``scoring``: one is on its way)."""
        if not self.semantic:
            return self.end_of_turn_ms
        if line_end is None:
            return self.ceiling_ms if scoring else self.end_of_turn_ms
        if line_end >= self.confident:
            return min(self.early_ms, self.end_of_turn_ms)
        if line_end < self.unfinished:
            return self.longest_wait_ms
        return self.end_of_turn_ms

    def decide(self, silence_ms: float, line_end: float | None, *, scoring: bool = False) -> Verdict:
        return Verdict.END if silence_ms >= self.wait_for(line_end, scoring=scoring) else Verdict.WAIT
