"""One call's CPU, engine + WebRTC transport, before and after the speech-tuned transport, in one run.

    python bench/per_call_ab.py [--rounds N] [--low 2] [--high 12] [--seconds 15] [--end-of-turn semantic]

Each round runs, in one replica worker process of ``voicechat bench --replicas`` (engines and their
calls' aiortc media on one loop, the OpenAI-format path against the loopback provider), ``--low``
and then ``--high`` sessions, with aiortc's own transport (A) and with
:mod:`voicechat.streamlit.speech_transport` (B), A and B alternating. CPU per call is the slope
(cores at high − cores at low) / (high − low): process CPU time, which other work on a shared
machine does not inflate. Prints the medians, the ratio and the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--low", type=int, default=2)
    ap.add_argument("--high", type=int, default=12)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--end-of-turn", choices=("semantic", "silence"), default="semantic")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from voicechat.benchmark.host_run import run_host_level
    from voicechat.benchmark.latency_run import default_questions
    from voicechat.benchmark.loopback_provider import provider_process
    from voicechat.benchmark.machine import cpu_isa, cpu_model

    questions = [str(p) for p in default_questions()]
    per_call: dict[str, list[float]] = {"aiortc's own": [], "speech-tuned": []}
    with provider_process() as url:
        for r in range(args.rounds):
            for name, tuned in (("aiortc's own", False), ("speech-tuned", True)):
                job = {
                    "base_url": url,
                    "end_of_turn": args.end_of_turn,
                    "questions": questions,
                    "speech_transport": tuned,
                }
                cores = [run_host_level(n, 1, job, args.seconds, None)["cores_used"] for n in (args.low, args.high)]
                per_call[name].append((cores[1] - cores[0]) / (args.high - args.low))
                print(f"round {r + 1} {name}: cores {cores} -> {per_call[name][-1] * 100:.2f} % of a core per call")
    med = {k: statistics.median(v) for k, v in per_call.items()}
    a, b = med["aiortc's own"], med["speech-tuned"]
    print(f"CPU: {cpu_model()} ({cpu_isa()}); end of turn {args.end_of_turn}; medians of {args.rounds} rounds")
    print(json.dumps({"per_call_pct": {k: round(v * 100, 2) for k, v in med.items()}, "ratio": round(b / a, 3)}))


if __name__ == "__main__":
    main()
