"""Feed recorded questions through the real engine in real time and time every stage.

Each question is played as a microphone would: 20 ms frames, paced by the wall clock,
followed by silence until the reply has finished playing. Voice-to-voice is measured from
the true end of speech (read from the recording) to the first reply frame leaving the engine.
The same question then runs through a sequential pipeline (whole transcript → whole reply →
whole speech) on the same backends, so the ratio compares like with like in one run.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from voicechat.audio import SPEECH_RATE, InputConverter, iter_wav_frames
from voicechat.benchmark.paused_run import first_words
from voicechat.benchmark.stats import median, paired_ratio, summary, true_end_of_speech
from voicechat.config import Settings
from voicechat.conversation_factory import create_conversation
from voicechat.end_of_turn import SilenceSegmenter
from voicechat.engine import Conversation
from voicechat.events import AudioOut, Event, FinalTranscript, Interrupted, ReplyDone, TurnMetrics
from voicechat.llm.base import Message
from voicechat.turn_policy import END_OF_TURN_MODES as MODES
from voicechat.vad import make_vad
from voicechat_bench_kit import QUESTIONS_DIR

FRAME_S = 0.02


KINDS = {"q": "question", "s": "statement", "c": "command"}


def kind_of(name: str) -> str:
    """A file's kind by its name (``q1_…`` question, ``s3_…`` statement, ``c2_…`` command), else "other"."""
    m = re.match(r"([qsc])\d+_", name)
    return KINDS[m.group(1)] if m else "other"


def default_questions() -> list[Path]:
    """The bundled turns, kinds interleaved (q1, s1, c1, q2, …), so no kind always follows another."""

    def order(p: Path) -> tuple[int, int, str]:
        m = re.match(r"([qsc])(\d+)_", p.name)
        return (int(m.group(2)), "qsc".index(m.group(1)), p.name) if m else (0, 0, p.name)

    return sorted(QUESTIONS_DIR.glob("*.wav"), key=order)


@dataclass
class TurnSample:
    question: str
    transcript: str
    reply: str
    v2v_ms: float
    sequential_ms: float
    eot_ms: float
    stt_ms: float
    line_end_ms: float  # the end-of-turn score, between the transcript and the reply (0: not scored)
    llm_first_token_ms: float
    first_sentence_ms: float
    tts_first_audio_ms: float
    started_after_eos_ms: float
    critical_path_ms: float
    overhead_ms: float
    speculative: bool
    kind: str = "other"
    line_end: float | None = None  # the text signal the semantic turn was released on (None: not scored)
    resumed: int = 0  # released turns the user went on with ("resumed": merged and answered again)


def _rss_mb() -> tuple[float, float]:
    """(current, peak) resident set size in MiB, from /proc."""
    cur = peak = 0.0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                cur = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    return cur, peak


class _Recorder:
    """The engine's listener: timestamps every event as it leaves the engine (engine loop thread)."""

    def __init__(self) -> None:
        self.events: list[tuple[float, Event]] = []
        self._taken = 0

    def __call__(self, event: Event) -> None:
        if isinstance(event, AudioOut):  # when, not the samples: the bench must not grow RSS by itself
            event = replace(event, pcm=event.pcm[:0])
        self.events.append((time.perf_counter(), event))

    def since(self, index: int) -> list[tuple[float, Event]]:
        return self.events[index:]

    def take(self) -> list[Event]:
        """Events since the last ``take`` (the paused-speech run reads them this way)."""
        new, self._taken = self.events[self._taken :], len(self.events)
        return [e for _, e in new]


