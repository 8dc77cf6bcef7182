"""``voicechat bench --llm realtime`` and the realtime path's semantic end of turn, on the loopback servers.

Real parts: the engine, Silero VAD, the local Whisper and end-of-turn model, the ``openai`` SDK's
realtime client over a real WebSocket, Piper's speech. The realtime server stands in for OpenAI's.
"""

from __future__ import annotations

import asyncio
import json
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from voicechat.audio import float_to_int16, read_audio
from voicechat.benchmark.paused_run import play_paused
from voicechat.benchmark.realtime_report import markdown
from voicechat.benchmark.realtime_run import piper_voice, run_realtime
from voicechat.benchmark.stats import true_end_of_speech
from voicechat.config import Settings, TurnSettings
from voicechat.conversation_factory import create_conversation
from voicechat.events import AudioOut, FinalTranscript, TurnMetrics
from voicechat_bench_kit.realtime_loopback_server import FakeRealtimeServer

pytestmark = pytest.mark.slow


def test_semantic_realtime_turn_is_scored_on_the_local_words_without_the_servers_transcript(
    make_speech: Callable[..., Path],
) -> None:
    """The server's transcript of the turn never comes in time (it would cost a commit and a round
    trip): the turn started ahead is scored on the engine's local Whisper and released on the score,
    not held to the policy's ceiling."""
    from voicechat.stt.local import LocalSTT

    question = make_speech("What is the capital of Italy?", trail_s=0.2)
    with FakeRealtimeServer(None, voice=piper_voice) as server:
        server.transcription_s = 30.0  # the server's words arrive long after the reply

        async def run() -> tuple[list[object], int]:
            s = Settings(
                openai_api_key="sk-x",
                openai_base_url=server.base_url,
                llm="realtime",
                turn=TurnSettings(end_of_turn="semantic"),
            )
            conv = create_conversation(s, stt=LocalSTT(None), tts=None, interim_stt=None)
            try:
                # Paced by the work: each frame goes in once the score under way is in, so the decision
                # does not depend on this machine's speed.
                events = await play_paused(conv, question, conv.drain, paced_by_work=True)
                return list(events), s.turn.end_of_turn_max_ms
            finally:
                await conv.aclose()

        events, ceiling = asyncio.run(run())
    metrics = [e for e in events if isinstance(e, TurnMetrics)]
    assert len(metrics) == 1 and metrics[0].line_end is not None, metrics
    assert metrics[0].eot_ms is not None and metrics[0].eot_ms < ceiling  # released on the score
    assert sum(e.duration_s for e in events if isinstance(e, AudioOut)) > 1.0  # and the reply was heard
    assert not any(isinstance(e, FinalTranscript) for e in events)  # the server's words never came


def _paused_folder(make_speech: Callable[..., Path], folder: Path) -> Path:
    """One turn with a 1.2 s pause inside it, and its manifest (as ``voicechat/benchmark/paused``)."""
    first = read_audio(make_speech("I'd like to book a table", lead_s=0.3, trail_s=0.0), 16_000)
    second = read_audio(make_speech("for two people tonight.", lead_s=0.0, trail_s=0.3), 16_000)
    pcm = float_to_int16(np.concatenate([first, np.zeros(int(1.2 * 16_000), np.float32), second]))
    folder.mkdir()
    with wave.open(str(folder / "p01.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16_000)
        w.writeframes(pcm.tobytes())
    entry = {"file": "p01.wav", "pauses": 1, "speech_end_s": true_end_of_speech(pcm, 16_000)}
    (folder / "manifest.json").write_text(json.dumps([entry]))
    return folder


def test_bench_realtime_gives_every_path_a_figure_and_counts_a_cut_off(
    make_speech: Callable[..., Path], tmp_path: Path
) -> None:
    question = make_speech("What is the capital of Italy?", trail_s=0.2)
    paused = _paused_folder(make_speech, tmp_path / "paused")
    result = asyncio.run(
        run_realtime([question], rounds=1, delay_s=0.1, paused_folder=paused, progress=lambda _m: None)
    )

    v2v = result["voice_to_voice_ms"]
    assert set(v2v) == set(result["modes"]) and len(v2v) == 5  # the pipeline and four realtime paths
    for name, figures in v2v.items():
        assert figures["turns"] == 1 and figures["p50"] > 0, (name, figures)
    cut = result["paused_speech"]
    # 1.2 s of silence inside the turn: more than 500 ms, so the server's detector and the local
    # silence end of turn both end the turn there, and the bench counts it.
    for mode in ("realtime/server_vad", "realtime/silence"):
        assert cut[mode]["false_cutoffs"] >= 1 and cut[mode]["pauses_total"] == 1, (mode, cut[mode])
    page = markdown(result)
    row = next(line for line in page.splitlines() if line.startswith("| realtime/server_vad |"))
    assert row.endswith(f"| {cut['realtime/server_vad']['false_cutoffs']} / 1 |")
