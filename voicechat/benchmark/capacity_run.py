"""How many conversations one process holds: ``voicechat bench --sessions N``.

Each simulated user is a real :class:`voicechat.conversation_thread.ConversationThread`,
as a Streamlit session has, fed real speech paced in real time. One "transport" loop on
the main thread pushes a 20 ms frame to every session per tick, as aiortc's single loop
does for every call. The backends are the OpenAI-format path against the loopback server
in *another process* with fixed provider delays, so the CPU measured here is the engine's
(and its HTTP clients'), never the provider's.

Threads: the transport loop (main thread), one engine thread per session (events arrive
there, so :class:`_User` guards what both threads touch with a lock), the shared model pool,
and one GIL probe thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from voicechat.audio import iter_wav_frames
from voicechat.benchmark.openai_loopback_server import CHAT, SPEECH, STATS, TRANSCRIPTIONS
from voicechat.benchmark.process_usage import cpu_s, rss_mb
from voicechat.benchmark.stats import percentile, true_end_of_speech
from voicechat.benchmark.transport_run import transport_cost
from voicechat.config import Settings
from voicechat.conversation_thread import ConversationThread
from voicechat.engine import Conversation
from voicechat.events import AudioOut, Event, PartialTranscript, TurnMetrics
from voicechat.turn_policy import EndOfTurnMode

FRAME_S = 0.02
# Cloud-like provider delays (before the first byte): transcription, first token, speech.
PROVIDER_DELAYS = {TRANSCRIPTIONS: 0.35, CHAT: 0.30, SPEECH: 0.25}
LEVELS = (1, 2, 5, 10, 20, 35, 50, 75, 100, 150, 200, 300)


@contextlib.contextmanager
def provider_process(transcript: str = "What is the capital of Italy?") -> Iterator[str]:
    """The loopback OpenAI-format server in a child process; yields its base URL."""
    cmd = [sys.executable, "-m", "voicechat.benchmark.openai_loopback_server", "--transcript", transcript]
    for path, delay in PROVIDER_DELAYS.items():
        cmd += ["--delay", path, str(delay)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError("the loopback OpenAI-format server did not start")
        yield url
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


def provider_stats(base_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(base_url.removesuffix("/v1") + STATS, timeout=5) as resp:
        return dict(json.loads(resp.read()))


def loopback_settings(base_url: str, **overrides: Any) -> Settings:
    values = {"stt": "openai", "llm": "openai", "tts": "openai", **overrides}
    return Settings.load(values, environ={"OPENAI_API_KEY": "sk-bench", "OPENAI_BASE_URL": base_url}, dotenv_path=None)


@dataclass
class Question:
    frames: list[np.ndarray]
    rate: int
    eos_s: float  # true end of speech, read from the recording
    spoken_s: float  # from the true start of speech to its end

    @classmethod
    def load(cls, path: Path) -> Question:
        frames, rate = iter_wav_frames(path)
        pcm = np.concatenate(frames)
        eos = true_end_of_speech(pcm, rate)
        sos = len(pcm) / rate - true_end_of_speech(pcm[::-1], rate)
        return cls(frames, rate, eos, max(0.0, eos - sos))


@dataclass
class _User:
    """One simulated caller: the next mic frame to send, and what its engine said back."""

    questions: list[Question]
    rng: random.Random
    idle_frames: int  # silence before the first question (users do not all start at once)
    lock: threading.Lock = field(default_factory=threading.Lock)
    v2v_ms: list[float] = field(default_factory=list)
    asked: list[int] = field(default_factory=list)  # which question each v2v_ms answered
    partials: int = 0
    turns_done: int = 0
    played: int = 0  # questions spoken to the end
    spoken_s: float = 0.0
    _q: int = 0
    _i: int = 0
    _t0: float = 0.0
    _eos_wall: float | None = None
    _answered: bool = True
    _playback_end: float = 0.0
    _silence: dict[int, np.ndarray] = field(default_factory=dict)

    def next_frame(self, now: float) -> tuple[np.ndarray, int]:
        """Transport loop: the frame to push at tick time ``now``."""
        q = self.questions[self._q % len(self.questions)]
        if self.idle_frames > 0:
            self.idle_frames -= 1
            return self._quiet(q), q.rate
        if self._i == 0:
            with self.lock:
                self._t0, self._eos_wall, self._answered = now, now + q.eos_s, False
        if self._i < len(q.frames):
            frame = q.frames[self._i]
            self._i += 1
            if self._i == len(q.frames):
                self.played += 1
                self.spoken_s += q.spoken_s
            return frame, q.rate
        with self.lock:
            finished = self._answered and now >= self._playback_end
        if finished or now - self._t0 > 20.0:
            self._q, self._i = self._q + 1, 0
            self.idle_frames = self.rng.randint(25, 75)  # 0.5–1.5 s before the next question
        return self._quiet(q), q.rate

    @property
    def between_questions(self) -> bool:
        return self.idle_frames > 0

    def _quiet(self, q: Question) -> np.ndarray:
        n = len(q.frames[0])
        if n not in self._silence:
            self._silence[n] = np.zeros_like(q.frames[0])
        return self._silence[n]

    def on_event(self, event: Event) -> None:
        """Engine thread: the first reply audio of a turn ends its voice-to-voice time."""
        now = time.perf_counter()
        with self.lock:
            if isinstance(event, AudioOut):
                if not self._answered and self._eos_wall is not None:
                    self.v2v_ms.append((now - self._eos_wall) * 1000.0)
                    self.asked.append(self._q % len(self.questions))
                    self._answered = True
                self._playback_end = max(now, self._playback_end) + event.duration_s
            elif isinstance(event, TurnMetrics):
                self.turns_done += 1
                self._answered = True
            elif isinstance(event, PartialTranscript):
                self.partials += 1


class _GilProbe:
    """A thread asking for the GIL every 2 ms: how late it gets it is what every session waits."""

    def __init__(self) -> None:
        self.late_ms: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="voicechat-gil-probe", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            t = time.perf_counter()
            time.sleep(0.002)
            self.late_ms.append((time.perf_counter() - t - 0.002) * 1000.0)

    def __enter__(self) -> _GilProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def _transport(
    users: list[tuple[_User, ConversationThread]],
    seconds: float,
    tick_late_ms: list[float],
    until: Callable[[], bool] | None = None,
) -> None:
    """Main thread: one frame to every session every 20 ms, like aiortc's loop."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    tick = 0
    while loop.time() - start < seconds and not (until is not None and until()):
        due = start + tick * FRAME_S
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tick_late_ms.append(max(0.0, loop.time() - due) * 1000.0)
        now = time.perf_counter() - (loop.time() - due)  # the frame's due time on the perf clock
        for user, thread in users:
            frame, rate = user.next_frame(now)
            thread.push(frame, rate)
        tick += 1