async def _play(
    conv: Conversation, frames: list[np.ndarray], rate: int, rec: _Recorder, turn: int, timeout_s: float = 60.0
) -> float:
    """Feed frames in real time, then silence until ``turn``'s reply is done and played. Returns t0."""
    silence = np.zeros_like(frames[0])
    t0 = time.perf_counter()
    i = 0
    deadline = t0 + timeout_s
    while time.perf_counter() < deadline:
        frame = frames[i] if i < len(frames) else silence
        delay = t0 + i * FRAME_S - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await conv.feed(frame, rate)
        i += 1
        done = any(isinstance(e, TurnMetrics) and e.turn == turn for _, e in rec.events[-50:])
        nothing_heard = conv.turn < turn and not conv.turns.speaking and i > len(frames) + 150
        if i >= len(frames) and (done or nothing_heard) and not conv.replying:
            break
    return t0


async def _sequential(conv: Conversation, audio16k: np.ndarray, history: list[Message]) -> tuple[float, str]:
    """Whole transcript, then whole reply, then whole speech: time to the first audio (ms), compute only."""
    assert conv.stt is not None and conv.tts is not None
    t0 = time.perf_counter()
    text = await conv.stt.transcribe(audio16k, language=conv.settings.language)
    reply = "".join([d async for d in conv.llm.stream([*history, Message("user", text)])])
    _audio = [c async for c in conv.tts.synthesize(reply)] if reply.strip() else []
    return (time.perf_counter() - t0) * 1000.0, text


async def _restore_prompt_cache(conv: Conversation, settings: Settings) -> None:
    """Before the paused-speech set: read this conversation's history back into the shared model
    (untimed), as the engine itself does when the user starts to speak (``prime_next_turn``).

    The timed rounds ran the other conversation and the sequential baseline on the same model.
    """
    from voicechat.warm_up import prime_next_turn

    history = conv.history.messages(settings.prompt(), settings.history_messages)
    primed = prime_next_turn(conv.llm, history, "", conv.scorer)
    if primed is not None:
        await primed


STAGES = (
    "eot_ms",
    "stt_ms",
    "line_end_ms",
    "llm_first_token_ms",
    "first_sentence_ms",
    "tts_first_audio_ms",
    "started_after_eos_ms",
)


async def run_benchmark(
    settings: Settings, questions: list[Path], rounds: int = 2, progress: Any = None, paused: bool = True
) -> dict[str, Any]:
    """Both end-of-turn modes on the same loaded models, question by question in one run.

    ``semantic`` turns also get the sequential baseline; the ``silence`` turns give the
    same-run comparison that ``end_of_turn`` in the result reports.
    """
    from voicechat.backends import make_llm, make_stt, make_tts

    stt, llm, tts = make_stt(settings), make_llm(settings), make_tts(settings)
    recs = {m: _Recorder() for m in MODES}
    convs = {
        m: create_conversation(settings.replace(end_of_turn=m), stt=stt, llm=llm, tts=tts, listener=recs[m])
        for m in MODES
    }
    for conv in convs.values():
        await conv.warm_up()
    loaded = [(q, *iter_wav_frames(q)) for q in questions]
    samples: dict[str, list[TurnSample]] = {m: [] for m in MODES}
    rss_start = None
    peak = 0.0
    paused_result: dict[str, Any] = {}
    try:
        for r in range(rounds + 1):  # round 0 warms caches and is not counted
            for k, (path, frames, rate) in enumerate(loaded):
                order = MODES if (r + k) % 2 == 0 else MODES[::-1]  # neither mode always goes first
                for mode in order:
                    conv, rec = convs[mode], recs[mode]
                    first_words(conv)
                    pcm = np.concatenate(frames)
                    eos_s = true_end_of_speech(pcm, rate)
                    history = conv.history.messages(settings.prompt(), settings.history_messages)
                    start_index = len(rec.events)
                    turn = conv.turn + 1
                    t0 = await _play(conv, frames, rate, rec, turn)
                    sample = _sample(path, rec.since(start_index), turn, t0 + eos_s)
                    if sample is None:
                        if progress:
                            progress(f"{path.name} [{mode}]: no reply (heard nothing?)")
                        continue
                    if mode == "semantic":
                        audio16k = InputConverter().convert(pcm, rate)[: int(SPEECH_RATE * (eos_s + 0.15))]
                        seq_ms, _ = await _sequential(conv, audio16k, history)
                        sample.sequential_ms = round(sample.eot_ms + seq_ms, 1)
                    if r == 0:
                        continue
                    if rss_start is None:
                        rss_start = _rss_mb()[0]
                    samples[mode].append(sample)
                    peak = max(peak, _rss_mb()[1])
                    if progress:
                        progress(
                            f"{path.name} [{mode}]: {sample.v2v_ms:.0f} ms voice-to-voice, "
                            f"end of turn {sample.eot_ms:.0f} ms — {sample.transcript!r} → {sample.reply!r}"
                        )
        if paused:
            from voicechat.benchmark.paused_run import run_paused

            for conv in convs.values():
                await _restore_prompt_cache(conv, settings)
            paused_result = await run_paused({m: (convs[m], recs[m].take) for m in MODES}, progress=progress)
    finally:
        for conv in convs.values():
            await conv.aclose()
    rss_end, peak_now = _rss_mb()
    result = _report(settings, samples["semantic"], questions, rss_start or rss_end, rss_end, max(peak, peak_now))
    result["end_of_turn"] = _compare(samples, convs["semantic"].end_of_turn_signals)
    result["paused_speech"] = paused_result
    return result


