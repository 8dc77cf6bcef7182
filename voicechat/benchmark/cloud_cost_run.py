"""Cloud cost per turn: what the provider was asked for and billed in one simulated conversation.

Part of ``voicechat bench --sessions N`` (see docs/scaling.md, "Cloud cost per turn"); moved out of
:mod:`voicechat.benchmark.capacity_run`, whose simulated users and transport loop it reuses.
Threads: as there (the transport loop on the calling thread, the engine on its own).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

from voicechat.benchmark.loopback_provider import provider_stats
from voicechat.benchmark.simulated_callers import Question, _transport, _User
from voicechat.benchmark.stats import percentile
from voicechat.conversation_thread import ConversationThread
from voicechat.engine import Conversation
from voicechat.events import Event
from voicechat_bench_kit.openai_loopback_server import TRANSCRIPTIONS


def cost_per_turn(
    base_url: str, factory: Callable[[Callable[[Event], None]], Conversation], questions: list[Question], turns: int
) -> dict[str, Any]:
    """One conversation of ``turns`` questions: what the provider was asked for and billed."""
    user = _User(questions, random.Random(1), idle_frames=25)
    thread = ConversationThread(factory, user.on_event, name="voicechat-bench-cost")
    thread.wait_ready(120)
    before = provider_stats(base_url)
    try:
        asyncio.run(
            _transport(
                [(user, thread)], 60.0 * turns, [], until=lambda: user.played >= turns and user.between_questions
            )
        )
    finally:
        thread.close()
    after = provider_stats(base_url)
    requests = {k: after["requests"][k] - before["requests"][k] for k in after["requests"]}
    billed = after["stt_audio_s"] - before["stt_audio_s"]
    return {
        "turns": user.played,
        "requests": requests,
        "provider_requests_per_turn": round(sum(requests.values()) / max(1, user.played), 2),
        "stt_requests_per_turn": round(requests[TRANSCRIPTIONS] / max(1, user.played), 2),
        "stt_audio_billed_ratio": round(billed / max(1e-9, user.spoken_s), 3),
        "partials_per_turn": round(user.partials / max(1, user.played), 2),
        "v2v_p50_ms": round(percentile(user.v2v_ms, 50), 1),
    }
