"""Prime the models once per process, so the first real turn is as fast as later ones.

Sessions share the loaded models (:data:`voicechat.models.SHARED_MODELS`), so a later session
finds them warm and skips all of this. Cloud backends are never primed: a request costs money
and warms nothing of ours. Runs on the engine's loop; the model calls go to worker threads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

import numpy as np

from voicechat import workers
from voicechat.audio import SPEECH_RATE
from voicechat.backend_abilities import PrimesNextTurn, PrimesOnServer, WarmsUp, WarmsUpChat, WarmsUpServer
from voicechat.llm.base import ChatModel, Message
from voicechat.models import SHARED_MODELS
from voicechat.stt.base import SpeechToText
from voicechat.tts.base import TextToSpeech
from voicechat.turn_policy import LineEndScoring


async def warm_up_once(
    llm: ChatModel,
    prompt: str,
    messages: Sequence[Message],
    scorer: LineEndScoring | None,
    stts: Iterable[SpeechToText | None],
    tts: TextToSpeech | None,
    *,
    language: str,
) -> None:
    if isinstance(llm, WarmsUpChat) and SHARED_MODELS.first_time(("warm", llm.name, prompt)):
        await workers.run(llm.warm_up, messages)
    if isinstance(scorer, WarmsUp):
        await workers.run(scorer.warm_up)
    elif isinstance(scorer, WarmsUpServer):
        await scorer.awarm_up()
    for stt in {id(s): s for s in stts if s is not None}.values():
        if not stt.name.startswith("openai") and SHARED_MODELS.first_time(("warm", stt.name)):
            await stt.transcribe(np.zeros(SPEECH_RATE, dtype=np.float32), language=language)
    if tts is not None and not tts.name.startswith("openai") and SHARED_MODELS.first_time(("warm", tts.name)):
        async for _chunk in tts.synthesize("Hello."):
            pass


CAPTION_TOKENS = 48  # ~10 s of speech; re-reading a history (~100–300 tokens) is left to speech start


def prime_next_turn(
    llm: ChatModel, messages: Sequence[Message], heard: str = "", scorer: LineEndScoring | None = None
) -> asyncio.Future[None] | None:
    """On the engine's loop, when the user starts to speak: a local reply model (one with
    ``prime``) reads the conversation so far into its cache on a worker thread, so the turn that
    follows reads only the user's new words. Without it a turn after another conversation used
    the shared model, or after the history window moved on, re-read ~90 tokens (~0.4 s on 2 cores)
    between the user's pause and the first word. A failed prime costs only that head start.

    ``heard``: a caption of the words said so far, read in as the user's line (without the
    punctuation Whisper ends it with, as the end-of-turn score reads it). The final transcript
    mostly extends it, so the score after the pause reads a word or two instead of the whole line.
    Only when the cache still holds this conversation, so that just the words are left to read
    (at most ``CAPTION_TOKENS``).

    Beside a cloud reply model, a local end-of-turn ``scorer`` that keeps each conversation's cache
    cells (:meth:`voicechat.llm.line_end.LineEndScorer.prime`) is primed instead: the reply just
    played is then read while the user talks, not at their pause. A scorer on a model server
    (:class:`~voicechat.backend_abilities.PrimesOnServer`) gets the same reading as a request, a
    task on the loop.
    """
    target = llm if isinstance(llm, PrimesNextTurn) else scorer if isinstance(scorer, PrimesNextTurn) else None
    if target is None:
        if isinstance(scorer, PrimesOnServer):
            return asyncio.ensure_future(scorer.aprime([*messages, *_caption_line(heard)]))
        return None
    if heard:
        future = workers.submit(target.prime, [*messages, *_caption_line(heard)], most=CAPTION_TOKENS)
    else:
        future = workers.submit(target.prime, messages)
    future.add_done_callback(lambda f: f.cancelled() or f.exception())
    return future


def _caption_line(heard: str) -> list[Message]:
    """The caption as the user's line, worded as the end-of-turn score reads it (none if empty)."""
    if not heard:
        return []
    from voicechat.llm.line_end import words_only  # with a model to prime, never before

    return [Message("user", words_only(heard))]
