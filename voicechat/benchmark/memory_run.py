"""Memory in steady state: RSS of one long conversation, turn by turn (``voicechat bench --memory-turns N``).

The first turns load models, fill the LLM's KV cache and size glibc's arenas; that is
warm-up, paid once. What must not grow is the steady state after it: the issue's bar is
≤ 5 MB between turn 10 and turn 100. Questions are fed as fast as the engine takes them
and each reply counts as played at once (:meth:`Conversation.playback_done`), so a hundred
turns take minutes, not the half hour a real-time run would.

Runs on one event loop on the calling thread; the listener keeps counts, never audio.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from voicechat import workers
from voicechat.audio import iter_wav_frames
from voicechat.benchmark.process_usage import rss_mb
from voicechat.config import Settings
from voicechat.conversation_factory import create_conversation
from voicechat.engine import Conversation
from voicechat.events import Event, TurnMetrics


async def _one_turn(conv: Conversation, frames: list[np.ndarray], rate: int) -> None:
    silence = np.zeros_like(frames[0])
    for frame in [*frames, *[silence] * 40]:  # 0.8 s of silence after the question ends the turn
        await conv.feed(frame, rate)
        await asyncio.sleep(0)
    for _ in range(12_000):  # up to two minutes for one reply
        if not (conv.turns.speaking or conv.generating):
            break
        await asyncio.sleep(0.01)
    await conv.wait_reply()
    conv.playback_done()


async def run_memory(
    settings: Settings,
    questions: list[Path],
    turns: int = 100,
    mark: int = 10,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    done = [0]

    def count(event: Event) -> None:
        if isinstance(event, TurnMetrics):
            done[0] += 1

    loaded = [iter_wav_frames(q) for q in questions]
    conv = create_conversation(settings, listener=count)
    await conv.warm_up()
    rss: list[float] = []
    try:
        for i in range(turns):
            frames, rate = loaded[i % len(loaded)]
            await _one_turn(conv, frames, rate)
            gc.collect()
            await workers.run(workers.trim_heap)  # what reply_finished also queues: measure after it
            rss.append(round(rss_mb(), 1))
            if progress and (i + 1) % 10 == 0:
                progress(f"turn {i + 1}: RSS {rss[-1]} MB, {done[0]} replies")
    finally:
        await conv.aclose()
    at_mark = rss[mark - 1] if len(rss) >= mark else float("nan")
    return {
        "backends": {k: settings.backend(k) for k in ("stt", "llm", "tts")},
        "turns": len(rss),
        "replies": done[0],
        "history_entries": len(conv.history.entries),
        "rss_first_turn_mb": rss[0] if rss else None,
        f"rss_turn_{mark}_mb": at_mark,
        "rss_last_turn_mb": rss[-1] if rss else None,
        "rss_growth_steady_mb": round(rss[-1] - at_mark, 1) if rss else None,
        "rss_per_turn_mb": rss,
    }