def run_level(
    n: int,
    factory: Callable[[Callable[[Event], None]], Conversation],
    questions: list[Question],
    seconds: float,
    baseline: dict[int, float] | None = None,
    seed: int = 7,
) -> dict[str, Any]:
    """``n`` sessions for ``seconds`` of talk after a short ramp; figures for this level.

    Questions differ by hundreds of ms (one with a pause inside misses the speculative start),
    so each turn is compared with the same question's median in one session (``baseline``;
    the level computes it itself when None): ``excess_p95_ms`` is the p95 of those differences.
    """
    rng = random.Random(seed + n)
    users = [_User(questions, random.Random(rng.random()), idle_frames=rng.randint(0, 150)) for _ in range(n)]
    threads = [ConversationThread(factory, u.on_event, name=f"voicechat-bench-{i}") for i, u in enumerate(users)]
    for t in threads:
        t.wait_ready(60)
    pairs = list(zip(users, threads, strict=True))
    ramp: list[float] = []
    asyncio.run(_transport(pairs, 3.0, ramp))  # every session has had its first frames
    for u in users:
        with u.lock:
            u.v2v_ms.clear()
            u.asked.clear()
    tick_late: list[float] = []
    cpu0, wall0 = cpu_s(), time.perf_counter()
    with _GilProbe() as gil:
        asyncio.run(_transport(pairs, seconds, tick_late))
    cores = (cpu_s() - cpu0) / (time.perf_counter() - wall0)
    rss = rss_mb()
    for t in threads:
        t.close()
    v2v = [x for u in users for x in u.v2v_ms]
    asked = [q for u in users for q in u.asked]
    if baseline is None:
        baseline = {q: percentile([x for x, a in zip(v2v, asked, strict=True) if a == q], 50) for q in set(asked)}
    excess = [x - baseline[q] for x, q in zip(v2v, asked, strict=True) if q in baseline]
    return {
        "baseline_ms": {str(q): round(v, 1) for q, v in sorted(baseline.items())},
        "excess_p95_ms": round(percentile(excess, 95), 1),
        "sessions": n,
        "turns": len(v2v),
        "seconds": seconds,
        "v2v_p50_ms": round(percentile(v2v, 50), 1),
        "v2v_p95_ms": round(percentile(v2v, 95), 1),
        "cores_used": round(cores, 3),
        "rss_mb": round(rss, 1),
        "transport_tick_late_p95_ms": round(percentile(tick_late, 95), 1),
        "gil_wait_p95_ms": round(percentile(gil.late_ms, 95), 2),
        "partials_per_turn": round(sum(u.partials for u in users) / max(1, len(v2v)), 2),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def sweep_levels(limit: int) -> list[int]:
    levels = [n for n in LEVELS if n < limit]
    return [*levels, limit] if limit >= 1 else [1]


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


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


def _factory(settings: Settings) -> Callable[[Callable[[Event], None]], Conversation]:
    def make(listener: Callable[[Event], None]) -> Conversation:
        from voicechat.backends import make_llm, make_stt, make_tts

        return Conversation(
            make_stt(settings), make_llm(settings), make_tts(settings), settings=settings, listener=listener
        )

    return make


def _loadavg() -> str:
    with contextlib.suppress(OSError), open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])
    return "unknown"


