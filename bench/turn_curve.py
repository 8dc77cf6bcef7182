"""Choose the end-of-turn curve: score every pause of a set of turns once, then replay policies on the scores.

Run from the project root::

    python bench/turn_curve.py   # score both sets once (cached in bench/turn_scores_*.json), choose, report

Each file goes through the engine's own detector (Silero, the speculative pause at 64 ms). At every
pause the audio so far is transcribed by the bundled Whisper and scored by ``line_end`` on Gemma,
with an empty history, exactly as the engine's held turn does; the pause's length (to the next voiced
window) is kept. A policy is then judged without the clock: an inner pause is a *false cut-off* when
its wait is no longer than the pause; a turn's wait is the policy's wait at its final pause. With
the speaker's habit, one speaker says every file in order and :class:`PauseHabit` learns from each
pause inside a turn, as the engine's does.
Scores go to ``bench/turn_scores_<set>.json`` so the unit test of the curve reads recorded numbers.

The tuning set has other sentences and voices than the bundled one (questions, statements and
commands, as many of each, and paused turns), so the curve is not chosen on what it is reported on.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from voicechat.audio import SPEECH_RATE, read_audio
from voicechat.end_of_turn import SilenceSegmenter, SpeechPause, SpeechResume, TurnConfig, TurnEnd
from voicechat.turn_policy import PauseHabit, TurnPolicy, heard_question

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


PauseHook = Callable[[np.ndarray, SpeechPause], dict[str, Any]]


async def score_pauses(
    files: list[dict[str, Any]], extra: PauseHook | None = None, *, full_paths: bool = False
) -> list[dict[str, Any]]:
    """Every pause of every file: its length, the words before it and their ``line_end``.

    ``extra(audio, pause)`` adds its fields to each pause (another signal read from the file's 16 kHz
    audio, e.g. ``bench/held_pitch_eval.py``'s Smart Turn); ``full_paths`` keeps each file's path
    instead of its name (for sets outside the repository).
    """
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
        audio = np.concatenate([read_audio(f["file"], SPEECH_RATE), np.zeros(SPEECH_RATE * 3, np.float32)])
        det = SilenceSegmenter(SileroVAD(), TurnConfig(end_of_turn_ms=2500, pause_ms=s.turn.speculative_pause_ms))
        events = [e for i in range(0, len(audio), 320) for e in det.feed(audio[i : i + 320])]
        pauses = []
        for k, ev in enumerate(events):
            if not isinstance(ev, SpeechPause):
                continue
            nxt = next((e for e in events[k + 1 :] if isinstance(e, (SpeechResume, TurnEnd))), None)
            final = not isinstance(nxt, SpeechResume)
            text = await stt.transcribe(ev.audio, language=s.language)
            score = await scorer.ascore(history, text)
            gap_ms = None if final else round((nxt.at - ev.last_voiced) / SPEECH_RATE * 1000.0, 1)  # type: ignore[union-attr]
            pause = {"text": text, "line_end": score, "question": heard_question(text), "gap_ms": gap_ms}
            pause |= {"final": final, "end": ev.last_voiced}
            pauses.append(pause | (extra(audio, ev) if extra is not None else {}))
        name = f["file"] if full_paths else Path(f["file"]).name
        known = {"pauses": f["pauses"]} if "pauses" in f else {}
        rec = {"file": name, "kind": f["kind"], **known, "scored": pauses}
        print(Path(f["file"]).name, [(p["text"], p["line_end"], p["gap_ms"]) for p in pauses], flush=True)
        records.append(rec)
    return records


class OldBands(TurnPolicy):
    """The policy before the curve: 200 ms for a heard question ≥ 0.3 or anything ≥ 0.95, else the ceiling."""

    def wait_for(
        self,
        line_end: float | None,
        *,
        question: bool = False,
        scoring: bool = False,
        speaker_pause_ms: float | None = None,
    ) -> float:
        if line_end is None:
            return super().wait_for(line_end, question=question, scoring=scoring)
        return self.early_ms if line_end >= 0.95 or (question and line_end >= 0.3) else self.ceiling_ms


def judge(policy: TurnPolicy, records: list[dict[str, Any]], habit: bool = False) -> dict[str, Any]:
    """False cut-offs on inner pauses and the wait of every finished turn, per kind (no clock).

    ``habit``: one speaker says the records in order, and the engine's :class:`PauseHabit` learns
    from every pause inside a turn (whether it was cut and resumed, or waited out).
    """
    cuts = inner = 0
    waits: dict[str, list[float]] = {}
    learnt = PauseHabit()
    for rec in records:
        for p in rec["scored"]:
            seen = learnt.longest_ms if habit else None
            wait = policy.wait_for(p["line_end"], question=p["question"], speaker_pause_ms=seen)
            if p["final"]:
                waits.setdefault(rec["kind"], []).append(wait)
                continue
            learnt.observe(p["gap_ms"])
            if p["gap_ms"] >= 250:  # a pause a listener would notice (shorter ones never reach the floor)
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
    return [
        TurnPolicy(unsure=unsure, sure=sure, question_lift=lift)
        for lift in (1.0, 2.0, 3.8)
        for unsure in (0.02, 0.05, 0.1, 0.2)
        for sure in (0.6, 0.7, 0.8, 0.9, 0.95)
    ]


def choose(tune: list[dict[str, Any]]) -> TurnPolicy:
    """The rule, on the tuning set only: no pause cut once the speaker's habit is known, at most one in
    14 (7 %) for a new speaker, then the shortest mean wait; ties go to the smallest question lift."""
    ok = [
        p
        for p in candidates()
        if judge(p, tune, habit=True)["false_cutoffs"] == 0 and judge(p, tune)["false_cutoffs"] <= 1
    ]
    return min(ok, key=lambda p: (judge(p, tune, habit=True)["mean_wait_ms"], p.question_lift))


def curve_table(tune: list[dict[str, Any]], report: list[dict[str, Any]]) -> str:
    """False cut-offs against mean wait, for the old bands and curves from eager to patient (Markdown)."""
    rows: list[tuple[str, TurnPolicy]] = [("old bands (200 ms / 1.6 s)", OldBands())]
    rows += [(f"curve {u}→{s}", TurnPolicy(unsure=u, sure=s)) for u, s in ((0.1, 0.95), (0.1, 0.9), (0.1, 0.8))]
    rows += [(f"curve {u}→{s}", TurnPolicy(unsure=u, sure=s)) for u, s in ((0.1, 0.7), (0.1, 0.6), (0.02, 0.6))]
    out = [
        "| policy | tuning set: cut / mean wait, new speaker | with the habit | "
        "bundled set: cut / mean wait, new speaker | with the habit |",
        "|---|---|---|---|---|",
    ]
    for name, p in rows:
        cells = []
        for records in (tune, report):
            for habit in (False, True):
                r = judge(p, records, habit=habit)
                cells.append(f"{r['false_cutoffs']}/{r['inner_pauses']} · {r['mean_wait_ms']:.0f} ms")
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def _load(which: str) -> list[dict[str, Any]]:
    scores = HERE / f"turn_scores_{which}.json"
    if not scores.exists():
        with tempfile.TemporaryDirectory() as d:
            files = make_tune_set(Path(d)) if which == "tune" else bundled_set()
            records = asyncio.run(score_pauses(files))
        scores.write_text(json.dumps(records, indent=1) + "\n")
    return list(json.loads(scores.read_text()))


def main() -> None:
    tune, report = _load("tune"), _load("report")
    chosen = choose(tune)
    print(f"chosen on the tuning set: unsure={chosen.unsure} sure={chosen.sure} lift={chosen.question_lift}")
    print(f"this module's TurnPolicy(): {TurnPolicy()}")
    for name, records in (("tuning", tune), ("bundled", report)):
        print(f"{name} set, old bands:", judge(OldBands(), records))
        print(f"{name} set, curve, new speaker:", judge(chosen, records))
        print(f"{name} set, curve + the speaker's pause habit:", judge(chosen, records, habit=True))
    print(curve_table(tune, report))


if __name__ == "__main__":
    main()