def _compare(samples: dict[str, list[TurnSample]], signals: list[str]) -> dict[str, Any]:
    """Voice-to-voice on complete questions, semantic vs silence, measured in the same run."""
    sem, sil = samples["semantic"], samples["silence"]
    out: dict[str, Any] = {"signals": signals}
    for mode, got in samples.items():
        out[mode] = {
            "voice_to_voice_ms": summary([s.v2v_ms for s in got]) if got else {},
            "eot_ms_p50": round(median([s.eot_ms for s in got]), 1) if got else None,
            "turns": len(got),
            "resumed": sum(s.resumed for s in got),
            "per_kind": per_kind(got),
        }
    if sem and sil:
        out["p50_ratio"] = round(median([s.v2v_ms for s in sem]) / median([s.v2v_ms for s in sil]), 3)
        if [s.question for s in sem] == [s.question for s in sil]:  # turn by turn
            out["paired_ratio"] = round(paired_ratio([s.v2v_ms for s in sem], [s.v2v_ms for s in sil]), 3)
    return out


def per_kind(samples: list[TurnSample]) -> dict[str, dict[str, float | int | None]]:
    """p50 voice-to-voice and end-of-turn wait for each kind of turn (question, statement, command)."""
    out: dict[str, dict[str, float | int | None]] = {}
    for kind in sorted({s.kind for s in samples}, key=lambda k: [*KINDS.values(), k].index(k)):
        mine = [s for s in samples if s.kind == kind]
        out[kind] = {
            "v2v_p50": round(median([s.v2v_ms for s in mine]), 1),
            "eot_p50": round(median([s.eot_ms for s in mine]), 1),
            "turns": len(mine),
        }
    return out