def run_capacity(
    limit: int,
    question_paths: list[Path],
    *,
    level_seconds: float = 25.0,
    cost_turns: int = 9,
    progress: Callable[[str], None] | None = None,
    end_of_turn: EndOfTurnMode = "semantic",
) -> dict[str, Any]:
    """The whole capacity benchmark; one JSON-ready dict (see docs/scaling.md)."""
    from voicechat.benchmark.capacity_report import frame_path_costs, summarise
    from voicechat.benchmark.machine import cpu_isa, cpu_model

    say = progress or (lambda _msg: None)
    load_before = _loadavg()
    questions = [Question.load(p) for p in question_paths]
    levels: list[dict[str, Any]] = []
    with provider_process() as url:
        # Live text off on the server: in the app it comes from the browser's recogniser; the
        # local model's CPU (VOICECHAT_INTERIM_STT=auto) would be a different benchmark.
        sweep = _factory(loopback_settings(url, interim_stt="off", end_of_turn=end_of_turn))
        baseline: dict[int, float] | None = None
        for n in sweep_levels(limit):
            # The single session is the baseline every p95 is compared with: give it more turns.
            lv = run_level(n, sweep, questions, max(level_seconds, 3 * level_seconds / n), baseline)
            baseline = baseline or {int(q): v for q, v in lv["baseline_ms"].items()}
            levels.append(lv)
            say(
                f"{n} sessions: {lv['turns']} turns, v2v p50 {lv['v2v_p50_ms']} / p95 {lv['v2v_p95_ms']} ms, "
                f"{lv['cores_used']} cores, RSS {lv['rss_mb']} MB, GIL wait p95 {lv['gil_wait_p95_ms']} ms, "
                f"excess p95 over one session's per-question median {lv['excess_p95_ms']} ms"
            )
            answered = lv["turns"] / (n * lv["seconds"])
            if answered < 0.25 * levels[0]["turns"] / levels[0]["seconds"]:  # answers per user per second
                say("most users got no answer at this level: stopping the sweep here")
                break
        cost = cost_per_turn(url, _factory(loopback_settings(url, interim_stt="auto")), questions, cost_turns)
        cost["interim"] = "auto (local model)"
        say(f"cost: {cost}")
        # The trade-off .env.example names: live text from the provider, in the same run.
        paid = cost_per_turn(url, _factory(loopback_settings(url, interim_stt="stt")), questions, cost_turns)
        cost["with_interim_from_provider"] = {
            k: paid[k] for k in ("provider_requests_per_turn", "stt_audio_billed_ratio")
        }
        say(f"cost with VOICECHAT_INTERIM_STT=stt: {cost['with_interim_from_provider']}")
    transport = transport_cost(question_paths)
    say(f"transport: {transport}")
    cores = cpu_count()
    out = summarise(levels, cores, frame_path_costs(question_paths))
    return {
        **out,
        "transport_sessions_per_core": transport["transport_sessions_per_core"],
        "provider_requests_per_turn": cost["provider_requests_per_turn"],
        "stt_audio_billed_ratio": cost["stt_audio_billed_ratio"],
        "sessions_max": limit,
        "end_of_turn": end_of_turn,
        "cpu": f"{cpu_model()} ({cpu_isa()})",
        "cpu_count": cores,
        "provider_delays_ms": {k.rsplit("/", 1)[-1]: round(v * 1000) for k, v in PROVIDER_DELAYS.items()},
        "level_seconds": level_seconds,
        "loadavg_before": load_before,
        "loadavg_after": _loadavg(),
        "levels": levels,
        "transport": transport,
        "cost": cost,
    }
