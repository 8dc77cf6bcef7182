"""How many conversations one process holds: ``voicechat bench --sessions N``.

Each simulated user is a real conversation run as a Streamlit session runs it (on the loop that
carries the media, :class:`voicechat.conversation_on_loop.ConversationOnLoop`), fed real speech
paced in real time. One "transport" loop on
the main thread pushes a 20 ms frame to every session per tick, as aiortc's single loop
does for every call. The backends are the OpenAI-format path against the loopback server
in *another process* with fixed provider delays, so the CPU measured here is the engine's
(and its HTTP clients'), never the provider's.

Threads: the transport loop (main thread) with the engines on it (or one engine thread per
session, ``on_transport_loop=False``), the shared model pool, and one GIL probe thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from voicechat.benchmark.loopback_provider import (
    PROVIDER_DELAYS,
    loopback_factory,
    loopback_settings,
    provider_process,
)
from voicechat.benchmark.process_usage import cpu_s, rss_mb
from voicechat.benchmark.simulated_callers import Question, _GilProbe, _transport, _User
from voicechat.benchmark.stats import percentile
from voicechat.conversation_on_loop import ConversationOnLoop
from voicechat.conversation_thread import ConversationRunner, ConversationThread
from voicechat.engine import Conversation
from voicechat.events import Event
from voicechat.turn_policy import EndOfTurnMode

LEVELS = (1, 2, 5, 10, 20, 35, 50, 75, 100, 150, 200, 300)


@dataclass
class LevelRun:
    """What one process measured at one level (the host benchmark adds up several of these)."""

    sessions: int
    seconds: float
    v2v_ms: list[float]
    asked: list[int]  # which question each v2v_ms answered
    cpu_s: float
    wall_s: float
    rss_mb: float
    tick_late_p95_ms: float
    gil_wait_p95_ms: float
    partials: int
    transport_calls: int = 0
    stages: dict[str, list[float]] = field(default_factory=dict)  # see simulated_callers._User.stages


async def _ramp_and_measure(
    pairs: list[tuple[_User, ConversationRunner]], seconds: float, transport_calls: int, pcm: np.ndarray | None
) -> tuple[float, float, list[float], list[float]]:
    """Main thread's loop: the media (if any) flowing, a 3 s ramp, then ``seconds`` measured.

    The aiortc pairs run on this same loop, as streamlit-webrtc's do on Streamlit's.
    """
    from voicechat.benchmark.transport_run import CarriedMedia

    media = CarriedMedia(transport_calls, pcm if pcm is not None else np.zeros(960, np.int16))
    async with media:
        await _transport(pairs, 3.0, [])  # every session has had its first frames
        for u, _ in pairs:
            with u.lock:
                u.v2v_ms.clear()
                u.asked.clear()
                for values in u.stages.values():
                    values.clear()
        tick_late: list[float] = []
        cpu0, wall0 = cpu_s(), time.perf_counter()
        with _GilProbe() as gil:
            await _transport(pairs, seconds, tick_late)
        cpu, wall = cpu_s() - cpu0, time.perf_counter() - wall0
    return cpu, wall, tick_late, gil.late_ms


def drive_level(
    n: int,
    factory: Callable[[Callable[[Event], None]], Conversation],
    questions: list[Question],
    seconds: float,
    seed: int = 7,
    *,
    transport_calls: int = 0,
    speech: np.ndarray | None = None,
    on_ready: Callable[[], None] | None = None,
    on_transport_loop: bool = True,
) -> LevelRun:
    """``n`` sessions in this process for ``seconds`` of talk after a short ramp.

    ``on_transport_loop``: the engines run on the loop that carries the media, as the Streamlit
    app runs them (:class:`~voicechat.conversation_on_loop.ConversationOnLoop`); ``False``: each on
    its own thread (:class:`~voicechat.conversation_thread.ConversationThread`, as the notebook).

    ``transport_calls``: also carry that many calls' WebRTC media (aiortc pairs sending
    ``speech``, :class:`~voicechat.benchmark.transport_run.CarriedMedia`) on the same loop.
    ``on_ready`` runs once every engine is ready (a start line).
    """
    rng = random.Random(seed + n)
    users = [_User(questions, random.Random(rng.random()), idle_frames=rng.randint(0, 150)) for _ in range(n)]

    async def run() -> tuple[float, float, list[float], list[float]]:
        loop = asyncio.get_running_loop()
        runners: list[ConversationRunner] = [
            ConversationOnLoop(factory, u.on_event, loop=loop, name=f"voicechat-bench-{i}")
            if on_transport_loop
            else ConversationThread(factory, u.on_event, name=f"voicechat-bench-{i}")
            for i, u in enumerate(users)
        ]
        try:
            for r in runners:
                await asyncio.to_thread(r.wait_ready, 120)
            if on_ready is not None:
                await asyncio.to_thread(on_ready)
            return await _ramp_and_measure(list(zip(users, runners, strict=True)), seconds, transport_calls, speech)
        finally:
            for r in runners:
                await asyncio.to_thread(r.close)

    cpu, wall, tick_late, gil_late = asyncio.run(run())
    rss = rss_mb()
    return LevelRun(
        sessions=n,
        seconds=seconds,
        v2v_ms=[x for u in users for x in u.v2v_ms],
        asked=[q for u in users for q in u.asked],
        cpu_s=cpu,
        wall_s=wall,
        rss_mb=rss,
        tick_late_p95_ms=percentile(tick_late, 95),
        gil_wait_p95_ms=percentile(gil_late, 95),
        partials=sum(u.partials for u in users),
        transport_calls=transport_calls,
        stages={name: [x for u in users for x in u.stages[name]] for name in users[0].stages} if users else {},
    )


def level_figures(runs: list[LevelRun], baseline: dict[int, float] | None = None) -> dict[str, Any]:
    """One level's figures from the processes that ran it together (one, or one per replica).

    Questions differ by hundreds of ms (one with a pause inside misses the speculative start),
    so each turn is compared with the same question's median in one session (``baseline``;
    computed here when None): ``excess_p95_ms`` is the p95 of those differences. Cores used are
    every process's CPU time over the longest wall time.
    """
    v2v = [x for r in runs for x in r.v2v_ms]
    asked = [q for r in runs for q in r.asked]
    if baseline is None:
        baseline = {q: percentile([x for x, a in zip(v2v, asked, strict=True) if a == q], 50) for q in set(asked)}
    excess = [x - baseline[q] for x, q in zip(v2v, asked, strict=True) if q in baseline]
    wall = max(r.wall_s for r in runs)
    return {
        "baseline_ms": {str(q): round(v, 1) for q, v in sorted(baseline.items())},
        "excess_p95_ms": round(percentile(excess, 95), 1),
        "sessions": sum(r.sessions for r in runs),
        "turns": len(v2v),
        "seconds": runs[0].seconds,
        "v2v_p50_ms": round(percentile(v2v, 50), 1),
        "v2v_p95_ms": round(percentile(v2v, 95), 1),
        "cores_used": round(sum(r.cpu_s for r in runs) / wall, 3),
        "rss_mb": round(sum(r.rss_mb for r in runs), 1),
        "transport_tick_late_p95_ms": round(max(r.tick_late_p95_ms for r in runs), 1),
        "gil_wait_p95_ms": round(max(r.gil_wait_p95_ms for r in runs), 2),
        "partials_per_turn": round(sum(r.partials for r in runs) / max(1, len(v2v)), 2),
        **{
            f"{name.removesuffix('_ms')}_p95_ms": round(percentile(values, 95), 1)
            for name in runs[0].stages
            if (values := [x for r in runs for x in r.stages.get(name, [])])
        },
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def run_level(
    n: int,
    factory: Callable[[Callable[[Event], None]], Conversation],
    questions: list[Question],
    seconds: float,
    baseline: dict[int, float] | None = None,
    seed: int = 7,
) -> dict[str, Any]:
    """``n`` sessions in this process, engine only (the single-process sweep); see :func:`level_figures`."""
    return level_figures([drive_level(n, factory, questions, seconds, seed)], baseline)


def sweep_levels(limit: int) -> list[int]:
    levels = [n for n in LEVELS if n < limit]
    return [*levels, limit] if limit >= 1 else [1]


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


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
    from voicechat.benchmark.cloud_cost_run import cost_per_turn
    from voicechat.benchmark.machine import cpu_isa, cpu_model
    from voicechat.benchmark.transport_run import transport_cost

    say = progress or (lambda _msg: None)
    load_before = _loadavg()
    questions = [Question.load(p) for p in question_paths]
    levels: list[dict[str, Any]] = []
    with provider_process() as url:
        # Live text off on the server: in the app it comes from the browser's recogniser; the
        # local model's CPU (VOICECHAT_INTERIM_STT=auto) would be a different benchmark.
        sweep = loopback_factory(loopback_settings(url, interim_stt="off", end_of_turn=end_of_turn))
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
        cost = cost_per_turn(url, loopback_factory(loopback_settings(url, interim_stt="auto")), questions, cost_turns)
        cost["interim"] = "auto (local model)"
        say(f"cost: {cost}")
        # The trade-off .env.example names: live text from the provider, in the same run.
        paid = cost_per_turn(url, loopback_factory(loopback_settings(url, interim_stt="stt")), questions, cost_turns)
        cost["with_interim_from_provider"] = {
            k: paid[k] for k in ("provider_requests_per_turn", "stt_audio_billed_ratio")
        }
        say(f"cost with VOICECHAT_INTERIM_STT=stt: {cost['with_interim_from_provider']}")
    from voicechat.streamlit.speech_transport import enabled_by_env, speech_transport

    with speech_transport(enabled_by_env()):  # as the app carries its calls (VOICECHAT_SPEECH_TRANSPORT)
        transport = transport_cost(question_paths)
    say(f"transport: {transport}")
    cores = cpu_count()
    out = summarise(levels, cores, frame_path_costs(question_paths))
    return {
        **out,
        "transport_sessions_per_core": transport["transport_sessions_per_core"],
        "speech_transport": enabled_by_env(),
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
