"""How likely the user's line is finished, asked of the reply model's server: no model in this process.

:class:`~voicechat.llm.line_end.LineEndScorer` reads the answer from a Gemma loaded in the
process: ~30 ms of one core a turn, about a third of what a call costs a replica when the
replies come from elsewhere (docs/scaling.md), and a lock every session of the process queues
on. Where the reply model is served by an engine that returns the next token's probabilities —
llama.cpp's server, vLLM, llama-cpp-python's server: an OpenAI-compatible ``/v1/completions``
with ``logprobs`` — the same question can be put to it: the same prompt
(:func:`~voicechat.llm.local.prompt_before_reply`), and the probability that the next token ends
the line, summed over the ``TOP`` most likely tokens the server lists (the mass below them is
negligible for a line end: the local scorer's normaliser is the only difference).

The scores are the served model's: the turn policy's curve was chosen on Gemma 3 270M's, so
serve that model for scoring, or check the curve against yours (``bench/turn_curve.py``).

Threads: :meth:`ascore` runs on the engine's loop (an HTTP request, nothing blocking); the SDK
client is per loop (:class:`~voicechat.openai_client.LoopLocalClient`). A failed or slow request
costs only the early release: the turn then ends on silence (see ``speculative_turn``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from voicechat.config import Settings
from voicechat.errors import VoicechatError
from voicechat.llm.base import Message
from voicechat.llm.line_end import words_only
from voicechat.llm.local import prompt_before_reply
from voicechat.models import SHARED_MODELS
from voicechat.openai_client import OpenAIBackend

log = logging.getLogger(__name__)

TOP = 20  # logprobs the OpenAI wire format allows at most (vLLM and llama.cpp honour it)
TIMEOUT_S = 2.0  # past this the silence has decided anyway (the policy's ceiling is 1.6 s)
_ENDINGS = {".", "?", "!", '."', '?"', '!"', "。", "？", "！"}
_END_OF_TEXT = {"<eos>", "</s>", "<|endoftext|>", "<|eot_id|>", "<end_of_turn>", "<|im_end|>"}


def ends_a_line(token: str) -> bool:
    """A token that ends the user's line: a newline first, a sentence-final mark, or end of text."""
    return token.startswith("\n") or token in _ENDINGS or token in _END_OF_TEXT


