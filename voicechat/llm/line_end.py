"""How likely the user's line is finished, read from the already-loaded llama model.

The words are placed in the same few-shot layout :mod:`voicechat.llm.local` replies with,
as the last ``User:`` line, and the score is the probability that the very next token ends
that line: a newline or a sentence-final mark. Whisper punctuates even a half sentence
("I'd like to book a table for."), so trailing punctuation is dropped first and the model
says whether the *words* end there ("…for" → 0.000, "…of Italy" → 0.98 with Gemma 3 270M).

Cost: one forward pass over the tokens not already in the model's KV cache, reading only
the last position's logits (no ``logits_all``). The scored text is an exact prefix of the
reply prompt that follows it, so the reply then re-reads only ``\\nAssistant:``: the scoring
pass is work the reply would have done anyway.

Threading: :meth:`LineEndScorer.score` blocks and runs on a worker thread under the model's
lock, the same lock reply generation holds, so it never races a reply on the llama context;
it keeps ``n_tokens``/``input_ids`` in step with the cache, so the next completion's prefix
match stays correct. The context is shared by every conversation of the process: each scorer
keeps its conversation's cache cells (:mod:`voicechat.llm.kv_keep`) so that its next score reads
only the new words, whoever used the context in between.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from voicechat import workers
from voicechat.llm.base import Message
from voicechat.llm.kv_keep import KeptPrefix
from voicechat.llm.local import LocalChat, extend_cache, prompt_before_reply
from voicechat.models import SHARED_MODELS

_TRAILING = re.compile(r"[\s.,;:!?…。？！、-]+$")
_ENDINGS = {b".", b"?", b"!", b'."', b'?"', b'!"', "。".encode(), "？".encode(), "！".encode()}


def words_only(text: str) -> str:
    """The transcript without the punctuation Whisper adds at its end."""
    return _TRAILING.sub("", " ".join(text.split()))


class LineEndScorer:
    """P(the user's line ends here) on a :class:`LocalChat`'s model; one per conversation, model shared."""

    name = "text (local LLM)"

    def __init__(self, chat: LocalChat) -> None:
        self.chat = chat
        self._kept: KeptPrefix | None = None  # this conversation's cache cells, for the next score

    def _endings(self, llm: Any) -> np.ndarray:
        """Token ids that end a line: any token starting with a newline, or a sentence-final mark.

        Found once per model and process (about 0.8 s of CPU over Gemma's 262k tokens), at warm-up.
        """

        def find() -> np.ndarray:
            ids = [i for i in range(llm.n_vocab()) if (t := llm.detokenize([i])).startswith(b"\n") or t in _ENDINGS]
            return np.array([*ids, llm.token_eos()], dtype=np.int64)

        return SHARED_MODELS.get(("line-end-tokens", self.chat.model_path), find)

    def warm_up(self) -> None:
        """Blocking: find the line-ending tokens before the first turn needs them."""
        with self.chat.using_model() as llm:
            self._endings(llm)

    def score(self, history: Sequence[Message], text: str) -> float | None:
        """Blocking, on a worker thread. ``None`` when there are no words to judge."""
        words = words_only(text)
        if not words:
            return None
        prompt = prompt_before_reply([*history, Message("user", words)], self.chat.language)
        import llama_cpp

        with self.chat.using_model() as llm:
            endings = self._endings(llm)
            self._read_in(llm, prompt, live_logits=True)
            n_vocab = llm.n_vocab()
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,))
            z = logits.astype(np.float64) - float(logits.max())
            p = np.exp(z)
            self._kept = KeptPrefix.take(llm)
            return float(p[endings].sum() / p.sum())

    def prime(self, messages: Sequence[Message], *, most: int | None = None) -> None:
        """Blocking, on a worker thread: read the conversation so far into this conversation's cells
        when the user starts to speak (:func:`voicechat.warm_up.prime_next_turn`).

        Beside a cloud reply model the first score of a turn otherwise reads the reply just played
        (~15–60 tokens, most of that score's CPU) at the user's pause, where the reply waits on it;
        read while they talk, the score at the pause reads only their words. The CPU is the same,
        spent earlier. Skipped while another conversation holds the model; a score arriving while it
        reads waits for it (stopping the read partway for a waiting score was tried and measured no
        better: the rest then lands on that conversation's pause; docs/per-call-cost.md). ``most`` as
        :meth:`LocalChat.prime`.
        """
        prompt = prompt_before_reply(messages, self.chat.language)
        with self.chat.using_model_if_free() as llm:
            if llm is None:
                return
            self._read_in(llm, prompt, live_logits=False, most=most)
            self._kept = KeptPrefix.take(llm)

    def _read_in(self, llm: Any, prompt: str, *, live_logits: bool, most: int | None = None) -> None:
        """This conversation's cells back when they hold more of ``prompt`` than the context does (another
        conversation may have used it since), then the rest of ``prompt`` read (model lock held)."""
        tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        if self._kept is not None:
            self._kept.restore_if_closer(llm, tokens)
        extend_cache(llm, prompt, live_logits=live_logits, most=most, tokens=tokens)

    async def ascore(self, history: Sequence[Message], text: str) -> float | None:
        return await workers.run(self.score, history, text)
