"""Prime the models once per process, so the first real turn is as fast as later ones.

Sessions share the loaded models (:data:`voicechat.models.SHARED_MODELS`), so a later session
finds them warm and skips all of this. Cloud backends are never primed: a request costs money
and warms nothing of ours. Runs on the engine's loop; the model calls go to worker threads.
"""

from __future__ import annotations

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
    warm = getattr(llm, "warm_up", None)
    if warm is not None and SHARED_MODELS.first_time(("warm", llm.name, prompt)):
        await workers.run(warm, messages)
    warm_scorer = getattr(scorer, "warm_up", None)
    if warm_scorer is not None:
        await workers.run(warm_scorer)
    for stt in {id(s): s for s in stts if s is not None}.values():
        if not stt.name.startswith("openai") and SHARED_MODELS.first_time(("warm", stt.name)):
            await stt.transcribe(np.zeros(RATE, dtype=np.float32), language=language)
    if tts is not None and not tts.name.startswith("openai") and SHARED_MODELS.first_time(("warm", tts.name)):
        async for _chunk in tts.synthesize("Hello."):
            pass