class ServedLineEndScorer(OpenAIBackend):
    """P(the user's line ends here) from a model server: ``VOICECHAT_LINE_END_BASE_URL`` (with its own
    key and model) when set, else the LLM stage's server, key and model."""

    name = "text (served LLM)"
    stage = "llm"

    def __init__(self, settings: Settings, *, timeout_s: float = TIMEOUT_S) -> None:
        if settings.line_end_base_url:  # a scoring server of its own: the LLM stage's key never goes there
            self.stage = "line_end"  # its key, URL and the variables that set them (Settings.endpoint)
        # No retries and a short timeout: a late score is worth nothing (the silence decides first).
        super().__init__(settings.replace(max_retries=0, request_timeout_s=timeout_s))
        self.model = settings.line_end_model or self.settings.openai_llm_model
        self.language = settings.language
        self.timeout_s = timeout_s  # per score; the warm-up waits longer
        self._failing = False
        self._sent = ""  # the last prompt the server read for this conversation (one scorer per conversation)

    async def awarm_up(self) -> None:
        """Have the server read the fixed prompt (once per process and server), so the first turn's
        score reads only the words; a failure here shows again, clearly, on the first turn."""
        if not SHARED_MODELS.first_time(
            ("warm", "served-line-end", self.settings.endpoint(self.stage).base_url, self.model)
        ):
            return
        try:
            await self._complete(prompt_before_reply([Message("user", "Hello")], self.language.split("-")[0]), 60.0)
        except Exception as exc:
            log.warning("the end-of-turn server did not answer the warm-up: %s", exc)

    async def aprime(self, messages: Sequence[Message]) -> None:
        """When the user starts to speak: the server reads the conversation so far (the reply just
        played), so the score at their pause reads only their words. A server that keeps each
        prompt in a slot (llama-server, vLLM with prefix caching) finds it there; measured on
        llama-server, docs/per-call-cost.md. Every request costs the server a pass of the output
        layer (the largest part of a short read), so the user speaking again within a turn, with
        nothing new to read, sends none. Only with ``VOICECHAT_LINE_END_PRIME=1``: it trades the
        server's CPU per call (a third more) for the wait at the pause (docs/per-call-cost.md). A failed prime
        costs only that head start: not logged as an outage (the score says so if it is down)."""
        if not messages or not self.settings.line_end_prime:
            return
        prompt = prompt_before_reply(messages, self.language.split("-")[0])
        if self._sent.startswith(prompt):  # read already (the user spoke again within a turn)
            return
        client = self.client().with_options(timeout=self.timeout_s)
        try:
            await client.completions.create(model=self.model, prompt=prompt, max_tokens=1, temperature=0.0)
        except Exception as exc:
            log.debug("the end-of-turn server did not take the prime: %s", exc)
            return
        self._sent = prompt

    async def ascore(self, history: Sequence[Message], text: str) -> float | None:
        """``None`` when there are no words to judge; raises (translated) when the server fails."""
        words = words_only(text)
        if not words:
            return None
        prompt = prompt_before_reply([*history, Message("user", words)], self.language.split("-")[0])
        answer = await self._complete(prompt, self.timeout_s)
        self._sent = prompt
        return line_end_probability(answer)

    def failure(self, exc: BaseException) -> VoicechatError:
        """As for any OpenAI-format backend, but a timeout is the scoring server falling behind."""
        error = super().failure(exc)
        if "VOICECHAT_REQUEST_TIMEOUT_S" in error.hint:
            error.hint = "check the scoring server is up and keeps up: a later score is not waited for"
        return error

    async def _complete(self, prompt: str, timeout_s: float) -> Any:
        client = self.client().with_options(timeout=timeout_s)
        try:
            answer = await client.completions.create(
                model=self.model, prompt=prompt, max_tokens=1, temperature=0.0, logprobs=TOP
            )
        except Exception as exc:
            error = self.failure(exc)
            if not self._failing:  # said once per outage, not at every pause
                log.warning("end-of-turn scoring failed, turns end on silence until it answers: %s", error)
            self._failing = True
            raise error from exc
        self._failing = False
        return answer


def line_end_probability(answer: Any) -> float:
    """The summed probability of the line-ending tokens among the first position's top tokens."""
    return min(1.0, sum(math.exp(lp) for token, lp in first_position_top(answer) if ends_a_line(token)))


def first_position_top(answer: Any) -> list[tuple[str, float]]:
    """The (token, logprob) pairs the server lists for the first completion token, in either shape
    servers answer ``/v1/completions`` with ``logprobs``: OpenAI's legacy ``top_logprobs`` (a dict
    per position: llama-cpp-python's server, vLLM) or the chat format's ``content`` (a list per
    position, each with its ``top_logprobs`` list: llama.cpp's own ``llama-server``)."""
    logprobs = getattr(answer.choices[0], "logprobs", None) if getattr(answer, "choices", None) else None
    legacy = getattr(logprobs, "top_logprobs", None)
    if legacy:
        return list(legacy[0].items())
    content = getattr(logprobs, "content", None)  # pydantic keeps the server's extra field as parsed JSON
    if content and isinstance(content[0], dict) and content[0].get("top_logprobs"):
        return [(str(t["token"]), float(t["logprob"])) for t in content[0]["top_logprobs"]]
    raise ValueError(
        "the server sent no next-token probabilities: it must answer /v1/completions with "
        "logprobs (llama.cpp's llama-server, vLLM, llama-cpp-python's server)"
    )
