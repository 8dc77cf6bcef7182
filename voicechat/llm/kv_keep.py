"""One conversation's own KV prefix on a llama context that many conversations share.

Every session of a process scores its turns on one loaded model (one llama context, one KV
cache). The cache holds whichever conversation scored last, so with many sessions each score
re-read its whole prompt (system prompt and history, a few hundred tokens) for a few new words:
the largest part of a call's CPU at scale (docs/scaling.md). :class:`KeptPrefix` copies the
sequence's cache cells after a score and puts them back before the same conversation's next
one, when that saves more tokens than the cache already shares with the prompt; what follows
reads only the new words. A copy is ~18 KB a token for Gemma 3 270M, kept once per conversation.

Threading: both functions are called with the model's lock held (the caller's worker thread),
as every other use of the context is.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

import numpy as np


def shared_prefix(a: np.ndarray | list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


@dataclass(frozen=True)
class KeptPrefix:
    """The cache cells of sequence 0 and the token ids they hold, as one conversation left them."""

    ids: np.ndarray
    data: bytes

    @classmethod
    def take(cls, llm: Any) -> KeptPrefix | None:
        """Copy what the context holds now (model lock held); ``None`` if llama.cpp gives nothing."""
        import llama_cpp

        ctx = llm.ctx
        size = int(llama_cpp.llama_state_seq_get_size(ctx, 0))
        if size <= 0:
            return None
        buf = (ctypes.c_uint8 * size)()
        n = int(llama_cpp.llama_state_seq_get_data(ctx, buf, size, 0))
        if n <= 0:
            return None
        return cls(np.array(llm.input_ids[: llm.n_tokens], dtype=np.intc), ctypes.string_at(buf, n))

    def restore_if_closer(self, llm: Any, tokens: list[int]) -> bool:
        """Put these cells back if they share more of ``tokens`` than the context holds now.

        On any refusal by llama.cpp the context is emptied (``n_tokens`` 0), so the next read
        starts from scratch: slower, never wrong.
        """
        import llama_cpp

        now = shared_prefix(llm.input_ids[: llm.n_tokens], tokens)
        mine = shared_prefix(self.ids, tokens)
        if mine <= now:
            return False
        llm._ctx.kv_cache_seq_rm(0, 0, -1)
        buf = (ctypes.c_uint8 * len(self.data)).from_buffer_copy(self.data)
        if int(llama_cpp.llama_state_seq_set_data(llm.ctx, buf, len(self.data), 0)) != len(self.data):
            llm._ctx.kv_cache_seq_rm(0, 0, -1)
            llm.n_tokens = 0
            return False
        llm.input_ids[: len(self.ids)] = self.ids
        llm.n_tokens = len(self.ids)
        return True
