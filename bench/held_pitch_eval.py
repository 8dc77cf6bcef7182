"""Does a cheap pitch/energy cue tell pauses inside a turn from turn ends, and does it help ``line_end``?

Run from the project root, after ``python bench/make_held_pitch_set.py`` (Piper and espeak-ng;
Debian's festival, festvox-kallpc16k and festvox-us-slt-hts add two voices)::

    python bench/held_pitch_eval.py [set_dir] [smart_turn_wheel]

Sets: ``bundled`` (the kit's questions and paused set), ``held`` (whole-sentence synthesis, each
comma's silence stretched: pitch held before a pause) and ``pieces`` (the same sentences and pauses,
each piece synthesised alone, as the bundled set was), the last two with the same finished turns.
Every pause goes through the engine's detector (Silero, speculative pause at 64 ms); at each one the
audio so far is transcribed by Whisper and scored by ``line_end`` with an empty history (as
``bench/turn_curve.py`` does), and :func:`prosody_cue.cue` reads the last 0.4 s of voiced audio up to
the last voiced window. Scores are cached in ``<set_dir>/scores_<set>.json``.

Printed per set: the AUC of each signal (the chance that a finished turn scores as more finished
than a pause the speaker went on after; 1.0 separates them, 0.5 is a coin), and a combination,
``logit(line_end) + w * cue`` with ``w`` chosen on one half of the files and reported on the other
(then the halves swapped), with the false cut-offs and mean wait the engine's curve would give.

What it found (2026-12-06, Intel Xeon 2 vCPU; AUC of ``fall`` over the last 0.4 s, Praat's pitch
agreeing within 0.05): the cue separates pauses from turn ends only for a voice that marks a comma
with pitch. espeak-ng does (held 0.85, the same pauses said in pieces 0.47; every one of its 31
pauses falls less when held, median 2.9 semitones); Festival's kal a little (0.61); Piper's joe
voice and Festival's HTS slt do not (0.39, 0.46: they fall at a comma as at a full stop). Added to
``line_end``, it helps on espeak-ng alone (held-out AUC 0.83→0.93 and 0.78→0.90) and not on the
four voices together (0.85→0.85, 0.75→0.76). No human speech was at hand to say which kind of
voice a user is.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_held_pitch_set import ENGINES, OUT
from prosody_cue import cue

from voicechat.audio import SPEECH_RATE, read_audio
from voicechat.end_of_turn import SpeechPause
from voicechat.turn_policy import TurnPolicy

CUES = ("fall", "low", "fade")
WEIGHTS = [0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0]


def set_files(which: str, root: Path) -> list[dict[str, Any]]:
    if which == "bundled":
        from turn_curve import bundled_set

        return bundled_set()
    manifest = json.loads((root / "manifest.json").read_text())
    return [
        {"file": str(root / (which if e["kind"] == "paused" else "finished") / e["file"]), "kind": e["kind"]}
        for e in manifest
    ]


async def score(files: list[dict[str, Any]], smart: Any = None) -> list[dict[str, Any]]:
    """Every pause of every file (``turn_curve.score_pauses``), and Smart Turn's reading when given."""
    from turn_curve import score_pauses

    def smart_turn(audio: np.ndarray, pause: SpeechPause) -> dict[str, Any]:
        return {"smart": smart(audio[: pause.last_voiced + int(0.2 * SPEECH_RATE)])}

    return await score_pauses(files, smart_turn if smart is not None else None, full_paths=True)


