"""Where a spoken turn's time goes: each stage's start and end, in ms after the end of speech.

    python bench/turn_timeline.py [semantic|silence] [--rounds N]

One conversation on the offline stack hears the bundled questions in real time, round after
round, so later turns carry a history (as a real conversation does). For each turn it prints a
line of marks: ``stt>``/``stt<`` (the final transcript), ``cap>``/``cap<`` (live captions),
``score>``/``score<`` (the end-of-turn score), ``llm>`` and ``llm-first`` (reply generation and
its first token), ``eval[cached+new]`` (tokens llama.cpp already held + tokens it had to read),
``tts>``/``tts-first`` (Piper), ``AUDIO`` (first reply frame handed out). Negative times are
before the end of speech: work done while the user was still talking.

It wraps the backends' blocking calls to take the timestamps (nothing else changes) and is a
diagnostic for reading one machine's behaviour, not a benchmark figure: `voicechat bench` is.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from voicechat_bench_kit import QUESTIONS_DIR

MARKS: list[tuple[float, str]] = []


def mark(what: str) -> None:
    MARKS.append((time.perf_counter(), what))


def wrap_call(cls: type, name: str, label: str) -> None:
    original = getattr(cls, name)

    @functools.wraps(original)
    def timed(*args: Any, **kwargs: Any) -> Any:
        mark(label + ">")
        try:
            return original(*args, **kwargs)
        finally:
            mark(label + "<")

    setattr(cls, name, timed)


def wrap_generator(cls: type, name: str, label: str, first: str) -> None:
    original = getattr(cls, name)

    @functools.wraps(original)
    def timed(self: Any, *args: Any) -> Iterator[Any]:
        mark(label + ">")
        seen = False
        for item in original(self, *args):
            if not seen:
                mark(first)
                seen = True
            yield item

    setattr(cls, name, timed)


def instrument(stt: Any, tts: Any) -> None:
    import llama_cpp

    from voicechat.llm import line_end, local

    wrap_call(line_end.LineEndScorer, "score", "score")
    wrap_generator(local.LocalChat, "_generate", "llm", "llm-first")
    wrap_call(type(stt), "transcribe_sync", "stt")
    wrap_call(type(stt), "_interim_sync", "cap")
    wrap_generator(type(tts), "_produce", "tts", "tts-first")
    original_eval: Callable[..., Any] = llama_cpp.Llama.eval

    def counted_eval(self: Any, tokens: Any) -> Any:
        mark(f"eval[{self.n_tokens}+{len(tokens)}]")
        return original_eval(self, tokens)

    llama_cpp.Llama.eval = counted_eval  # type: ignore[method-assign]


async def run(mode: str, rounds: int) -> None:
    from voicechat.audio import iter_wav_frames
    from voicechat.backends import make_llm, make_stt, make_tts
    from voicechat.config import Settings
    from voicechat.conversation_factory import create_conversation
    from voicechat.events import AudioOut

    s = Settings.load({"stt": "local", "llm": "local", "tts": "local", "end_of_turn": mode}, dotenv_path=None)
    stt, llm, tts = make_stt(s), make_llm(s), make_tts(s)
    instrument(stt, tts)
    conv = create_conversation(s, stt=stt, llm=llm, tts=tts, output_rate=48000)
    await conv.warm_up()
    questions = sorted(QUESTIONS_DIR.glob("*.wav"))
    for turn, q in enumerate(questions * rounds, 1):
        frames, rate = iter_wav_frames(q)
        levels = [float(np.sqrt(np.mean((f.astype(np.float64) / 32768) ** 2))) for f in frames]
        last_voiced = max(i for i, v in enumerate(levels) if v > 0.003)
        MARKS.clear()
        t0, eos, heard = time.perf_counter(), 0.0, False

        def take() -> None:
            nonlocal heard
            for e in conv.drain():
                if isinstance(e, AudioOut) and not heard:
                    heard = True
                    mark("AUDIO")

        for i, f in enumerate(frames):
            await conv.feed(f, rate)
            if i == last_voiced:
                eos = time.perf_counter()
                mark("EOS")
            await asyncio.sleep(max(0.0, t0 + (i + 1) * len(f) / rate - time.perf_counter()))
            take()
        await conv.end_of_input()
        while not heard:
            await asyncio.sleep(0.005)
            take()
        await conv.wait_reply()
        conv.playback_done()
        await asyncio.sleep(0.3)
        conv.drain()
        print(f"turn {turn:2d} {q.name}: " + " ".join(f"{w}@{(t - eos) * 1000:.0f}" for t, w in MARKS), flush=True)
    await conv.aclose()


def main() -> None:
    from voicechat import tune_process
    from voicechat.turn_policy import END_OF_TURN_MODES

    tune_process()  # measured in a process tuned as the bundled app's is
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", nargs="?", default="semantic", choices=END_OF_TURN_MODES)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    asyncio.run(run(args.mode, args.rounds))


if __name__ == "__main__":
    main()
