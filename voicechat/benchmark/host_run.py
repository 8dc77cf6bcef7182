"""How many calls one host holds with R replica processes: ``voicechat bench --sessions N --replicas R``.

The single-process sweep (:mod:`voicechat.benchmark.capacity_run`) measures the engine alone and
the WebRTC transport apart. A deployment runs R replicas (deploy/) and each one carries its calls'
media itself, so here each level's N sessions are split over R worker processes, and every worker
runs its sessions' engines AND their transport: aiortc peer pairs carrying speech (a pair sending
both ways is two calls' server side: each peer decodes one Opus stream and encodes one, with SRTP;
an odd call is a pair sending one way), on the loop that feeds the engines, as streamlit-webrtc's
aiortc shares Streamlit's loop. The workers start
their measured window together; the host figures are their sum: cores used, CPU per call with the
transport included (the slope of host CPU over N), the added p95 voice-to-voice over one session,
and the bottleneck.

Processes: this one (the orchestrator; it only waits), the loopback provider, and R workers
(``python -m voicechat.benchmark.host_run``: a job as one JSON line on stdin, "ready" on stdout
once its engines are up, then "go" on stdin, then its :class:`LevelRun` as one JSON line).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from voicechat.benchmark.capacity_run import (
    LevelRun,
    Question,
    _loadavg,
    cpu_count,
    drive_level,
    level_figures,
    sweep_levels,
)
from voicechat.benchmark.loopback_provider import PROVIDER_DELAYS, loopback_factory, loopback_settings, provider_process

# One session's level is the baseline each turn is compared with (its question's median there).
# Played once, a question's baseline is one turn, and the jitter between two plays of the same file
# (where its pauses fall against the VAD windows, the speculative transcript's timing: ~100 ms) is
# read as load from the second level on; with three plays the median holds and the one-session
# level's own excess p95 (subtracted from every level's) measures that jitter.
BASELINE_PLAYS = 3
TURN_S = 4.5  # one turn of the bundled questions against the loopback provider, question to next question
# A level's p95 over fewer turns than this is its slowest one or two (2 sessions in 25 s: 16-18 turns),
# which read as +200 ms of load at 2 and 5 sessions and made every larger level fail the 50 ms bar
# with it: small levels talk until about this many turns are in.
MIN_TURNS = 50


def split(n: int, replicas: int) -> list[int]:
    """``n`` sessions over ``replicas`` as a least-connections balancer would leave them (idle ones dropped)."""
    shares = [n // replicas + (i < n % replicas) for i in range(replicas)]
    return [s for s in shares if s > 0]


class _Worker:
    """One replica process for one level (the orchestrator's handle on it)."""

    def __init__(self, job: dict[str, Any]) -> None:
        cmd = [sys.executable, "-m", "voicechat.benchmark.host_run"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._send(json.dumps(job))

    def _send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def _read(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"a replica worker exited with {self.proc.wait()} (its stderr is above)")
        return line.strip()

    def wait_ready(self) -> None:
        if self._read() != "ready":
            raise RuntimeError("a replica worker did not report ready")

    def go(self) -> None:
        self._send("go")

    def result(self) -> LevelRun:
        run = LevelRun(**json.loads(self._read()))
        self.proc.wait(30)
        return run

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def run_host_level(
    n: int, replicas: int, job: dict[str, Any], seconds: float, baseline: dict[int, float] | None
) -> dict[str, Any]:
    """``n`` sessions over ``replicas`` processes at once; the host's figures for this level."""
    shares = split(n, replicas)
    workers = [_Worker({**job, "sessions": k, "seconds": seconds, "seed": 7 + 1000 * i}) for i, k in enumerate(shares)]
    try:
        for w in workers:
            w.wait_ready()
        for w in workers:  # every replica's measured window starts together
            w.go()
        runs = [w.result() for w in workers]
    finally:
        for w in workers:
            w.kill()
    level = level_figures(runs, baseline)
    level["per_replica"] = [
        {
            "sessions": r.sessions,
            "cores_used": round(r.cpu_s / r.wall_s, 3),
            "gil_wait_p95_ms": round(r.gil_wait_p95_ms, 2),
        }
        for r in runs
    ]
    level["transport_calls"] = sum(r.transport_calls for r in runs)
    return level


def run_host_capacity(
    limit: int,
    question_paths: list[Path],
    replicas: int,
    *,
    level_seconds: float = 25.0,
    progress: Callable[[str], None] | None = None,
    end_of_turn: str = "semantic",
    speech_transport: bool = True,
    line_end_base_url: str | None = None,
    line_end_prime: bool = False,
) -> dict[str, Any]:
    """The host sweep; one JSON-ready dict (see docs/scaling.md, "Capacity of a host").

    ``speech_transport``: the replicas' aiortc tuned as the app tunes it
    (:mod:`voicechat.streamlit.speech_transport`), or aiortc's own. ``line_end_base_url``: the end
    of turn scored on that model server instead of in each replica (its CPU is not in the figures),
    read ahead while the user speaks only if ``line_end_prime`` (the default is not to).
    """
    from voicechat.benchmark.capacity_report import frame_path_costs, summarise
    from voicechat.benchmark.machine import cpu_isa, cpu_model

    say = progress or (lambda _msg: None)
    load_before = _loadavg()
    levels: list[dict[str, Any]] = []
    with provider_process() as url:
        job = {
            "base_url": url,
            "end_of_turn": end_of_turn,
            "questions": [str(p) for p in question_paths],
            "speech_transport": speech_transport,
            "line_end_base_url": line_end_base_url,
            "line_end_prime": line_end_prime,
        }
        baseline: dict[int, float] | None = None
        for n in sweep_levels(limit):
            seconds = max(level_seconds, MIN_TURNS * TURN_S / n)
            if n == 1:  # the baseline: every question played several times (see BASELINE_PLAYS)
                seconds = max(seconds, BASELINE_PLAYS * len(question_paths) * TURN_S)
            lv = run_host_level(n, replicas, job, seconds, baseline)
            baseline = baseline or {int(q): v for q, v in lv["baseline_ms"].items()}
            levels.append(lv)
            say(
                f"{n} sessions on {len(lv['per_replica'])} replica(s): {lv['turns']} turns, v2v p50 "
                f"{lv['v2v_p50_ms']} / p95 {lv['v2v_p95_ms']} ms, {lv['cores_used']} cores "
                f"({', '.join(str(r['cores_used']) for r in lv['per_replica'])}), GIL wait p95 "
                f"{lv['gil_wait_p95_ms']} ms, excess p95 {lv['excess_p95_ms']} ms, end-of-turn wait p95 "
                f"{lv.get('eot_p95_ms')} ms, score p95 {lv.get('line_end_p95_ms')} ms"
            )
            if lv["turns"] / (n * lv["seconds"]) < 0.25 * levels[0]["turns"] / levels[0]["seconds"]:
                say("most users got no answer at this level: stopping the sweep here")
                break
    cores = cpu_count()
    who = "the replica process" if replicas == 1 else f"the {replicas} replica processes"
    out = summarise(levels, cores, frame_path_costs(question_paths), who=who)
    return {
        **out,
        "replicas": replicas,
        "transport_included": True,
        "speech_transport": speech_transport,
        "sessions_max": limit,
        "end_of_turn": end_of_turn,
        "end_of_turn_scored_on": "a model server" if line_end_base_url else "each replica",
        "line_end_prime": line_end_prime,
        "cpu": f"{cpu_model()} ({cpu_isa()})",
        "cpu_count": cores,
        "provider_delays_ms": {k.rsplit("/", 1)[-1]: round(v * 1000) for k, v in PROVIDER_DELAYS.items()},
        "level_seconds": level_seconds,
        "loadavg_before": load_before,
        "loadavg_after": _loadavg(),
        "levels": levels,
    }


def _worker_main() -> int:
    """A replica worker: the job from stdin, "ready", wait for "go", the LevelRun as JSON on stdout."""
    from voicechat.benchmark.transport_run import speech_48k

    job = json.loads(sys.stdin.readline())
    if job.get("speech_transport"):
        from voicechat.streamlit.speech_transport import install

        install(True)
    paths = [Path(p) for p in job["questions"]]
    settings = loopback_settings(
        job["base_url"],
        interim_stt="off",
        end_of_turn=job["end_of_turn"],
        line_end_base_url=job.get("line_end_base_url"),  # the end of turn scored on a model server
        line_end_prime=job.get("line_end_prime", False),
    )
    factory = loopback_factory(settings)

    def ready() -> None:
        print("ready", flush=True)
        if sys.stdin.readline().strip() != "go":
            raise SystemExit("the orchestrator went away")

    run = drive_level(
        job["sessions"],
        factory,
        [Question.load(p) for p in paths],
        job["seconds"],
        job["seed"],
        transport_calls=job["sessions"],
        speech=speech_48k(paths),
        on_ready=ready,
    )
    print(json.dumps(asdict(run)), flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(_worker_main())
