"""What llama.cpp decoding beside Piper costs the first audio of a reply, on this machine's cores.

    python bench/first_piece_contention.py [--rounds N]

A reply's first piece (four words) is handed to Piper while llama.cpp goes on writing the rest.
On two cores the two models fight over them: this prints Piper's time to the first audio of a
four-word piece alone and with Gemma decoding beside it, and Gemma's per-token time alone and
beside Piper, as medians of ``--rounds`` runs, with the ratio. It is why
:mod:`voicechat.reply` pauses the LLM until the first piece has audio. Names the CPU it ran on.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from typing import Any

PIECE = "The tallest mountain in"


def main() -> None:
    from voicechat import tune_process

    tune_process()  # measured in a process tuned as the bundled app's is
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=8)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from voicechat.benchmark.machine import machine_report
    from voicechat.llm.local import LocalChat
    from voicechat.tts.local import PiperTTS

    tts = PiperTTS()
    with LocalChat().using_model() as llm:  # the model as the engine loads it (threads, batches)
        run(tts, llm, args.rounds, machine_report(None).get("cpu_model", "unknown CPU"))


def run(tts: Any, llm: Any, rounds: int, cpu: str) -> None:
    prompt = llm.tokenize(b"User: Tell me a long story about a dragon.\nAssistant:", add_bos=True)

    def first_audio_ms() -> float:
        t0 = time.perf_counter()
        next(iter(tts._produce(PIECE)))
        return (time.perf_counter() - t0) * 1000.0

    def decode(n: int, out: list[float]) -> None:
        llm.reset()
        llm.eval(prompt)
        token = int(llm.scores[llm.n_tokens - 1].argmax())
        for _ in range(n):
            t0 = time.perf_counter()
            llm.eval([token])
            out.append((time.perf_counter() - t0) * 1000.0)
            token = int(llm.scores[llm.n_tokens - 1].argmax())

    for _ in range(3):
        first_audio_ms()
    piper_alone = [first_audio_ms() for _ in range(rounds)]
    decode_alone: list[float] = []
    for _ in range(3):
        decode(10, decode_alone)
    piper_beside, decode_beside = [], []
    for _ in range(rounds):
        steps: list[float] = []
        writer = threading.Thread(target=decode, args=(14, steps))
        writer.start()
        time.sleep(0.05)  # the LLM is mid-reply when the piece arrives
        piper_beside.append(first_audio_ms())
        writer.join()
        decode_beside += steps[2:]
    m = statistics.median
    print(f"CPU: {cpu}, {os.cpu_count()} cores; llama.cpp threads {llm.n_threads}")
    print(
        f"Piper first audio of {PIECE!r}: alone {m(piper_alone):.0f} ms, beside decoding "
        f"{m(piper_beside):.0f} ms (x{m(piper_beside) / m(piper_alone):.2f})"
    )
    print(f"Gemma decode: alone {m(decode_alone):.1f} ms/token, beside Piper {m(decode_beside):.1f} ms/token")


if __name__ == "__main__":
    main()
