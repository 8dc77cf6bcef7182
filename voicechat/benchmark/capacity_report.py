"""The capacity sweep's arithmetic and its write-up: fits, the 50 ms limit, the bottleneck, docs.

Kept apart from :mod:`voicechat.benchmark.capacity_run` (which drives sessions) so the
conclusions can be unit-tested on small made-up sweeps.
"""

from __future__ import annotations

import platform
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

START = "<!-- bench:capacity -->"
END = "<!-- /bench:capacity -->"
ADDED_BUDGET_MS = 50.0  # the bar: added p95 voice-to-voice over one session


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs (0 for fewer than two distinct xs)."""
    if len(set(xs)) < 2:
        return 0.0
    return float(np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)[0])


def added_p95(levels: list[dict[str, Any]]) -> dict[str, float]:
    """At each N, the p95 of each turn's delay over its question's one-session median, less the same at N = 1."""
    base = levels[0]["excess_p95_ms"]
    return {str(lv["sessions"]): round(lv["excess_p95_ms"] - base, 1) for lv in levels}


def max_sessions(levels: list[dict[str, Any]], budget_ms: float) -> int:
    """The largest N tried whose added p95 is within budget, every smaller N tried being within it too."""
    best = levels[0]["sessions"]
    for n, added in added_p95(levels).items():
        if added > budget_ms or not _answered(levels, int(n)):
            break
        best = int(n)
    return best


def _answered(levels: list[dict[str, Any]], n: int) -> bool:
    """Most users got answers: a level where replies stopped coming is not a pass, whatever its p95."""

    def rate(lv: dict[str, Any]) -> float:  # answers per user per second of talk
        return float(lv["turns"]) / max(1, lv["sessions"]) / float(lv.get("seconds", 1.0))

    return rate(next(lv for lv in levels if lv["sessions"] == n)) >= 0.5 * rate(levels[0])


def frame_path_costs(questions: list[Path], vad_kind: str = "silero") -> dict[str, float]:
    """CPU seconds per second of one session's audio for resampling and for the VAD, on one thread."""
    from voicechat.audio import InputConverter, iter_wav_frames
    from voicechat.end_of_turn import SilenceSegmenter
    from voicechat.vad import make_vad

    loaded = [iter_wav_frames(q) for q in questions]
    audio_s = sum(sum(len(f) for f in frames) / rate for frames, rate in loaded)
    conv = InputConverter()
    t0 = time.thread_time()
    resampled = [conv.convert(f, rate) for frames, rate in loaded for f in frames]
    t1 = time.thread_time()
    det = SilenceSegmenter(make_vad(vad_kind))
    for x in resampled:
        det.feed(x)
    t2 = time.thread_time()
    return {"resample_cpu_per_audio_s": (t1 - t0) / audio_s, "vad_cpu_per_audio_s": (t2 - t1) / audio_s}


def bottleneck(
    levels: list[dict[str, Any]], limit: int, cores: int, path: dict[str, float], who: str = "the process"
) -> dict[str, Any]:
    """Where the sweep saturates, named from evidence taken in the same run.

    ``who`` is what ran the sessions ("the process", or "the 2 replica processes" on a host).

    Looks at the first level past the limit (or the last level tried): CPU busy on every core
    means CPU, with the shares of VAD and resampling in it; otherwise a late GIL probe means
    the interpreter lock; a late transport tick means the event loops.
    """
    after = [lv for lv in levels if lv["sessions"] > limit]
    lv = after[0] if after else levels[-1]
    n = lv["sessions"]
    used = lv["cores_used"]
    vad = n * path["vad_cpu_per_audio_s"]
    resample = n * path["resample_cpu_per_audio_s"]
    shares = {"vad": round(vad / max(used, 1e-9), 3), "resampling": round(resample / max(used, 1e-9), 3)}
    shares["rest"] = round(max(0.0, 1 - shares["vad"] - shares["resampling"]), 3)
    host_load = float(lv.get("loadavg_1m", 0.0))
    if used >= 0.85 * cores:
        kind = "cpu"
        why = (
            f"at {n} sessions {used:.2f} of {cores} cores are busy ({who}): VAD {shares['vad']:.0%}, "
            f"resampling {shares['resampling']:.0%}, the rest (asyncio loops, HTTP clients, thread "
            f"switches) {shares['rest']:.0%}"
        )
    elif host_load > 1.5 * cores:
        kind = "host_contention"
        why = (
            f"at {n} sessions {who} used only {used:.2f} of {cores} cores while the machine's load "
            f"average was {host_load:g}: other processes held the CPU, so threads waited for the OS "
            f"(GIL probe {lv['gil_wait_p95_ms']} ms p95, transport tick {lv['transport_tick_late_p95_ms']} ms "
            "late); the engine's own limit is the CPU estimate"
        )
    elif lv["gil_wait_p95_ms"] > 5.0:
        kind = "gil"
        why = (
            f"at {n} sessions only {used:.2f} of {cores} cores are busy but a thread waits "
            f"{lv['gil_wait_p95_ms']} ms (p95) for the interpreter lock"
        )
    elif lv["transport_tick_late_p95_ms"] > 20.0:
        kind = "event_loops"
        why = f"at {n} sessions the transport loop runs {lv['transport_tick_late_p95_ms']} ms late (p95)"
    else:
        kind = "none_reached"
        why = f"up to {n} sessions nothing saturated (largest level tried)"
    return {"kind": kind, "at_sessions": n, "detail": why, "cpu_shares": shares}


