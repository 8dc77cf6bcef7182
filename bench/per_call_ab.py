"""One call's CPU, engine + WebRTC transport, for this code against a baseline, in one run.

    python bench/per_call_ab.py [--baseline-tree DIR [--stock]] [--rounds N] [--low 2] [--high 12] [--seconds 15]
                                [--end-of-turn semantic]

Each round runs, in one replica worker process of ``voicechat bench --replicas`` (engines and their
calls' aiortc media on one loop, the OpenAI-format path against the loopback provider), ``--low``
and then ``--high`` sessions for every variant, the variants alternating. CPU per call is the slope
(cores at high − cores at low) / (high − low): process CPU time, which other work on a shared
machine does not inflate.

Variants: without ``--baseline-tree``, this code with aiortc's own transport and with
:mod:`voicechat.streamlit.speech_transport`. With ``--baseline-tree DIR`` (a checkout of the code to
compare with, e.g. ``git archive e8a1400 | tar -x -C DIR``), the workers of the first two variants
import ``voicechat`` from DIR (``PYTHONPATH`` and the working directory, which ``python -m``
puts first on the path; the figures are meaningless if a worker imports the wrong tree, so the
script prints where each variant's ``voicechat`` comes from): the baseline as it ships (speech-tuned), then this
code as it ships; ``--stock`` adds the baseline with aiortc's own transport first. Prints the medians, the ratios and
the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline-tree", type=Path, help="source tree of the code to compare with")
    ap.add_argument("--stock", action="store_true", help="also the baseline with aiortc's own transport")
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

    here = str(Path(__file__).resolve().parents[1])
    if args.baseline_tree is not None:
        base = str(args.baseline_tree.resolve())
        if not (args.baseline_tree / "voicechat" / "benchmark" / "host_run.py").is_file():
            raise SystemExit(f"{base} holds no voicechat/benchmark/host_run.py: pass a checkout of the project")
        variants = {"baseline, aiortc's own": (base, False)} if args.stock else {}
        variants.update({"baseline": (base, True), "this code": (here, True)})
    else:
        variants = {"aiortc's own": (here, False), "speech-tuned": (here, True)}
    questions = [str(p) for p in default_questions()]
    per_call: dict[str, list[float]] = {name: [] for name in variants}
    for name, (tree, _) in variants.items():
        where = subprocess.run(
            [sys.executable, "-c", "import voicechat; print(voicechat.__file__)"],
            cwd=tree,
            env={**os.environ, "PYTHONPATH": tree},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if not where.startswith(tree):
            raise SystemExit(f"{name}: the workers would import {where}, not the tree {tree}")
        print(f"{name}: voicechat from {where}")
    with provider_process() as url:
        for r in range(args.rounds):
            for name, (tree, tuned) in variants.items():
                os.environ["PYTHONPATH"] = tree  # the replica workers (python -m …) import voicechat from here
                os.chdir(tree)
                job = {"base_url": url, "end_of_turn": args.end_of_turn, "questions": questions}
                job["speech_transport"] = tuned
                levels = [run_host_level(n, 1, job, args.seconds, None) for n in (args.low, args.high)]
                cores = [lv["cores_used"] for lv in levels]
                per_call[name].append((cores[1] - cores[0]) / (args.high - args.low))
                print(
                    f"round {r + 1} {name}: cores {cores}, turns {[lv['turns'] for lv in levels]} -> "
                    f"{per_call[name][-1] * 100:.2f} % of a core per call"
                )
    med = {k: statistics.median(v) for k, v in per_call.items()}
    last = list(med)[-1]
    ratios = {f"{last} / {k}": round(med[last] / med[k], 3) for k in med if k != last}
    print(f"CPU: {cpu_model()} ({cpu_isa()}); end of turn {args.end_of_turn}; medians of {args.rounds} rounds")
    print(json.dumps({"per_call_pct": {k: round(v * 100, 2) for k, v in med.items()}, "ratios": ratios}))


if __name__ == "__main__":
    main()
