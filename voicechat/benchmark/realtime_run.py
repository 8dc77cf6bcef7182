"""``voicechat bench --llm realtime``: the realtime (speech-to-speech) path beside the pipeline.

Both paths run through the real engine, fed the bundled turns in real time like a microphone, against
loopback servers in this process that stand in for the cloud with the *same* provider delay: every
request waits ``delay`` seconds before its first byte (the pipeline's transcription, chat and speech
requests each; the realtime model's first audio and its input transcription). So the figures show what
the structure costs (one request instead of three in a row, what a turn started ahead hides) and what
voicechat adds, not how fast any provider is.

The realtime server's input transcription is a local Whisper, so the user's line reads the words said.
Its ``server_vad`` is an energy gate (int16 RMS over 300 in 20 ms frames) that ends a turn after 500 ms
of silence, the API's default ``silence_duration_ms``: what a cloud detector with that setting does on
a pause, not OpenAI's model. ``semantic_vad`` is not run: its classifier is OpenAI's and cannot be
reproduced here (a stand-in would measure voicechat's own scorer under another name).

Voice-to-voice is the engine's ``first_audio_ms``: from where the VAD heard speech end to the first
reply frame handed to the surface, the same measure on every path. The paused-speech set counts
false cut-offs (a turn ended before the speaker had finished) on each realtime mode.

Threading: everything runs on this coroutine's loop; the loopback servers each run their own loop or
HTTP threads, and Whisper runs on the model worker threads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from voicechat.benchmark.latency_run import kind_of
from voicechat.benchmark.machine import machine_report
from voicechat.benchmark.paused_run import PAUSED_DIR, first_words, play_paused, run_paused
from voicechat.benchmark.stats import median, summary
from voicechat.config import Settings, TurnSettings
from voicechat.conversation_factory import create_conversation
from voicechat.engine import Conversation
from voicechat.events import Event, TurnMetrics
from voicechat.llm.base import ChatModel
from voicechat.stt.base import SpeechToText
from voicechat.tts.base import TextToSpeech
from voicechat_bench_kit.openai_loopback_server import CHAT, SPEECH, TRANSCRIPTIONS, FakeOpenAIServer
from voicechat_bench_kit.realtime_loopback_server import SILENCE_MS, VOICE_LEVEL, FakeRealtimeServer

# name -> (who ends the turn, how the semantic end of turn gets the words)
REALTIME_MODES = {
    "realtime/silence": "local turns, 500 ms of silence",
    "realtime/semantic": "local turns, semantic; scored on the local Whisper's words",
    "realtime/semantic (server words)": "local turns, semantic; scored on the server's transcript",
    "realtime/server_vad": "the server's detector (energy gate, 500 ms silence)",
}
PIPELINE = "pipeline/silence"
PAUSED_MODES = ("realtime/silence", "realtime/semantic", "realtime/server_vad")


def conversation(
    stt: SpeechToText | None, llm: ChatModel, tts: TextToSpeech | None, settings: Settings
) -> Conversation:
    """Every engine this run builds: no live captions; the end-of-turn scorer the settings call for."""
    return create_conversation(settings, stt=stt, llm=llm, tts=tts, interim_stt=None)


def piper_voice(text: str) -> np.ndarray:
    """Piper saying ``text`` as int16 PCM at 24 kHz: the loopback realtime server's reply voice.

    Runs the synthesis on a worker thread of its own, so it can be called from a thread whose
    event loop is running (the server's)."""
    import concurrent.futures

    from voicechat.audio import OutputConverter
    from voicechat.tts.local import PiperTTS

    tts = PiperTTS(deterministic=True)

    async def synth() -> list[np.ndarray]:
        return [c async for c in tts.synthesize(text)]

    out = OutputConverter(24_000)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        chunks = pool.submit(asyncio.run, synth()).result()
    return np.concatenate([out.convert(c, tts.sample_rate) for c in chunks] + [out.flush()])


def _realtime(server: FakeRealtimeServer, name: str, whisper: SpeechToText) -> Conversation:
    from voicechat.backends import make_llm

    s = Settings(
        openai_api_key="sk-bench",
        openai_base_url=server.base_url,
        llm="realtime",
        turn=TurnSettings(end_of_turn="semantic" if "semantic" in name else "silence"),
        realtime_turns="server_vad" if name.endswith("server_vad") else "local",
    )
    # The app's realtime engine keeps the settings' STT for its captions (the local Whisper by
    # default); "(server words)" has none, so its semantic end of turn waits for the server's transcript.
    return conversation(None if "server words" in name else whisper, make_llm(s), None, s)


def _pipeline(server: FakeOpenAIServer) -> Conversation:
    from voicechat.llm.openai import OpenAIChat
    from voicechat.stt.openai import OpenAISTT
    from voicechat.tts.openai import OpenAITTS

    s = Settings(
        openai_base_url=server.base_url,
        stt="openai",
        llm="openai",
        tts="openai",
        turn=TurnSettings(end_of_turn="silence"),
    )
    return conversation(OpenAISTT(s), OpenAIChat(s), OpenAITTS(s), s)


def _server_transcriber(whisper: SpeechToText) -> Callable[[np.ndarray], str]:
    """The realtime server's input transcription: the local Whisper on the committed 24 kHz audio."""
    from voicechat.audio import InputConverter, int16_to_float

    def transcribe(pcm24: np.ndarray) -> str:
        audio = InputConverter(16_000).convert(int16_to_float(pcm24), 24_000)
        return asyncio.run(whisper.transcribe(audio, language="en-US"))

    return transcribe


def first_audio_ms(events: list[Event]) -> list[float]:
    """Voice-to-voice of every answered turn among ``events`` (the engine's own ``first_audio_ms``)."""
    return [e.first_audio_ms for e in events if isinstance(e, TurnMetrics) and e.first_audio_ms is not None]


async def voice_to_voice(
    convs: dict[str, Conversation], questions: list[Path], rounds: int, progress: Callable[[str], None]
) -> dict[str, Any]:
    """Every turn through every conversation in turn (interleaved, so all meet the same load).

    The first question is played once to each, uncounted: it opens the connections and loads the models.
    """
    got: dict[str, list[tuple[str, float]]] = {name: [] for name in convs}
    plays = [(0, questions[0])] + [(r, q) for r in range(1, rounds + 1) for q in questions]
    for r, path in plays:
        for name, conv in convs.items():
            first_words(conv)
            v2v = first_audio_ms(await play_paused(conv, path, conv.drain))
            if r:
                got[name] += [(path.name, v) for v in v2v]
            progress(f"{'warm-up' if not r else f'round {r}'} {path.name} [{name}]: {v2v} ms")
    out: dict[str, Any] = {}
    for name, turns in got.items():
        values = [v for _, v in turns]
        kinds = sorted({kind_of(q) for q, _ in turns})
        out[name] = {
            **(summary(values) if values else {"p50": None}),
            "turns": len(values),
            "per_kind": {k: round(median([v for q, v in turns if kind_of(q) == k]), 1) for k in kinds},
        }
    return out


async def run_realtime(
    questions: list[Path],
    *,
    rounds: int = 1,
    delay_s: float = 0.3,
    transcript_delay_s: float | None = None,
    paused: bool = True,
    paused_folder: Path = PAUSED_DIR,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The realtime modes and the OpenAI-format pipeline, voice-to-voice and the paused-speech set.

    ``transcript_delay_s``: when the realtime server's transcript of a turn arrives after its commit
    (default ``delay_s``); the cloud's input transcription runs beside the response and may come later.
    """
    from voicechat.stt.local import LocalSTT

    whisper = LocalSTT(None)
    out: dict[str, Any] = {
        "machine": machine_report(whisper.model_path),
        "provider_delay_s": delay_s,
        "transcript_delay_s": delay_s if transcript_delay_s is None else transcript_delay_s,
        "questions": [q.name for q in questions],
        "rounds": rounds,
        "modes": {PIPELINE: "STT → LLM → TTS over the OpenAI format, 500 ms of silence", **REALTIME_MODES},
        "server_vad": {"silence_duration_ms": SILENCE_MS, "voice_rms_int16": VOICE_LEVEL},
    }
    with (
        FakeRealtimeServer(None, first_audio_s=delay_s, voice=piper_voice) as rt,
        FakeOpenAIServer(None, {p: delay_s for p in (TRANSCRIPTIONS, CHAT, SPEECH)}) as http,
    ):
        rt.transcription_s = out["transcript_delay_s"]
        rt.transcribe = _server_transcriber(whisper)
        convs = {PIPELINE: _pipeline(http), **{name: _realtime(rt, name, whisper) for name in REALTIME_MODES}}
        try:
            for conv in convs.values():
                await conv.warm_up()
            out["voice_to_voice_ms"] = await voice_to_voice(convs, questions, rounds, progress)
            if paused:
                convs_paused = {m: (convs[m], convs[m].drain) for m in PAUSED_MODES}
                out["paused_speech"] = await run_paused(convs_paused, paused_folder, progress=progress)
        finally:
            for conv in convs.values():
                await conv.aclose()
    return out
