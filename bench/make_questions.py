"""Make the bundled benchmark questions: Piper and espeak-ng speech at several sample rates.

Run from the project root: ``python bench/make_questions.py``. Writes 16-bit WAVs with
0.3 s of silence before the question (and none after: the benchmark adds the silence).
"""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from voicechat.audio import float_to_int16, read_audio, write_wav
from voicechat.tts.local import PiperTTS

OUT = Path(__file__).resolve().parent.parent / "voicechat" / "bench" / "questions"
QUESTIONS = [
    ("piper", 48000, "What is the capital of Italy?"),
    ("piper", 16000, "How many days are there in a week?"),
    ("piper", 44100, "Who wrote Romeo and Juliet?"),
    ("piper", 22050, "Can you tell me a fun fact about cats?"),
    ("espeak", 16000, "What is two plus two?"),
    ("espeak", 48000, "What color is the sky?"),
]


def piper(text: str, voice: PiperTTS) -> tuple[np.ndarray, int]:
    async def run() -> list[np.ndarray]:
        return [c async for c in voice.synthesize(text)]

    return np.concatenate(asyncio.run(run())), voice.sample_rate


def espeak(text: str) -> tuple[np.ndarray, int]:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "e.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "160", "-w", str(path), text], check=True)
        return float_to_int16(read_audio(path, 22050)), 22050


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    voice = PiperTTS(speed=1.0)
    for i, (engine, rate, text) in enumerate(QUESTIONS):
        pcm, src_rate = piper(text, voice) if engine == "piper" else espeak(text)
        with tempfile.TemporaryDirectory() as d:
            src = Path(d) / "src.wav"
            write_wav(src, np.concatenate([np.zeros(int(src_rate * 0.3), np.int16), pcm]), src_rate)
            dst = OUT / f"q{i + 1}_{engine}_{rate}.wav"
            subprocess.run(["sox", str(src), "-r", str(rate), "-b", "16", str(dst)], check=True)
        print(dst.name, text)


if __name__ == "__main__":
    main()
