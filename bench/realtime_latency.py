"""The realtime (speech-to-speech) path beside the STT → LLM → TTS pipeline, on loopback servers.

    PYTHONPATH=. python bench/realtime_latency.py [--delay 0.3] [--rounds 2] [--no-paused] [--json]

Both paths run through the real engine, fed the bundled questions in real time like a microphone,
against servers in this process that stand in for the cloud with the *same* provider delay: every
request waits ``--delay`` seconds before its first byte (the pipeline's transcription, chat and
speech requests each; the realtime model's first audio and its input transcription). So the
figures show what the structure costs (one request instead of three in a row, what speculation
hides) and what voicechat adds, not how fast any provider is.

Voice-to-voice is the engine's ``first_audio_ms``: from the end of speech to the first reply frame
handed to the surface. With ``semantic`` turns the realtime server's transcription is a local
Whisper (tiny.en), so the end-of-turn score reads the words actually said; ``server_vad`` lets the
server's detector (here an energy gate with the API's default 500 ms of silence) end the turns. The
paused-speech set (``voicechat/benchmark/paused``) then counts false cut-offs on the realtime path.

Uses voicechat/benchmark/realtime_loopback_server.py; run from the repository root.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from voicechat.benchmark.latency_run import default_questions
from voicechat.benchmark.machine import describe, machine_report
from voicechat.benchmark.openai_loopback_server import CHAT, SPEECH, TRANSCRIPTIONS, FakeOpenAIServer
from voicechat.benchmark.paused_run import play_paused, run_paused
from voicechat.benchmark.realtime_loopback_server import FakeRealtimeServer
from voicechat.config import Settings
from voicechat.engine import Conversation
from voicechat.events import TurnMetrics
from voicechat.turn_policy import EndOfTurnMode


def _whisper() -> Any:
    """The realtime server's input transcription: local tiny.en on the committed 24 kHz audio."""
    from voicechat.audio import InputConverter, int16_to_float
    from voicechat.stt.local import LocalSTT

    stt = LocalSTT(None)

    def transcribe(pcm24: np.ndarray) -> str:
        audio = InputConverter(16_000).convert(int16_to_float(pcm24), 24_000)
        return asyncio.run(stt.transcribe(audio, language="en-US"))

    return transcribe


def _realtime(server: FakeRealtimeServer, mode: str) -> Conversation:
    """``mode``: the engine's end of turn (semantic, silence), or server_vad (the server's detector)."""
    from voicechat.backends import make_llm

    turns: dict[str, Any] = (
        {"realtime_turns": "server_vad", "end_of_turn": "silence"} if mode == "server_vad" else {"end_of_turn": mode}
    )
    s = Settings(openai_api_key="sk-bench", openai_base_url=server.base_url, llm="realtime", **turns)
    return Conversation(None, make_llm(s), None, settings=s, interim_stt=None)


def _pipeline(server: FakeOpenAIServer, mode: EndOfTurnMode) -> Conversation:
    from voicechat.llm.openai import OpenAIChat
    from voicechat.stt.openai import OpenAISTT
    from voicechat.tts.openai import OpenAITTS

    s = Settings(openai_base_url=server.base_url, stt="openai", llm="openai", tts="openai", end_of_turn=mode)
    return Conversation(OpenAISTT(s), OpenAIChat(s), OpenAITTS(s), settings=s, interim_stt=None)


async def _v2v(convs: dict[str, Conversation], questions: list[Path], rounds: int, log: Any) -> dict[str, Any]:
    """Every question through every conversation in turn (interleaved, so all meet the same load)."""
    got: dict[str, list[float]] = {name: [] for name in convs}
    for r in range(rounds + 1):  # round 0 warms up (connections, models) and is not counted
        for path in questions:
            for name, conv in convs.items():
                events = await play_paused(conv, path, conv.drain)
                v2v = [e.first_audio_ms for e in events if isinstance(e, TurnMetrics) and e.first_audio_ms is not None]
                if r and v2v:
                    got[name] += v2v
                log(f"round {r} {path.name} [{name}]: {v2v} ms")
    return {
        name: {"p50": round(statistics.median(v), 1) if v else None, "n": len(v), "max": max(v, default=None)}
        for name, v in got.items()
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    log = (lambda m: print(m, file=sys.stderr)) if args.json else print
    d = args.delay
    out: dict[str, Any] = {"machine": machine_report(), "provider_delay_s": d}
    with (
        FakeRealtimeServer(None, first_audio_s=d) as rt,
        FakeOpenAIServer(None, {p: d for p in (TRANSCRIPTIONS, CHAT, SPEECH)}) as http,
    ):
        rt.transcription_s = d
        rt.transcribe = _whisper()
        convs = {
            "pipeline/silence": _pipeline(http, "silence"),
            "realtime/silence": _realtime(rt, "silence"),
            "realtime/semantic": _realtime(rt, "semantic"),
            "realtime/server_vad": _realtime(rt, "server_vad"),
        }
        try:
            out["voice_to_voice_ms"] = await _v2v(convs, default_questions(), args.rounds, log)
            if not args.no_paused:
                paused = {m: convs[f"realtime/{m}"] for m in ("semantic", "silence", "server_vad")}
                result = await run_paused({m: (c, c.drain) for m, c in paused.items()}, progress=log)
                out["paused_speech_realtime"] = {m: v for m, v in result.items() if m != "per_file"}
        finally:
            for conv in convs.values():
                await conv.aclose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--delay", type=float, default=0.3, help="provider seconds to first byte, every request")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-paused", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    out = asyncio.run(main_async(args))
    if args.json:
        print(json.dumps(out))
        return
    print(describe(out["machine"]))
    for name, v in out["voice_to_voice_ms"].items():
        print(f"{name:<20} voice-to-voice p50 {v['p50']} ms (max {v['max']}, n={v['n']})")
    for mode, p in (out.get("paused_speech_realtime") or {}).items():
        print(f"paused speech, realtime/{mode}: {p['false_cutoffs']} false cut-offs / {p['pauses_total']} pauses")


if __name__ == "__main__":
    main()
