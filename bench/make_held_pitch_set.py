"""Make a paused-speech set whose pauses carry continuation prosody, and its one-piece-at-a-time twin.

Run from the project root: ``python bench/make_held_pitch_set.py [out_dir]`` (default
``/tmp/held_pitch_set``; nothing is written to the repo). Writes 16 kHz WAVs, 0.3 s of lead silence:

- ``held/``: each sentence synthesised WHOLE, so each comma is spoken as a comma (espeak-ng raises
  the pitch of the word before it; Piper's joe voice, measured, hardly differs from a sentence's
  end: ``bench/held_pitch_eval.py``); the short silence the synthesiser leaves at each comma is found from the
  frame energy and stretched to the target pause (0.6–1.5 s).
- ``pieces/``: the same sentences cut at the commas, each piece (its comma dropped) synthesised on
  its own and joined with the same pauses, as ``bench/make_questions.py`` makes the bundled set:
  every pause follows a sentence-final fall. (With the comma kept, espeak-ng already gives a
  piece said alone its comma rise.) Same words and pauses: only the prosody before a pause differs.
- ``finished/``: complete turns (questions, statements, commands) said whole, the negatives.

Every sentence is said by every voice (Piper's en_US-joe-medium, espeak-ng, and Festival's kal and slt
where installed), with the same pauses.

Why: the bundled paused set cannot judge an acoustic end-of-turn cue (docs/benchmarks.md, "A cheap
acoustic cue was tried"), because every pause there is preceded by the fall of a finished sentence.
The sentences here are neither in the bundled set nor in ``bench/turn_curve.py``'s tuning set.
``manifest.json`` gives each file's kind, text, the words before each pause and the pauses' lengths.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_questions import LEAD_S, _trim, espeak, piper

from voicechat.audio import SPEECH_RATE, int16_to_float, write_wav

OUT = Path("/tmp/held_pitch_set")
# Festival's two English voices, where installed: kal (diphones, intonation from Festival's CART/ToBI
# rules) and slt (HTS, pitch learnt from a woman's read speech, CMU ARCTIC).
FESTIVAL = {"kal": "kal_diphone", "slt": "cmu_us_slt_arctic_hts"}
# every sentence in every voice: a voice's effect is then not a sentence's
ENGINES = ("piper", "espeak", *(FESTIVAL if shutil.which("text2wave") else ()))
MIN_COMMA_S = 0.11  # a comma's silence here is 120–330 ms; a stop's closure up to 100 ms
PAUSES_S = [0.6, 0.8, 1.0, 1.2, 1.5, 0.7, 0.9, 1.1, 1.3]  # cycled over the set's pauses in order
PAUSED = [  # a pause at every comma
    "I called my brother yesterday, and he said he would come for dinner.",
    "The weather was lovely, so we walked along the river.",
    "After the concert, we went out for a late supper.",
    "I bought bread, cheese, and a bottle of olive oil.",
    "My car broke down this morning, so I took the bus to work.",
    "If it rains tomorrow, can we move the picnic to Sunday?",
    "Well, I think the blue one looks better.",
    "We stayed in a little hotel, it had a view of the mountains.",
    "Turn left at the bakery, walk two blocks, and you will see the library.",
    "I finished the report, I sent it to my manager, and then I went home.",
    "When you get a moment, could you check my email for me?",
    "The garden needs watering, the grass needs cutting, and the fence needs paint.",
    "Honestly, I have no idea what to buy for her birthday.",
    "She plays the piano, and her sister plays the violin.",
    "Before we leave, let me find my keys.",
    "I read the book last summer, but I never saw the film.",
    "Add two eggs, mix in the flour, and bake it for twenty minutes.",
    "My neighbour has a dog, it barks all night long.",
    "So, what do you think about the new plan?",
    "It started snowing at noon, by evening the roads were closed.",
    "Um, I wanted to ask about my order.",
    "The train was late, so I missed the meeting, and my boss was not happy.",
    "Last year we went to Portugal, this year we are going to Greece.",
    "Open the file, find the second page, and print it for me.",
]
FINISHED = [
    ("question", "Where did I leave my glasses?"),
    ("question", "How long does it take to boil an egg?"),
    ("question", "Is the museum open on Mondays?"),
    ("question", "What time does the bank close?"),
    ("question", "Can dogs eat grapes?"),
    ("question", "Who painted the Mona Lisa?"),
    ("question", "Do you like jazz?"),
    ("question", "Why do cats purr?"),
    ("statement", "I just finished my homework."),
    ("statement", "The kids are asleep now."),
    ("statement", "We adopted a puppy last week."),
    ("statement", "I can't find my umbrella anywhere."),
    ("statement", "The soup is too salty."),
    ("statement", "My flight lands at nine tonight."),
    ("statement", "I started a new job on Monday."),
    ("statement", "It's really cold outside today."),
    ("command", "Call my dentist."),
    ("command", "Turn the volume up."),
    ("command", "Tell me a riddle."),
    ("command", "Add milk to my shopping list."),
    ("command", "Open the garage door."),
    ("command", "Wake me up at seven."),
    ("command", "Describe a sunset."),
    ("command", "Explain how rainbows form."),
]


def festival(text: str, voice: str) -> tuple[np.ndarray, int]:
    """Festival's ``text2wave`` (Debian: festival, festvox-kallpc16k, festvox-us-slt-hts)."""
    import tempfile
    import wave

    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "t.txt").write_text(text)
        subprocess.run(
            ["text2wave", "-eval", f"(voice_{voice})", str(Path(d) / "t.txt"), "-o", str(Path(d) / "f.wav")],
            check=True,
            capture_output=True,
        )
        with wave.open(str(Path(d) / "f.wav")) as w:
            return np.frombuffer(w.readframes(w.getnframes()), np.int16), w.getframerate()