def summarise(
    levels: list[dict[str, Any]],
    cores: int,
    path: dict[str, float],
    budget_ms: float = ADDED_BUDGET_MS,
    who: str = "the process",
) -> dict[str, Any]:
    """The headline figures. CPU per session is the slope over every level whose users got answers:
    process CPU time does not depend on how loaded the machine is, latency does."""
    ns = [float(lv["sessions"]) for lv in levels]
    limit = max_sessions(levels, budget_ms)
    answered = [lv for lv in levels if _answered(levels, lv["sessions"])]
    per_session = slope([float(lv["sessions"]) for lv in answered], [lv["cores_used"] for lv in answered])
    if per_session <= 0:
        per_session = levels[0]["cores_used"]
    return {
        "max_sessions_50ms": limit,
        # Where the engine alone would keep 80 % of the cores busy: its limit on a quiet machine.
        "cpu_bound_sessions": int(0.8 * cores / per_session),
        "cpu_per_session_pct": round(per_session * 100, 2),
        "added_p95_ms": added_p95(levels),
        "rss_per_session_mb": round(slope(ns, [lv["rss_mb"] for lv in levels]), 2),
        "bottleneck": bottleneck(levels, limit, cores, path, who),
    }


def markdown(r: dict[str, Any], plotted: bool) -> str:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    t, c, b = r["transport"], r["cost"], r["bottleneck"]
    lines = [
        f"Measured {when} with `voicechat bench --sessions {r['sessions_max']} --json` on {r['cpu']} "
        f"({r['cpu_count']} vCPUs, {platform.machine()}), Python {platform.python_version()}; load average "
        f"{r['loadavg_before']} before and {r['loadavg_after']} after (the machine is shared: other work "
        "competes for the same cores, so the latency figures are pessimistic; the CPU-time figures are not).",
        "Backends: the OpenAI-format path against a loopback server in another process answering after "
        + ", ".join(f"{k} {v} ms" for k, v in r["provider_delays_ms"].items())
        + f"; each level runs {r['level_seconds']:g} s of talk after a ramp (the single session three times as long).",
        "",
        "| figure | value |",
        "|---|---|",
        f"| sessions at ≤ 50 ms added p95 (`max_sessions_50ms`) | {r['max_sessions_50ms']} |",
        f"| engine CPU per session (`cpu_per_session_pct`, % of one core) | {r['cpu_per_session_pct']} |",
        f"| sessions that keep 80 % of the cores busy with engine work (`cpu_bound_sessions`) | "
        f"{r['cpu_bound_sessions']} |",
        f"| RSS per added session (`rss_per_session_mb`) | {r['rss_per_session_mb']} MB |",
        f"| WebRTC transport, Opus decode + encode + SRTP (`transport_sessions_per_core`) | "
        f"{t['transport_sessions_per_core']} ({t['cpu_per_session_pct']} % of a core each) |",
        f"| bottleneck | {b['kind']}: {b['detail']} |",
        f"| cloud cost: `provider_requests_per_turn` / `stt_audio_billed_ratio` | "
        f"{c['provider_requests_per_turn']} / {c['stt_audio_billed_ratio']} (interim text: {c['interim']}, "
        f"{c['partials_per_turn']} live transcripts per turn) |",
        f"| the same with `VOICECHAT_INTERIM_STT=stt` (live text from the provider) | "
        f"{c['with_interim_from_provider']['provider_requests_per_turn']} / "
        f"{c['with_interim_from_provider']['stt_audio_billed_ratio']} |",
        "",
        "| sessions | turns | v2v p50 / p95 ms | p95 over the question's 1-session median ms | added p95 ms | "
        "cores used | RSS MB | GIL wait p95 ms | transport tick late p95 ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for lv in r["levels"]:
        lines.append(
            f"| {lv['sessions']} | {lv['turns']} | {lv['v2v_p50_ms']} / {lv['v2v_p95_ms']} | "
            f"{lv['excess_p95_ms']} | {r['added_p95_ms'][str(lv['sessions'])]} | "
            f"{lv['cores_used']} | {lv['rss_mb']} | "
            f"{lv['gil_wait_p95_ms']} | {lv['transport_tick_late_p95_ms']} |"
        )
    if plotted:
        lines += ["", "![added p95 and CPU against sessions](scaling.png)"]
    return "\n".join(lines)


def plot(r: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    ns = [lv["sessions"] for lv in r["levels"]]
    fig, ax = plt.subplots(figsize=(8, 4.2))
    ax.plot(ns, [r["added_p95_ms"][str(n)] for n in ns], "o-", label="added p95 voice-to-voice (ms)")
    ax.axhline(50, color="grey", linestyle=":", label="50 ms budget")
    ax.set_xlabel("concurrent sessions")
    ax.set_ylabel("ms over one session")
    ax2 = ax.twinx()
    ax2.plot(ns, [lv["cores_used"] for lv in r["levels"]], "s--", color="tab:red", label="cores used")
    ax2.set_ylabel("cores used (process CPU time / wall time)")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=8, loc="upper left")
    ax.set_title(f"voicechat capacity on {r['cpu']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_docs(r: dict[str, Any], docs: Path) -> None:
    """Fill the Measured capacity section of docs/scaling.md between its markers (added if missing)."""
    docs.mkdir(parents=True, exist_ok=True)
    plotted = plot(r, docs / "scaling.png")
    page = docs / "scaling.md"
    text = page.read_text() if page.is_file() else "# Scaling\n\n## Measured capacity\n"
    block = f"{START}\n{markdown(r, plotted)}\n{END}"
    if START in text and END in text:
        text = text[: text.index(START)] + block + text[text.index(END) + len(END) :]
    elif "## Measured capacity\n" in text:
        head, tail = text.split("## Measured capacity\n", 1)
        text = f"{head}## Measured capacity\n\n{block}\n{tail}"
    else:
        text += f"\n## Measured capacity\n\n{block}\n"
    page.write_text(text)