def _sample(path: Path, evs: list[tuple[float, Event]], turn: int, eos_wall: float) -> TurnSample | None:
    first_audio = next((t for t, e in evs if isinstance(e, AudioOut) and e.turn == turn), None)
    metrics = next((e for _, e in evs if isinstance(e, TurnMetrics) and e.turn == turn), None)
    if first_audio is None or metrics is None:
        return None
    transcript = next((e.text for _, e in evs if isinstance(e, FinalTranscript) and e.turn == turn), "")
    reply = next((e.text for _, e in evs if isinstance(e, ReplyDone) and e.turn == turn), "")
    v = lambda x: float(x) if x is not None else 0.0  # noqa: E731
    # From the true end of speech to the moment the turn's work began, by the wall clock: this
    # includes the VAD's 32 ms windows and the 20 ms frames, which belong to listening, not overhead.
    started_perf = metrics.started_perf_s
    started = (started_perf - eos_wall) * 1000.0 if started_perf else v(metrics.started_after_eos_ms)
    # The end-of-turn score sits between the transcript and the reply (it holds the model): on the path.
    score = v(metrics.line_end_ms)
    chain = started + v(metrics.stt_ms) + score + v(metrics.first_sentence_ms) + v(metrics.tts_first_audio_ms)
    critical = max(v(metrics.eot_ms), chain)
    v2v = (first_audio - eos_wall) * 1000.0
    return TurnSample(
        question=path.name,
        transcript=transcript,
        reply=reply,
        v2v_ms=round(v2v, 1),
        sequential_ms=0.0,
        eot_ms=v(metrics.eot_ms),
        stt_ms=v(metrics.stt_ms),
        line_end_ms=score,
        llm_first_token_ms=v(metrics.llm_first_token_ms),
        first_sentence_ms=v(metrics.first_sentence_ms),
        tts_first_audio_ms=v(metrics.tts_first_audio_ms),
        started_after_eos_ms=started,
        critical_path_ms=round(critical, 1),
        overhead_ms=round(v2v - critical, 1),
        speculative=metrics.speculative,
        kind=kind_of(path.name),
        line_end=metrics.line_end,
        resumed=sum(isinstance(e, Interrupted) and e.reason == "resumed" for _, e in evs),
    )


def frame_path_realtime_factor(questions: list[Path], vad_kind: str = "silero", passes: int = 7) -> float:
    """Audio seconds per CPU second of decode + resample + VAD + turn detection, on one thread.

    The median of ``passes`` passes over the questions: one pass is ~0.1 s of CPU, and single
    passes of the same code read 80–120× one after another in one process.
    """
    loaded = [iter_wav_frames(q) for q in questions]
    audio_s = sum(len(np.concatenate(f)) / r for f, r in loaded)
    factors = []
    for _ in range(passes):
        conv, det = InputConverter(), SilenceSegmenter(make_vad(vad_kind))
        conv.convert(loaded[0][0][0], loaded[0][1])  # first call builds the resampler
        t0 = time.thread_time()
        for frames, rate in loaded:
            for f in frames:
                det.feed(conv.convert(f, rate))
        factors.append(audio_s / max(1e-9, time.thread_time() - t0))
    return median(factors)


def _bundled_whisper() -> str | None:
    from voicechat.errors import VoicechatError
    from voicechat.models import whisper_model_path

    try:
        return whisper_model_path()
    except VoicechatError:
        return None


def _report(
    settings: Settings,
    samples: list[TurnSample],
    questions: list[Path],
    rss_start: float,
    rss_end: float,
    rss_peak: float,
) -> dict[str, Any]:
    v2v = [s.v2v_ms for s in samples]
    stage = lambda name: round(median([getattr(s, name) for s in samples]), 1)  # noqa: E731
    from voicechat.benchmark.machine import machine_report

    whisper = (settings.local_stt_model or _bundled_whisper()) if settings.backend("stt") == "local" else None
    return {
        "machine": machine_report(whisper),
        "backends": {k: settings.backend(k) for k in ("stt", "llm", "tts")},
        "turns": len(samples),
        "questions": [q.name for q in questions],
        "cpu_count": os.cpu_count(),
        "end_of_turn_ms": settings.turn.end_of_turn_ms,
        "voice_to_voice_ms": summary(v2v) if v2v else {},
        "stages_ms": {k: stage(k) for k in STAGES} if samples else {},
        "overhead_ms": round(median([s.overhead_ms for s in samples]), 1) if samples else None,
        "sequential_ms": summary([s.sequential_ms for s in samples]) if samples else {},
        "sequential_ratio": round(paired_ratio(v2v, [s.sequential_ms for s in samples]), 3) if samples else None,
        "frame_path_realtime_factor": round(frame_path_realtime_factor(questions, settings.turn.vad), 1),
        "rss_mb": round(rss_peak, 1),
        "rss_growth_mb": round(rss_end - rss_start, 1),
        "per_turn": [asdict(s) for s in samples],
    }