def split(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Pauses inside turns (≥ 250 ms, the ones a listener would notice) and finished turns."""
    inner = [p for r in records for p in r["scored"] if not p["final"] and p["gap_ms"] >= 250]
    done = [p | {"kind": r["kind"]} for r in records for p in r["scored"] if p["final"]]
    return inner, done


def auc(finished: list[float], inner: list[float]) -> float:
    if not finished or not inner:
        return float("nan")
    wins = sum((f > i) + 0.5 * (f == i) for f in finished for i in inner)
    return round(wins / (len(finished) * len(inner)), 3)


def logit(p: float | None) -> float:
    q = min(max(p if p is not None else 0.5, 1e-4), 1 - 1e-4)
    return math.log(q / (1 - q))


def combined(p: dict[str, Any], name: str, w: float, center: float = 0.0) -> float:
    """``line_end``'s log-odds plus the cue, centred on the tuning half's median (so the weight moves
    the ranking, not every wait at once); a pause without enough voicing adds nothing."""
    return logit(p["line_end"]) + w * (p[name] - center if name in p else 0.0)


def signal_aucs(records: list[dict[str, Any]]) -> dict[str, Any]:
    inner, done = split(records)
    out: dict[str, Any] = {"inner": len(inner), "finished": len(done)}
    for name in ("line_end", *CUES, "smart"):
        have = [p for p in inner + done if p.get(name) is not None]
        if not have:
            continue
        out[name] = auc([p[name] for p in done if p.get(name) is not None], [p[name] for p in inner if name in p])
        out[f"{name}_missing"] = len(inner) + len(done) - len(have)
    for name in CUES:  # medians: what the cue reads before each kind of pause (semitones or dB)
        for label, ps in (("inner", inner), *((k, [p for p in done if p["kind"] == k]) for k in _kinds(done))):
            vals = [p[name] for p in ps if name in p]
            out.setdefault(f"median_{name}", {})[label] = round(float(np.median(vals)), 1) if vals else None
    return out


def _kinds(done: list[dict[str, Any]]) -> list[str]:
    return sorted({p["kind"] for p in done})


def cuts_and_wait(
    records: list[dict[str, Any]], name: str | None = None, w: float = 0.0, center: float = 0.0
) -> tuple[int, int, float]:
    """The engine's curve (new speaker) on the combined score: pauses cut, of how many, mean wait."""
    policy = TurnPolicy()
    inner, done = split(records)

    def wait(p: dict[str, Any]) -> float:
        le = p["line_end"] if name is None else 1 / (1 + math.exp(-combined(p, name, w, center)))
        return policy.wait_for(le, question=p["question"])

    cut = sum(wait(p) <= p["gap_ms"] for p in inner)
    return cut, len(inner), round(float(np.mean([wait(p) for p in done if p["kind"] != "paused"])), 0)


def sentence(record: dict[str, Any]) -> int:
    """The number in a file's name (``h07_kal.wav`` → 7): every voice of a sentence falls in one half."""
    return int(re.search(r"\d+", Path(record["file"]).name).group())  # type: ignore[union-attr]


def cross_half(records: list[dict[str, Any]], name: str, subset: str = "") -> list[str]:
    """Choose ``w`` on one half (by AUC, ties to the smaller weight), report on the other, then swap.

    ``subset``: only one voice's files ("espeak", "piper", ...). The halves split the sentences by
    the parity of their number, so no sentence's words are in both halves and each half holds every
    voice."""
    lines = []
    records = [r for r in records if f"_{subset}" in Path(r["file"]).name]
    halves = [[r for r in records if sentence(r) % 2 == h] for h in (0, 1)]
    for a, b, label in ((0, 1, "A→B"), (1, 0, "B→A")):
        tune, test = halves[a], halves[b]
        ti, td = split(tune)
        center = float(np.median([p[name] for p in ti + td if name in p]))

        def tune_auc(
            w: float, ti: list[dict[str, Any]] = ti, td: list[dict[str, Any]] = td, c: float = center
        ) -> float:
            return auc([combined(p, name, w, c) for p in td], [combined(p, name, w, c) for p in ti])

        w = max(WEIGHTS, key=lambda x: (tune_auc(x), -x))
        si, sd = split(test)
        before = auc([logit(p["line_end"]) for p in sd], [logit(p["line_end"]) for p in si])
        after = auc([combined(p, name, w, center) for p in sd], [combined(p, name, w, center) for p in si])
        c0, n0, m0 = cuts_and_wait(test)
        c1, n1, m1 = cuts_and_wait(test, name, w, center)
        lines.append(
            f"  {subset or 'all'} {name} {label}: w={w} (tune AUC {tune_auc(0.0)}→{tune_auc(w)}); held-out AUC "
            f"line_end {before} → combined {after}; curve 0.1→0.6, new speaker: cut {c0}/{n0}, mean wait "
            f"{m0:.0f} ms → cut {c1}/{n1}, {m1:.0f} ms"
        )
    return lines


def by_engine_and_tail(records: list[dict[str, Any]]) -> list[str]:
    """The cue's AUC for each synthesiser alone and each tail length (0.4 s is the one reported above)."""
    lines = []
    audio = {r["file"]: read_audio(r["file"], SPEECH_RATE) for r in records}
    for engine in ENGINES:
        mine = [r for r in records if f"_{engine}" in Path(r["file"]).name]
        if not mine:
            continue
        inner, done = split(mine)
        have = [k for k in ("line_end", "smart") if k in done[0]]
        cells = [f"{k} {auc([p[k] for p in done], [p[k] for p in inner])}" for k in have]
        for tail in (0.3, 0.4, 0.5):
            ci = [c for p in inner if (c := cue(audio[p["file"]], p["end"], tail))]
            cd = [c for p in done if (c := cue(audio[p["file"]], p["end"], tail))]
            cells += [f"{k}@{tail} {auc([getattr(c, k) for c in cd], [getattr(c, k) for c in ci])}" for k in CUES]
        lines.append(f"  {engine} ({len(inner)} inner, {len(done)} finished): " + ", ".join(cells))
    return lines


def paired_effect(held: list[dict[str, Any]], pieces: list[dict[str, Any]]) -> list[str]:
    """Same sentence, same pause, said whole or in pieces: how the cue moves (held minus pieces).

    Pauses are paired in order within a file; a file whose two versions the VAD splits into a
    different number of pauses is left out."""
    lines = []
    for engine in ENGINES:
        deltas: dict[str, list[float]] = {k: [] for k in CUES}
        for h, p in zip(held, pieces, strict=True):
            if f"_{engine}" not in Path(h["file"]).name or h["kind"] != "paused":
                continue
            hi, pi = split([h])[0], split([p])[0]
            if len(hi) != len(pi):
                continue
            for a, b in zip(hi, pi, strict=True):
                for k in CUES:
                    if k in a and k in b:
                        deltas[k].append(a[k] - b[k])
        cells = [
            f"{k} median {np.median(d):+.1f} ({sum(x < 0 for x in d)}/{len(d)} lower when held)"
            for k, d in deltas.items()
            if d
        ]
        lines.append(f"  held − pieces, {engine}: " + ", ".join(cells))
    return lines


def load(which: str, root: Path, smart: Any) -> list[dict[str, Any]]:
    """The cached Whisper/Gemma scores (made once), with the acoustic cue computed afresh."""
    cache = root / f"scores_{which}.json"
    if not cache.exists():
        cache.write_text(json.dumps(asyncio.run(score(set_files(which, root), smart)), indent=1) + "\n")
    records = list(json.loads(cache.read_text()))
    for r in records:
        audio = read_audio(r["file"], SPEECH_RATE)
        for p in r["scored"]:
            p["file"] = r["file"]
            c = cue(audio, p["end"])
            p.update({k: getattr(c, k) for k in CUES} if c else {})
    return records


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT
    smart = None
    if len(sys.argv) > 2:
        import tempfile

        from smart_turn_judge import load_smart_turn

        smart = load_smart_turn(Path(sys.argv[2]), Path(tempfile.mkdtemp()))
    loaded = {which: load(which, root, smart) for which in ("bundled", "pieces", "held")}
    print("\n".join(paired_effect(loaded["held"], loaded["pieces"])))
    for which, records in loaded.items():
        cut, inner, wait = cuts_and_wait(records)
        print(
            f"{which}: {json.dumps(signal_aucs(records))}; line_end alone, curve 0.1→0.6, new speaker: "
            f"cut {cut}/{inner}, mean wait {wait:.0f} ms"
        )
        print("\n".join(by_engine_and_tail(records)))
        for subset in ("", *(e for e in ENGINES if any(f"_{e}" in Path(r["file"]).name for r in records))):
            for name in CUES:
                print("\n".join(cross_half(records, name, subset)))


if __name__ == "__main__":
    main()
