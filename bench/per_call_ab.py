"""One call's CPU, engine + WebRTC transport, for this code against a baseline, in one run.

    python bench/per_call_ab.py [--baseline-tree DIR [--stock]] [--rounds N] [--low 2] [--high 12] [--seconds 15]
                                [--end-of-turn semantic] [--score-on-server [--llama-server PATH]]

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
the CPU. ``--score-on-server`` adds this code with the end of turn scored on llama-cpp-python's
OpenAI-compatible server (``VOICECHAT_LINE_END_BASE_URL``; one thread, the bundled Gemma): the
replica's CPU per call without the scoring model, and that server's own CPU per call apart.
``--llama-server PATH`` serves the score from llama.cpp's own ``llama-server`` binary instead
(``scripts/build_llama_server.sh`` builds it), one slot per session of ``--high``: each session's
prompt stays cached in its slot, and concurrent scores share a batch.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path


class ScoringServer:
    """A llama.cpp OpenAI-compatible server with the bundled Gemma, and its process CPU."""

    def __init__(self, proc: subprocess.Popen[bytes] | None, url: str | None) -> None:
        self.proc, self.url = proc, url

    def cpu_s(self) -> float:
        if self.proc is None:
            return 0.0
        import psutil

        t = psutil.Process(self.proc.pid).cpu_times()
        return float(t.user + t.system)


@contextlib.contextmanager
def scoring_server_process(enabled: bool, binary: str | None, slots: int) -> Iterator[ScoringServer]:
    if not enabled:
        yield ScoringServer(None, None)
        return
    from voicechat.models import gemma_gguf_path
    from voicechat_bench_kit import llama_cpp_server

    n_ctx = 2048 if binary else 4096  # per slot for llama-server; llama-cpp-python's one sequence
    gguf = gemma_gguf_path()
    with llama_cpp_server.running(gguf, n_ctx=n_ctx, threads=1, llama_server=binary, slots=slots) as server:
        yield ScoringServer(server.process, server.base_url)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline-tree", type=Path, help="source tree of the code to compare with")
    ap.add_argument("--stock", action="store_true", help="also the baseline with aiortc's own transport")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--low", type=int, default=2)
    ap.add_argument("--high", type=int, default=12)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--end-of-turn", choices=("semantic", "silence"), default="semantic")
    ap.add_argument(
        "--score-on-server",
        action="store_true",
        help="add this code with the end of turn scored on llama-cpp-python's server (its CPU reported apart)",
    )
    ap.add_argument("--llama-server", metavar="PATH", help="score on this llama-server binary instead")
    ap.add_argument("--prime", action="store_true", help="served: VOICECHAT_LINE_END_PRIME=1 (read each reply ahead)")
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
    served = "this code, scored on the server"
    if args.score_on_server:
        variants[served] = (here, True)
    questions = [str(p) for p in default_questions()]
    per_call: dict[str, list[float]] = {name: [] for name in variants}
    scoring_server: list[float] = []
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
    with (
        provider_process() as url,
        scoring_server_process(args.score_on_server, args.llama_server, args.high) as scorer,
    ):
        for r in range(args.rounds):
            for name, (tree, tuned) in variants.items():
                os.environ["PYTHONPATH"] = tree  # the replica workers (python -m …) import voicechat from here
                os.chdir(tree)
                job = {"base_url": url, "end_of_turn": args.end_of_turn, "questions": questions}
                job["speech_transport"] = tuned
                if name == served:
                    job["line_end_base_url"] = scorer.url
                    job["line_end_prime"] = args.prime
                levels, server_cores = [], []
                for n in (args.low, args.high):
                    before = scorer.cpu_s()
                    levels.append(run_host_level(n, 1, job, args.seconds, None))
                    server_cores.append((scorer.cpu_s() - before) / levels[-1]["seconds"])
                cores = [lv["cores_used"] for lv in levels]
                per_call[name].append((cores[1] - cores[0]) / (args.high - args.low))
                extra = ""
                if name == served:
                    scoring_server.append((server_cores[1] - server_cores[0]) / (args.high - args.low))
                    extra = f"; the scoring server {scoring_server[-1] * 100:.2f} % of a core per call"
                print(
                    f"round {r + 1} {name}: cores {cores}, turns {[lv['turns'] for lv in levels]} -> "
                    f"{per_call[name][-1] * 100:.2f} % of a core per call{extra}"
                )
    if scoring_server:
        print(
            f"the scoring server ({'llama-server' if args.llama_server else 'llama-cpp-python'}): "
            f"{statistics.median(scoring_server) * 100:.2f} % of a core per call"
        )
    med = {k: statistics.median(v) for k, v in per_call.items()}
    ours = [k for k in med if k.startswith("this code")] or [list(med)[-1]]
    ratios = {f"{o} / {k}": round(med[o] / med[k], 3) for o in ours for k in med if k not in ours}
    print(f"CPU: {cpu_model()} ({cpu_isa()}); end of turn {args.end_of_turn}; medians of {args.rounds} rounds")
    print(json.dumps({"per_call_pct": {k: round(v * 100, 2) for k, v in med.items()}, "ratios": ratios}))


if __name__ == "__main__":
    main()
