"""Choose the end-of-turn curve: score every pause of a set of turns once, then replay policies on the scores.

Run from the project root::

    python bench/turn_curve.py tune     # make the tuning set (not bundled) and sweep curves on it
    python bench/turn_curve.py report   # the bundled set: old bands vs the chosen curve

Each file goes through the engine's own detector (Silero, the speculative pause at 64 ms). At every
pause the audio so far is transcribed by the bundled Whisper and scored by ``line_end`` on Gemma,
with an empty history, exactly as the engine's held turn does; the pause's length (to the next voiced
window) is kept. A policy is then judged without the clock: an inner pause is a *false cut-off* when
its wait is no longer than the pause; a turn's wait is the policy's wait at its final pause.
Scores go to ``bench/turn_scores_<set>.json`` so the unit test of the curve reads recorded numbers.

The tuning set has other sentences and voices than the bundled one (questions, statements and
commands, as many of each, and paused turns), so the curve is not chosen on what it is reported on.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from voicechat.audio import read_audio
from voicechat.end_of_turn import RATE, SpeechPause, SpeechResume, TurnConfig, TurnDetector, TurnEnd
from voicechat.turn_policy import TurnPolicy, heard_question

HERE = Path(__file__).resolve().parent
TUNE_TURNS: list[tuple[str, str, list[str | float]]] = [
    ("question", "piper", ["Where is the nearest train station?"]),
    ("question", "espeak", ["How far is the moon from the earth?"]),
    ("question", "piper", ["Do you know any good movies?"]),
    ("question", "espeak", ["What should I cook tonight?"]),
    ("question", "piper", ["Why is the ocean salty?"]),
    ("question", "espeak", ["Is it going to snow tomorrow?"]),
    ("statement", "piper", ["I had a really long day at work."]),
    ("statement", "espeak", ["The meeting got moved to Thursday."]),
    ("statement", "piper", ["I want to learn how to play the guitar."]),
    ("statement", "espeak", ["My phone battery died this morning."]),
    ("statement", "piper", ["I'm going to the gym after lunch."]),
    ("statement", "espeak", ["Our cat knocked over a glass of water."]),
    ("command", "piper", ["Tell me something interesting."]),
    ("command", "espeak", ["Remind me to buy milk."]),
    ("command", "piper", ["Spell the word necessary."]),
    ("command", "espeak", ["Translate hello into French."]),
    ("command", "piper", ["Read me the news."]),
    ("command", "espeak", ["Count to five."]),
    ("statement", "piper", ["I had a really long day at", 0.9, "the office."]),
    ("statement", "espeak", ["The meeting got moved to", 1.0, "Thursday afternoon."]),
    ("command", "piper", ["Remind me to buy", 0.8, "milk and eggs."]),
    ("question", "espeak", ["Where is the nearest", 1.1, "train station?"]),
    ("statement", "piper", ["I was going to say,", 0.8, "never mind, it's fine."]),
    ("statement", "espeak", ["We went hiking,", 0.9, "and then we had a picnic."]),
    ("command", "piper", ["Tell me something about", 1.2, "the pyramids."]),
    ("statement", "espeak", ["I think that", 0.7, "we should leave early."]),
    ("statement", "piper", ["Yesterday I saw a movie,", 1.0, "it was really good."]),
    ("question", "espeak", ["Can you help me with", 0.9, "my homework?"]),
    ("command", "piper", ["Make a list of", 0.8, "things to pack,", 0.9, "for a weekend trip."]),
    ("statement", "espeak", ["My brother lives in", 1.0, "Canada, and he", 0.8, "works as a nurse."]),
]


def make_tune_set(folder: Path) -> list[dict[str, Any]]:
    """The tuning set at 16 kHz in ``folder``, with each file's kind and true end of speech."""
    from make_questions import LEAD_S, _trim, espeak, piper

    from voicechat.audio import write_wav
    from voicechat.tts.local import PiperTTS

    voice = PiperTTS(speed=1.0, deterministic=True)
    out = []
    for i, (kind, engine, pieces) in enumerate(TUNE_TURNS):
        parts: list[np.ndarray] = []
        rate = 0
        for piece in pieces:
            if isinstance(piece, str):
                pcm, rate = piper(piece, voice) if engine == "piper" else espeak(piece)
                parts.append(_trim(pcm))
            else:
                parts.append(np.zeros(int(piece * (rate or 22050)), np.int16))
        audio = np.concatenate([np.zeros(int(LEAD_S * rate), np.int16), *parts])
        path = folder / f"t{i + 1:02d}_{kind}_{engine}.wav"
        write_wav(path, audio, rate)
        out.append({"file": str(path), "kind": kind, "pauses": sum(not isinstance(p, str) for p in pieces)})
    return out


