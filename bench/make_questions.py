"""Make the benchmark kit's recordings (bench_kit/): Piper and espeak-ng speech at several sample rates.

Run from the project root: ``python bench/make_questions.py``. Writes 16-bit WAVs with
0.3 s of silence before the speech (and none after: the benchmark adds the silence):

- ``questions/``: complete turns, for voice-to-voice latency: questions (``q*``), statements
  (``s*``) and commands (``c*``), as many of each, the new ones at 16 kHz to keep the set small;
- ``paused/``: one speaker turn each, with 0.6–1.5 s pauses where a listener would wait (after
  "and", "the", "for", at commas, after an "um") and monologues of several clauses, for
  ``false_cutoffs``. ``paused/manifest.json`` gives each file's pauses and true end of speech.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from voicechat.audio import float_to_int16, read_audio, write_wav
from voicechat.tts.local import PiperTTS

BENCH = Path(__file__).resolve().parent.parent / "bench_kit" / "voicechat_bench_kit"  # the kit's checkout
OUT = BENCH / "questions"
PAUSED = BENCH / "paused"
LEAD_S = 0.3
# (engine, stored rate, pieces): a float between two texts is a pause in seconds
PAUSED_TURNS: list[tuple[str, int, list[str | float]]] = [
    ("piper", 16000, ["I'd like to book a table for", 1.0, "two people tonight."]),
    ("piper", 48000, ["What is the capital of", 0.8, "France?"]),
    ("piper", 22050, ["Can you tell me about the", 1.2, "history of Rome?"]),
    ("espeak", 16000, ["I went to the store and", 1.0, "bought some apples."]),
    ("piper", 44100, ["Um,", 0.9, "what time is it in Tokyo?"]),
    (
        "piper",
        48000,
        ["It was the best of times,", 0.7, "it was the worst of times,", 0.8, "it was the age of wisdom."],
    ),
    ("espeak", 48000, ["So I was thinking that maybe we could", 1.5, "go to the beach tomorrow."]),
    ("piper", 16000, ["First, open the window,", 0.6, "then close the door,", 0.9, "and turn off the lights."]),
    ("piper", 22050, ["My favourite colours are red and", 1.1, "blue."]),
    ("espeak", 22050, ["Tell me a story about a dragon who", 1.3, "lives in a castle."]),
    (
        "piper",
        44100,
        ["When I was young,", 0.8, "I lived in a small town by the sea,", 1.0, "and every morning I walked to school."],
    ),
    ("piper", 48000, ["Please remind me to call", 0.7, "my mother at six."]),
    ("espeak", 16000, ["Um,", 1.2, "how do I say thank you in", 0.9, "Japanese?"]),
    ("piper", 16000, ["I need a recipe for", 1.0, "chocolate cake, and", 0.8, "it has to be easy."]),
]
QUESTIONS = [
    ("piper", 48000, "What is the capital of Italy?"),
    ("piper", 16000, "How many days are there in a week?"),
    ("piper", 44100, "Who wrote Romeo and Juliet?"),
    ("piper", 22050, "Can you tell me a fun fact about cats?"),
    ("espeak", 16000, "What is two plus two?"),
    ("espeak", 48000, "What color is the sky?"),
]
# Finished turns that are not questions: a text model cannot read their end from a "?".
STATEMENTS = [
    ("piper", 16000, "I'd like to book a table for two."),
    ("espeak", 16000, "I just got back from a trip to Spain."),
    ("piper", 16000, "My sister is coming to visit next week."),
    ("espeak", 16000, "I think it's going to rain today."),
    ("piper", 16000, "I'm looking for a good book to read."),
    ("espeak", 16000, "We had pasta for dinner last night."),
]
COMMANDS = [
    ("piper", 16000, "Tell me a joke."),
    ("espeak", 16000, "Set a timer for ten minutes."),
    ("piper", 16000, "Give me a word that rhymes with cat."),
    ("espeak", 16000, "Turn off the lights in the kitchen."),
    ("piper", 16000, "Play some relaxing music."),
    ("espeak", 16000, "Name three kinds of fruit."),
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


def _trim(pcm: np.ndarray) -> np.ndarray:
    """Cut the synthesiser's own leading and trailing silence, so each pause is exactly as written."""
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > 650)  # about -34 dBFS
    return pcm[loud[0] : loud[-1] + 1] if loud.size else pcm


def _store(pcm: np.ndarray, src_rate: int, dst: Path, rate: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "src.wav"
        write_wav(src, pcm, src_rate)
        subprocess.run(["sox", str(src), "-r", str(rate), "-b", "16", str(dst)], check=True)


def make_paused(voice: PiperTTS) -> None:
    PAUSED.mkdir(parents=True, exist_ok=True)
    manifest = []
    for i, (engine, rate, pieces) in enumerate(PAUSED_TURNS):
        src_rate = voice.sample_rate if engine == "piper" else 22050
        parts = [np.zeros(int(src_rate * LEAD_S), np.int16)]
        for piece in pieces:
            if isinstance(piece, float):
                parts.append(np.zeros(int(src_rate * piece), np.int16))
            else:
                pcm, got = piper(piece, voice) if engine == "piper" else espeak(piece)
                assert got == src_rate
                parts.append(_trim(pcm))
        audio = np.concatenate(parts)
        name = f"p{i + 1:02d}_{engine}_{rate}.wav"
        _store(audio, src_rate, PAUSED / name, rate)
        text = " ".join(p for p in pieces if isinstance(p, str))
        manifest.append(
            {
                "file": name,
                "text": text,
                "pauses": sum(isinstance(p, float) for p in pieces),
                "speech_end_s": round(len(audio) / src_rate, 3),
            }
        )
        print(name, pieces)
    (PAUSED / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


def main() -> None:
    only = sys.argv[1] if len(sys.argv) > 1 else ""  # "paused" or "questions": remake one set; "new": add missing
    voice = PiperTTS(speed=1.0, deterministic=True)
    if only not in ("questions", "new"):
        make_paused(voice)
    if only == "paused":
        return
    OUT.mkdir(parents=True, exist_ok=True)
    for prefix, turns in (("q", QUESTIONS), ("s", STATEMENTS), ("c", COMMANDS)):
        for i, (engine, rate, text) in enumerate(turns):
            dst = OUT / f"{prefix}{i + 1}_{engine}_{rate}.wav"
            if only == "new" and dst.exists():
                continue  # the files already bundled stay byte for byte
            pcm, src_rate = piper(text, voice) if engine == "piper" else espeak(text)
            _store(np.concatenate([np.zeros(int(src_rate * LEAD_S), np.int16), pcm]), src_rate, dst, rate)
            print(dst.name, text)


if __name__ == "__main__":
    main()