def say(text: str, engine: str, voice: Any) -> np.ndarray:
    """Float audio at 16 kHz, the synthesiser's own lead and tail silence cut."""
    from voicechat.audio import read_audio

    if engine in FESTIVAL:
        pcm, rate = festival(text, FESTIVAL[engine])
    else:
        pcm, rate = piper(text, voice) if engine == "piper" else espeak(text)
    pcm = _trim(pcm)
    if rate == SPEECH_RATE:
        return int16_to_float(pcm)
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        write_wav(Path(d) / "a.wav", pcm, rate)
        return read_audio(Path(d) / "a.wav", SPEECH_RATE)


def quiet_runs(audio: np.ndarray, floor_db: float = 40.0, min_ms: int = 50) -> list[tuple[int, int]]:
    """Stretches (start, end sample) at least ``min_ms`` long whose 10 ms frames are ``floor_db``
    below the loudest frame, inside the speech: where the synthesiser stopped voicing."""
    hop = SPEECH_RATE // 100
    n = len(audio) // hop
    db = 10 * np.log10(np.mean(audio[: n * hop].reshape(n, hop) ** 2, axis=1) + 1e-12)
    quiet = db < db.max() - floor_db
    runs, i = [], 0
    while i < n:
        if quiet[i]:
            j = i
            while j < n and quiet[j]:
                j += 1
            if j - i >= min_ms // 10 and i > 0 and j < n:
                runs.append((i * hop, j * hop))
            i = j
        else:
            i += 1
    return runs


def stretch_commas(audio: np.ndarray, text: str, pauses: list[float]) -> tuple[np.ndarray, list[float]] | None:
    """Widen the synthesiser's silence at each comma to its pause; ``None`` when the commas cannot be
    told from other gaps: unless exactly one quiet run of ``MIN_COMMA_S`` or more falls per comma (some
    voices do not pause at every comma; Festival skips "First,"). Returns the audio and where each
    pause starts. The run's first and last 20 ms stay, the rest becomes digital silence of the
    pause's length."""
    runs = quiet_runs(audio)
    k = text.count(",")
    commas = [r for r in runs if r[1] - r[0] >= MIN_COMMA_S * SPEECH_RATE]
    if len(commas) != k:
        return None
    edge = SPEECH_RATE // 50
    parts, starts, at = [], [], 0
    for (a, b), p in zip(commas, pauses, strict=True):
        parts.append(audio[at : a + edge])
        starts.append((sum(len(x) for x in parts)) / SPEECH_RATE)
        parts.append(np.zeros(int(p * SPEECH_RATE) - 2 * edge, np.float32))
        at = b - edge
    parts.append(audio[at:])
    return np.concatenate(parts), starts


def _write(path: Path, audio: np.ndarray) -> None:
    lead = np.zeros(int(LEAD_S * SPEECH_RATE), np.float32)
    pcm = np.clip(np.concatenate([lead, audio]) * 32767, -32768, 32767).astype(np.int16)
    write_wav(path, pcm, SPEECH_RATE)


def make(out: Path) -> None:
    from voicechat.tts.local import PiperTTS

    voice = PiperTTS(speed=1.0, deterministic=True)
    for sub in ("held", "pieces", "finished"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    manifest: list[dict[str, Any]] = []
    n_pause = 0
    for i, text in enumerate(PAUSED):
        pieces = [p.strip() + "," for p in text.split(",")]
        pieces[-1] = pieces[-1][:-1]
        pauses = [PAUSES_S[(n_pause + j) % len(PAUSES_S)] for j in range(len(pieces) - 1)]
        n_pause += len(pauses)
        for engine in ENGINES:
            name = f"h{i + 1:02d}_{engine}.wav"
            held = stretch_commas(say(text, engine, voice), text, pauses)
            if held is None:
                print(f"{name}: not one quiet run per comma, skipped: {text}")
                continue
            _write(out / "held" / name, held[0])
            joined: list[np.ndarray] = []
            for piece, p in zip(pieces, [*pauses, 0.0], strict=True):  # said alone, a piece ends as a sentence
                joined += [say(piece.rstrip(","), engine, voice), np.zeros(int(p * SPEECH_RATE), np.float32)]
            _write(out / "pieces" / name, np.concatenate(joined))
            manifest.append(
                {
                    "file": name,
                    "kind": "paused",
                    "engine": engine,
                    "text": text,
                    "before": pieces[:-1],
                    "pauses": pauses,
                }
            )
            print(name, pauses, [round(s, 2) for s in held[1]], text, flush=True)
    for i, (kind, text) in enumerate(FINISHED):
        for engine in ENGINES:
            name = f"f{i + 1:02d}_{kind}_{engine}.wav"
            _write(out / "finished" / name, say(text, engine, voice))
            manifest.append({"file": name, "kind": kind, "engine": engine, "text": text, "before": [], "pauses": []})
            print(name, text, flush=True)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    make(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