def bundled_set() -> list[dict[str, Any]]:
    from voicechat.benchmark.latency_run import default_questions, kind_of
    from voicechat.benchmark.paused_run import PAUSED_DIR, load_manifest

    out = [{"file": str(p), "kind": kind_of(p.name), "pauses": 0} for p in default_questions()]
    out += [{"file": str(PAUSED_DIR / e["file"]), "kind": "paused", "pauses": e["pauses"]} for e in load_manifest()]
    return out


async def score_pauses(files: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every pause of every file: its length, the words before it and their ``line_end``."""
    from voicechat.backends import make_llm, make_stt
    from voicechat.config import Settings
    from voicechat.llm.base import Message
    from voicechat.llm.line_end import LineEndScorer
    from voicechat.vad import SileroVAD

    s = Settings.load({"stt": "local", "llm": "local", "tts": "local"})
    stt, llm = make_stt(s), make_llm(s)
    scorer = LineEndScorer(llm)  # type: ignore[arg-type]
    history = [Message("system", s.prompt())]
    records = []
    for f in files:
        audio = np.concatenate([read_audio(f["file"], RATE), np.zeros(RATE * 3, np.float32)])
        det = TurnDetector(SileroVAD(), TurnConfig(end_of_turn_ms=2500, pause_ms=s.speculative_pause_ms))
        events = [e for i in range(0, len(audio), 320) for e in det.feed(audio[i : i + 320])]
        pauses = []
        for k, ev in enumerate(events):
            if not isinstance(ev, SpeechPause):
                continue
            nxt = next((e for e in events[k + 1 :] if isinstance(e, (SpeechResume, TurnEnd))), None)
            final = not isinstance(nxt, SpeechResume)
            text = await stt.transcribe(ev.audio, language=s.language)
            score = await scorer.ascore(history, text)
            gap_ms = None if final else round((nxt.at - ev.last_voiced) / RATE * 1000.0, 1)  # type: ignore[union-attr]
            pauses.append(
                {"text": text, "line_end": score, "question": heard_question(text), "gap_ms": gap_ms, "final": final}
            )
        rec = {"file": Path(f["file"]).name, "kind": f["kind"], "pauses": f["pauses"], "scored": pauses}
        print(rec["file"], [(p["text"], p["line_end"], p["gap_ms"]) for p in pauses], flush=True)
        records.append(rec)
    return records


class OldBands(TurnPolicy):
    """The policy before the curve: 200 ms for a heard question ≥ 0.3 or anything ≥ 0.95, else the ceiling."""

    def wait_for(self, line_end: float | None, *, question: bool = False, scoring: bool = False) -> float:
        if line_end is None:
            return super().wait_for(line_end, question=question, scoring=scoring)
        return self.early_ms if line_end >= 0.95 or (question and line_end >= 0.3) else self.ceiling_ms


def judge(policy: TurnPolicy, records: list[dict[str, Any]]) -> dict[str, Any]:
    """False cut-offs on inner pauses and the wait of every finished turn, per kind (no clock)."""
    cuts = inner = 0
    waits: dict[str, list[float]] = {}
    for rec in records:
        for p in rec["scored"]:
            wait = policy.wait_for(p["line_end"], question=p["question"])
            if p["final"]:
                waits.setdefault(rec["kind"], []).append(wait)
            elif p["gap_ms"] >= 250:  # a pause a listener would notice (shorter ones never reach the floor)
                inner += 1
                cuts += wait <= p["gap_ms"]
    finished = [w for k, ws in waits.items() if k != "paused" for w in ws]
    return {
        "false_cutoffs": cuts,
        "inner_pauses": inner,
        "mean_wait_ms": round(float(np.mean(finished)), 1) if finished else None,
        "p50_wait_ms": {k: float(np.median(ws)) for k, ws in sorted(waits.items())},
    }


def candidates() -> list[TurnPolicy]:
    out = []
    for unsure in (0.01, 0.02, 0.05, 0.1):
        for sure in (0.6, 0.7, 0.8, 0.9, 0.95):
            for lift in (0.0, 2.0, 3.8):
                out.append(TurnPolicy(unsure=unsure, sure=sure, question_lift=lift))
    return out


def main() -> None:
    which = sys.argv[1] if len(sys.argv) > 1 else "tune"
    scores = HERE / f"turn_scores_{which}.json"
    if not scores.exists():
        with tempfile.TemporaryDirectory() as d:
            files = make_tune_set(Path(d)) if which == "tune" else bundled_set()
            records = asyncio.run(score_pauses(files))
        scores.write_text(json.dumps(records, indent=1) + "\n")
    records = json.loads(scores.read_text())
    old = OldBands()
    print("old bands:", judge(old, records))
    rows = [(judge(p, records), p) for p in candidates()]
    print("new (this module's defaults):", judge(TurnPolicy(), records))
    for r, p in sorted(rows, key=lambda rp: (rp[0]["false_cutoffs"], rp[0]["mean_wait_ms"])):
        print(f"unsure={p.unsure} sure={p.sure} lift={p.question_lift}: {r}")
    _ = replace  # keep the import for interactive use


if __name__ == "__main__":
    main()
