"""Many conversations scoring their turns' ends on one loaded model, as a server's sessions do.

The real Gemma 3 270M GGUF and llama.cpp; the scores of conversations that take turns on the one
context are compared with each scored alone on a cold cache, and the tokens each score made the
model read are counted at the context itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from voicechat.llm.base import Message
from voicechat.llm.line_end import LineEndScorer
from voicechat.llm.local import LocalChat

SYSTEM = Message("system", "You are a helpful voice assistant. Answer in one short sentence.")
# Two users whose conversations differ from their first words (each history a few dozen tokens).
PAST = {
    "a": [
        Message("user", "What is the capital of Italy?"),
        Message("assistant", "The capital of Italy is Rome."),
        Message("user", "And how many people live there?"),
        Message("assistant", "About two point eight million people live in Rome."),
    ],
    "b": [
        Message("user", "Set a timer for ten minutes."),
        Message("assistant", "Your ten minute timer is running."),
        Message("user", "Tell me a joke about cats."),
        Message("assistant", "Why did the cat sit on the computer? To keep an eye on the mouse."),
    ],
}
LINES = {
    "a": ["I'd like to book a table for", "I'd like to book a table for two"],
    "b": ["What is the weather like in", "What is the weather like in Paris"],
}


@pytest.fixture(scope="module")
def chat() -> LocalChat:
    return LocalChat(threads=1)


@pytest.fixture
def reads(chat: LocalChat) -> Iterator[list[int]]:
    """How many tokens each ``eval`` on the shared context read, in order."""
    counts: list[int] = []
    with chat.using_model() as llm:
        original = llm.eval

        def counted(tokens: Any) -> None:
            counts.append(len(tokens))
            original(tokens)

        llm.eval = counted
    try:
        yield counts
    finally:
        with chat.using_model() as llm:
            del llm.eval


def _empty_cache(chat: LocalChat) -> None:
    with chat.using_model() as llm:
        llm.n_tokens = 0  # nothing cached: the next score reads its whole prompt


def test_interleaved_conversations_score_as_alone_and_read_only_their_new_words(
    chat: LocalChat, reads: list[int]
) -> None:
    # llama.cpp's figures depend a little on how a prompt is split into reads (a line scored cold
    # and the same line read on top of its cached start differ by ~0.02), so "as alone" means the
    # same reads: each conversation scoring its two lines in a row on a context no one else uses.
    history = {k: [SYSTEM, *v] for k, v in PAST.items()}
    alone: dict[str, list[float | None]] = {}
    for k, lines in LINES.items():
        scorer = LineEndScorer(chat)
        _empty_cache(chat)
        alone[k] = [scorer.score(history[k], line) for line in lines]
    scorers = {k: LineEndScorer(chat) for k in LINES}
    together: dict[str, list[float | None]] = {k: [] for k in LINES}
    for k in ("a", "b"):
        _empty_cache(chat)
        together[k].append(scorers[k].score(history[k], LINES[k][0]))
    reads.clear()
    for k in ("a", "b"):  # each finds the other conversation in the cache, sharing only the system prompt
        together[k].append(scorers[k].score(history[k], LINES[k][1]))
    for k in LINES:
        for got, want in zip(together[k], alone[k], strict=True):
            assert got is not None and want is not None
            assert got == pytest.approx(want, abs=1e-4), (k, together, alone)
    b = alone["b"]
    assert b[0] is not None and b[1] is not None and b[0] < 0.1 < 0.5 < b[1]  # "…like in" dangles, "…in Paris" ends
    # With its own cells back, each reads the one new word (and the re-read last token), not its
    # history again: without them, a few dozen tokens from the end of the system prompt on.
    assert len(reads) == 2 and all(n <= 6 for n in reads), reads


def test_beside_a_cloud_reply_model_the_reply_is_read_while_the_user_speaks(chat: LocalChat, reads: list[int]) -> None:
    """With the reply from a cloud model, the first score of a turn used to read the reply just
    played (a dozen tokens or more, most of that score's CPU) at the user's pause, where the reply
    waits on it. Primed at speech start, the score at the pause reads only the user's words, and
    says what the same reads give one conversation alone on the model (its cells, put back after
    another session used the context, are its own)."""
    import asyncio

    from voicechat.config import Settings
    from voicechat.llm.openai import OpenAIChat
    from voicechat.warm_up import prime_next_turn

    cloud = OpenAIChat(Settings(openai_api_key="sk-test", openai_base_url="http://127.0.0.1:9/v1"))  # never called
    before, after = [SYSTEM, *PAST["a"][:2]], [SYSTEM, *PAST["a"]]  # the turn between them added a question and a reply
    line, next_line = "And how many people live", "I'd like to book a table for two"

    def score_next_turn(primed: bool) -> tuple[float | None, list[int]]:
        mine, theirs = LineEndScorer(chat), LineEndScorer(chat)
        _empty_cache(chat)
        mine.score(before, line)
        theirs.score([SYSTEM, *PAST["b"]], LINES["b"][0])  # another session takes the context meanwhile
        if primed:  # the user starts to speak: what the engine does then, on its loop

            async def speech_start() -> None:
                future = prime_next_turn(cloud, after, "", mine)
                assert future is not None, "a local scorer beside a cloud model is not primed"
                await future

            asyncio.run(speech_start())
        theirs.score([SYSTEM, *PAST["b"]], LINES["b"][1])
        reads.clear()
        return mine.score(after, next_line), list(reads)

    unprimed, unprimed_reads = score_next_turn(primed=False)
    primed, primed_reads = score_next_turn(primed=True)
    # The same reads with no one else on the model: llama.cpp's figures depend a little on how a prompt
    # is split into reads (~0.02, see above), so "the same" is measured against the same split.
    alone = LineEndScorer(chat)
    _empty_cache(chat)
    alone.score(before, line)
    alone.prime(after)
    want = alone.score(after, next_line)
    assert unprimed is not None and primed is not None and want is not None
    assert primed == pytest.approx(want, abs=1e-4), (primed, want, unprimed)
    with chat.using_model() as llm:
        words = len(llm.tokenize(f"\nUser: {next_line}".encode(), add_bos=False, special=True))
    assert sum(unprimed_reads) > words + 8, unprimed_reads  # without priming: the reply and the question too
    assert sum(primed_reads) <= words + 2, (primed_reads, words)
