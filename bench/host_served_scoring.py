"""The host's capacity with the end of turn scored on llama.cpp's ``llama-server`` on the same host.

    python bench/host_served_scoring.py [--sessions 25] [--replicas 1 2] [--level-seconds 25]
                                        [--llama-server .venv/bin/llama-server] [--json-out FILE]

``voicechat bench --sessions N --replicas R`` with each replica's semantic end of turn asked of one
``llama-server`` (the bundled Gemma 3 270M, one thread, one slot per session so each conversation's
prompt stays cached; ``scripts/build_llama_server.sh`` builds the binary) instead of a model in every
replica: what a deployment that serves the reply model on llama.cpp would run. The server shares
the host's cores, so the latency figures include it; its CPU is sampled after each level and added
to the replicas' for the host's CPU per call (a slight over-count: the sample also takes in the
next level's start-up, when the server idles but for one warm-up score per replica).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from voicechat.benchmark.capacity_report import slope


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=25)
    ap.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--level-seconds", type=float, default=25.0)
    ap.add_argument("--llama-server", metavar="PATH", help="default: the one scripts/build_llama_server.sh built")
    ap.add_argument("--json-out", type=Path, help="also write every run's figures here")
    ap.add_argument("--prime", action="store_true", help="VOICECHAT_LINE_END_PRIME=1: each reply read ahead")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from voicechat_bench_kit import llama_cpp_server

    binary = args.llama_server or llama_cpp_server.llama_server_binary()
    if not binary or not Path(binary).is_file():
        raise SystemExit("no llama-server: build it with bash scripts/build_llama_server.sh")
    import psutil

    from voicechat.benchmark.host_run import run_host_capacity
    from voicechat.benchmark.latency_run import default_questions
    from voicechat.benchmark.machine import cpu_isa, cpu_model
    from voicechat.models import gemma_gguf_path

    questions = list(default_questions())
    runs: dict[str, Any] = {}
    with llama_cpp_server.running(
        gemma_gguf_path(), n_ctx=2048, threads=1, llama_server=binary, slots=args.sessions
    ) as server:
        proc = psutil.Process(server.process.pid)

        def server_cpu_s() -> float:
            t = proc.cpu_times()
            return float(t.user + t.system)

        for replicas in args.replicas:
            marks = [server_cpu_s()]

            def level_done(msg: str, marks: list[float] = marks) -> None:
                if " sessions on " in msg:  # one per level (the sweep's other message is its stop)
                    marks.append(server_cpu_s())
                print(msg, flush=True)

            result = run_host_capacity(
                args.sessions,
                questions,
                replicas,
                level_seconds=args.level_seconds,
                progress=level_done,
                line_end_base_url=server.base_url,
                line_end_prime=args.prime,
            )
            levels = result["levels"]
            server_cores = [(b - a) / lv["seconds"] for a, b, lv in zip(marks, marks[1:], levels, strict=False)]
            ns = [float(lv["sessions"]) for lv in levels]
            host = [lv["cores_used"] + s for lv, s in zip(levels, server_cores, strict=True)]
            result["scoring_server_cores"] = [round(c, 3) for c in server_cores]
            result["host_cpu_per_call_pct"] = round(slope(ns, host) * 100, 2)
            result["scoring_server_cpu_per_call_pct"] = round(slope(ns, server_cores) * 100, 2)
            primed = "primed" if args.prime else "not primed"
            runs[f"R{replicas}_scored_on_llama_server_{primed.replace(' ', '_')}"] = result
            print(f"R = {replicas} on {cpu_model()} ({cpu_isa()}), the end of turn scored on llama-server, {primed}:")
            print("sessions | turns | v2v p50 / p95 ms | added p95 ms | eot wait p95 | score p95 | cores + server's")
            for lv, s in zip(levels, server_cores, strict=True):
                added = result["added_p95_ms"][str(lv["sessions"])]
                print(
                    f"{lv['sessions']} | {lv['turns']} | {lv['v2v_p50_ms']} / {lv['v2v_p95_ms']} | {added} | "
                    f"{lv.get('eot_p95_ms')} | {lv.get('line_end_p95_ms')} | {lv['cores_used']} + {s:.2f}"
                )
            print(
                f"max_sessions_50ms {result['max_sessions_50ms']}; CPU per call: replicas "
                f"{result['cpu_per_session_pct']} %, the server {result['scoring_server_cpu_per_call_pct']} %, "
                f"host {result['host_cpu_per_call_pct']} % of a core; bottleneck {result['bottleneck']['kind']}: "
                f"{result['bottleneck']['detail']}",
                flush=True,
            )
    if args.json_out:
        args.json_out.write_text(json.dumps(runs, indent=1) + "\n")
    print("done")


if __name__ == "__main__":
    main()
