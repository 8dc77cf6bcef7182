"""Prime the models once per process, so the first real turn is as fast as later ones.

Sessions share the loaded models (:data:`voicechat.models.SHARED_MODELS`), so a later session
finds them warm and skips all of this. Cloud backends are never primed: a request costs money
and warms nothing of ours. Runs on the engine's loop; the model calls go to worker threads.

Once a model is loaded and warm, the Python objects made so far (the models' wrappers, tokenizers,
the imported libraries) live as long as the process, so they are frozen out of the garbage
collector's full passes (``gc.freeze``). Streamlit runs a full collection after every script
run; over a heap this size that held the GIL for tens of milliseconds each time and made the
event loop that carries every call's audio lag: a closed tab was noticed 0.9-1.9 s late instead of
0.2-0.8 s. (Turning Streamlit's ``runner.postScriptGC`` off instead left aiortc's per-call threads
waiting for a collection: 13 threads more after 20 calls.)
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterable, Sequence

import numpy as np

from voicechat import workers
from voicechat.end_of_turn import RATE
from voicechat.llm.base import ChatModel, Message
from voicechat.models import SHARED_MODELS
from voicechat.stt.base import SpeechToText
from voicechat.tts.base import TextToSpeech
from voicechat.turn_policy import LineEndScoring


async def warm_up_once(llm: ChatModel, prompt: str, messages: Sequence[Message], scorer: LineEndScoring | None,
                       stts: Iterable[SpeechToText | None], tts: TextToSpeech | None, *, language: str) -> None:
    fresh = False  # something was loaded or primed for the first time in this process
    warm = getattr(llm, "warm_up", None)
    if warm is not None and SHARED_MODELS.first_time(("warm", llm.name, prompt)):
        fresh = True
        await workers.run(warm, messages)
    warm_scorer = getattr(scorer, "warm_up", None)
    if warm_scorer is not None:
        await workers.run(warm_scorer)
    for stt in {id(s): s for s in stts if s is not None}.values():
        if not stt.name.startswith("openai") and SHARED_MODELS.first_time(("warm", stt.name)):
            fresh = True
            await stt.transcribe(np.zeros(RATE, dtype=np.float32), language=language)
    if tts is not None and not tts.name.startswith("openai") and SHARED_MODELS.first_time(("warm", tts.name)):
        fresh = True
        async for _chunk in tts.synthesize("Hello."):
            pass
    if fresh:
        gc.freeze()


def prime_next_turn(models: Iterable[object], messages: Sequence[Message]) -> asyncio.Future[None] | None:
    """On the engine's loop, when the user starts to speak: the first local model that can
    (``prime``) reads the conversation so far into its cache on a worker thread, so the turn
    that follows reads only the user's new words. Without it a turn after another conversation
    used the shared model, or after the history window moved on, re-read ~90 tokens (~0.4 s on
    2 cores) between the user's pause and the first word. A failed prime costs only that head start.
    """
    for model in models:
        prime = getattr(model, "prime", None)
        if prime is not None:
            future = workers.submit(prime, messages)
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
            return future
    return None
