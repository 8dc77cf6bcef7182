"""Run whole turns from files: the path the CLI, notebooks and tests share with the apps."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from voicechat.audio import iter_wav_frames
from voicechat.engine import Conversation
from voicechat.events import AudioOut, ErrorEvent, Event, FinalTranscript, ReplyDone, TurnMetrics


@dataclass
class TurnResult:
    transcript: str = ""
    reply: str = ""
    audio: list[np.ndarray] = field(default_factory=list)
    sample_rate: int = 48_000
    metrics: TurnMetrics | None = None
    errors: list[str] = field(default_factory=list)
    cut_off: bool = False
    events: list[Event] = field(default_factory=list)

    @property
    def pcm(self) -> np.ndarray:
        return np.concatenate(self.audio) if self.audio else np.zeros(0, dtype=np.int16)

    def as_dict(self) -> dict[str, Any]:
        m = self.metrics.as_dict() if self.metrics else {}
        keys = ("stt_ms", "llm_first_token_ms", "tts_first_audio_ms", "first_audio_ms")
        return {
            "transcript": self.transcript,
            "reply": self.reply,
            "cut_off": self.cut_off,
            "reply_audio_s": round(len(self.pcm) / self.sample_rate, 3),
            "metrics": {k: m.get(k) for k in keys},
            "errors": self.errors,
        }


async def run_turn_from_wav(
    conv: Conversation, path: str | Path, *, realtime: bool = True, timeout_s: float = 120.0
) -> TurnResult:
    """Feed an audio file (any format FFmpeg reads) in 20 ms frames, paced like a microphone when
    ``realtime``, and collect the first turn.

    ``conv`` must have been made without a listener; its queue is read here.
    """
    frames, rate = iter_wav_frames(path)
    return await run_turn_from_frames(conv, frames, rate, realtime=realtime, timeout_s=timeout_s)


async def run_turn_from_frames(
    conv: Conversation, frames: list[np.ndarray], rate: int, *, realtime: bool = True, timeout_s: float = 120.0
) -> TurnResult:
    """:func:`run_turn_from_wav` on frames already decoded (so a bad file fails before models load)."""
    result = TurnResult(sample_rate=conv.output_rate)
    start = time.perf_counter()
    for i, frame in enumerate(frames):
        if realtime:
            delay = start + i * 0.02 - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        else:
            await asyncio.sleep(0)
        await conv.feed(frame, rate)
        _collect(conv, result)
        if result.transcript:
            break
    if not result.transcript:
        await conv.end_of_input()
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        _collect(conv, result)
        if conv.turn >= 1 and not conv.generating:
            break
        if conv.turn == 0 and not conv.turns.speaking:
            break  # nothing was heard
        await asyncio.sleep(0.01)
    await conv.wait_reply()
    _collect(conv, result)
    return result


def _collect(conv: Conversation, result: TurnResult) -> None:
    """Move queued events of the first turn into ``result``."""
    for ev in conv.drain():
        result.events.append(ev)
        if isinstance(ev, FinalTranscript) and not result.transcript:
            result.transcript = ev.text
        elif isinstance(ev, AudioOut) and ev.turn == 1:
            result.audio.append(ev.pcm)
        elif isinstance(ev, ReplyDone) and ev.turn == 1:
            result.reply, result.cut_off = ev.text, ev.cut_off
        elif isinstance(ev, TurnMetrics) and ev.turn == 1:
            result.metrics = ev
        elif isinstance(ev, ErrorEvent):
            result.errors.append(ev.message)
