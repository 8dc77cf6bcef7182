"""``voicechat bench [--audio FILE…] [--rounds N] [--json] [--write-docs]``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from voicechat.benchmark.kit import require_kit
from voicechat.config import Settings
from voicechat.turn_policy import END_OF_TURN_MODES


def add_bench_parser(sub: Any) -> None:
    sp = sub.add_parser("bench", help="voice-to-voice latency through the real engine, vs a sequential pipeline")
    sp.add_argument("--audio", nargs="+", help="spoken questions, any audio file; default: the bundled set")
    sp.add_argument("--rounds", type=int, default=2, help="measured passes over the questions (after one warm-up)")
    sp.add_argument("--json", action="store_true", help="print one JSON object")
    sp.add_argument(
        "--sessions",
        type=int,
        metavar="N",
        help="capacity instead: sweep 1…N concurrent conversations on the loopback OpenAI-format path",
    )
    sp.add_argument(
        "--replicas",
        type=int,
        metavar="R",
        help="with --sessions: the host instead, N sessions over R replica processes, WebRTC transport included",
    )
    sp.add_argument(
        "--memory-turns",
        type=int,
        metavar="N",
        help="memory instead: RSS of one conversation over N turns (steady state after turn 10)",
    )
    sp.add_argument("--level-seconds", type=float, default=25.0, help="with --sessions: seconds of talk per level")
    sp.add_argument(
        "--end-of-turn",
        choices=END_OF_TURN_MODES,
        default="semantic",
        help="with --sessions: how turns end (semantic scores each turn on the local LLM's model)",
    )
    sp.add_argument("--no-paused", action="store_true", help="skip the paused-speech (false cut-off) set")
    sp.add_argument(
        "--paused-replay",
        action="store_true",
        help="only the paused-speech set, paced by the work instead of the clock (decisions, no timing)",
    )
    sp.add_argument("--write-docs", metavar="DIR", help="write benchmarks.md figures and the plot into DIR")
    sp.add_argument(
        "--docs-label",
        default="",
        metavar="NAME",
        help="keep these figures in their own block of benchmarks.md (e.g. avx2), beside other machines'",
    )
    for kind in ("stt", "tts"):
        sp.add_argument(f"--{kind}", choices=("auto", "local", "openai"), default=None)
    sp.add_argument(
        "--llm",
        choices=("auto", "local", "openai", "realtime"),
        default=None,
        help="realtime: the speech-to-speech path (local and server turn detection) beside the "
        "OpenAI-format pipeline, both on loopback servers with the same provider delay",
    )
    sp.add_argument(
        "--provider-delay",
        type=float,
        default=0.3,
        metavar="S",
        help="with --llm realtime: seconds every loopback provider request waits before its first byte",
    )
    sp.add_argument(
        "--transcript-delay",
        type=float,
        default=None,
        metavar="S",
        help="with --llm realtime: seconds from a commit to the server's transcript (default: --provider-delay)",
    )
    sp.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    require_kit()
    from voicechat.benchmark.latency_run import default_questions, run_benchmark

    settings = Settings.load({"stt": args.stt or "local", "llm": args.llm or "local", "tts": args.tts or "local"})
    questions = [Path(a) for a in args.audio] if args.audio else default_questions()
    if not questions:
        print("error: no questions to play (pass --audio FILE.wav)", file=sys.stderr)
        return 2
    log = (lambda msg: print(msg, file=sys.stderr)) if args.json else print
    if args.replicas is not None and args.sessions is None:
        print("error: --replicas needs --sessions N (the host's sweep goes up to N sessions)", file=sys.stderr)
        return 2
    if args.sessions is not None:
        return _capacity(args, questions, log)
    if args.llm == "realtime":
        return _realtime(args, questions, log)
    if args.paused_replay:
        from voicechat.benchmark.paused_run import replay_paused

        paused = asyncio.run(replay_paused(settings, progress=log, questions=questions, paused=not args.no_paused))
        summary = {m: v for m, v in paused.items() if m != "per_file"}
        print(json.dumps(paused if args.json else summary, ensure_ascii=False))
        return 0
    if args.memory_turns is not None:
        from voicechat.benchmark.memory_run import run_memory

        memory = asyncio.run(run_memory(settings, questions, turns=args.memory_turns, progress=log))
        print(json.dumps(memory) if args.json else "\n".join(f"{k}: {v}" for k, v in memory.items()))
        return 0 if memory["replies"] else 1
    result = asyncio.run(
        run_benchmark(settings, questions, rounds=args.rounds, progress=log, paused=not args.no_paused)
    )
    if args.write_docs:
        from voicechat.benchmark.report import write_docs

        write_docs(result, Path(args.write_docs), args.docs_label)
    if args.json:
        print(json.dumps({k: v for k, v in result.items()}, ensure_ascii=False))
    else:
        print(table(result))
    return 0 if result["turns"] else 1


def _realtime(args: argparse.Namespace, questions: list[Path], log: Any) -> int:
    from voicechat.benchmark.realtime_report import table as realtime_table
    from voicechat.benchmark.realtime_report import write_docs as write_realtime_docs
    from voicechat.benchmark.realtime_run import run_realtime

    if args.paused_replay or args.memory_turns is not None:
        print("error: --llm realtime measures voice-to-voice and the paused set in real time only", file=sys.stderr)
        return 2
    result = asyncio.run(
        run_realtime(
            questions,
            rounds=args.rounds,
            delay_s=args.provider_delay,
            transcript_delay_s=args.transcript_delay,
            paused=not args.no_paused,
            progress=log,
        )
    )
    if args.write_docs:
        write_realtime_docs(result, Path(args.write_docs), args.docs_label or "realtime")
    print(json.dumps(result, ensure_ascii=False) if args.json else realtime_table(result))
    return 0 if all(v["turns"] for v in result["voice_to_voice_ms"].values()) else 1


def _capacity(args: argparse.Namespace, questions: list[Path], log: Any) -> int:
    from voicechat.benchmark.capacity_run import run_capacity

    if args.sessions < 1:
        print("error: --sessions needs at least 1", file=sys.stderr)
        return 2
    if args.replicas is not None:
        return _host_capacity(args, questions, log)
    result = run_capacity(
        args.sessions, questions, level_seconds=args.level_seconds, progress=log, end_of_turn=args.end_of_turn
    )
    if args.write_docs:
        from voicechat.benchmark.capacity_report import write_docs as write_capacity_docs

        write_capacity_docs(result, Path(args.write_docs))
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        keys = (
            "max_sessions_50ms",
            "cpu_per_session_pct",
            "added_p95_ms",
            "rss_per_session_mb",
            "transport_sessions_per_core",
            "provider_requests_per_turn",
            "stt_audio_billed_ratio",
            "bottleneck",
        )
        print("\n".join(f"{k}: {result[k]}" for k in keys))
    return 0 if result["levels"][0]["turns"] else 1


def _host_capacity(args: argparse.Namespace, questions: list[Path], log: Any) -> int:
    from voicechat.benchmark.host_run import run_host_capacity
    from voicechat.streamlit.speech_transport import enabled_by_env

    if args.replicas < 1:
        print("error: --replicas needs at least 1 (one replica process per core is the usual start)", file=sys.stderr)
        return 2
    result = run_host_capacity(
        args.sessions,
        questions,
        args.replicas,
        level_seconds=args.level_seconds,
        progress=log,
        end_of_turn=args.end_of_turn,
        speech_transport=enabled_by_env(),  # VOICECHAT_SPEECH_TRANSPORT=0: aiortc's own, as before
    )
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        keys = (
            "replicas",
            "speech_transport",
            "max_sessions_50ms",
            "cpu_per_session_pct",
            "cpu_bound_sessions",
            "added_p95_ms",
            "bottleneck",
        )
        print("\n".join(f"{k}: {result[k]}" for k in keys))
    return 0 if result["levels"][0]["turns"] else 1


def table(r: dict[str, Any]) -> str:
    from voicechat.benchmark.machine import describe

    v, st = r["voice_to_voice_ms"], r["stages_ms"]
    rows = [
        *([("machine", describe(r["machine"]))] if "machine" in r else []),
        ("voice-to-voice p50 / p95 / max", f"{v.get('p50')} / {v.get('p95')} / {v.get('max')} ms"),
        ("sequential pipeline p50", f"{r['sequential_ms'].get('p50')} ms"),
        ("sequential_ratio (median per turn)", f"{r['sequential_ratio']}"),
        *[(f"  {k}", f"{val} ms") for k, val in st.items()],
        ("overhead (median)", f"{r['overhead_ms']} ms"),
        ("frame path realtime factor", f"{r['frame_path_realtime_factor']}x"),
        ("rss peak / growth", f"{r['rss_mb']} MB / {r['rss_growth_mb']} MB"),
        ("turns measured", str(r["turns"])),
    ]
    eot = r.get("end_of_turn") or {}
    if eot:
        rows += [
            (
                f"end of turn {m}: v2v p50 / eot p50",
                f"{eot[m]['voice_to_voice_ms'].get('p50')} / {eot[m]['eot_ms_p50']} ms",
            )
            for m in END_OF_TURN_MODES
        ]
        rows.append(
            ("semantic / silence v2v (p50 ratio, paired)", f"{eot.get('p50_ratio')}, {eot.get('paired_ratio')}")
        )
        for m in ("semantic", "silence"):
            rows += [
                (f"  {m} {kind}: v2v p50 / eot p50", f"{k['v2v_p50']} / {k['eot_p50']} ms ({k['turns']} turns)")
                for kind, k in eot[m].get("per_kind", {}).items()
            ]
            rows.append((f"  {m}: resumed (released, then the user went on)", str(eot[m].get("resumed", 0))))
    for mode, p in (r.get("paused_speech") or {}).items():
        if mode != "per_file":
            rows.append(
                (
                    f"paused speech {mode}: false_cutoffs / pauses_total",
                    f"{p['false_cutoffs']} / {p['pauses_total']} ({p['false_cutoff_rate']}), "
                    f"resumed {p.get('resumed', 0)} (reply heard first: at most {p.get('resumed_heard_ms_max')} ms), "
                    f"{p.get('speaker', 'new')} speaker",
                )
            )
    width = max(len(a) for a, _ in rows)
    return "\n".join(f"{a:<{width}}  {b}" for a, b in rows)
