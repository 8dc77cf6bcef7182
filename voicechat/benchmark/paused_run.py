"""Paused speech through the real engine: how often a turn is cut while the speaker is only pausing.

Each file of voicechat-bench-kit's ``paused/`` is one speaker turn with pauses of 0.6–1.5 s inside it
(made by ``bench/make_questions.py``; ``manifest.json`` gives its pauses and true end of speech). It is
fed in real time, like a microphone, then silence until every reply has played. A *false
cut-off* is a turn the engine ended (``SpeechEnded``, not a forced cut) whose last voiced
audio lies before the true end of the speaker's turn. Both end-of-turn modes run in the same
process on the same loaded models, one file after the other, so they meet the same load.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from voicechat.audio import SPEECH_RATE, iter_wav_frames
from voicechat.conversation_factory import create_conversation
from voicechat.engine import Conversation
from voicechat.events import Event, FinalTranscript, Interrupted, SpeechEnded, TurnMetrics
from voicechat.turn_policy import END_OF_TURN_MODES, PauseHabit
from voicechat_bench_kit import PAUSED_DIR

FRAME_S = 0.02
TAIL_S = 2.5  # silence after the speech: longer than any end-of-turn wait


@dataclass
class PausedSample:
    file: str
    mode: str
    pauses: int
    turns: int
    false_cutoffs: int
    heard: list[str]
    line_end: list[float]  # the text signal of every turn the engine ended
    resumed: int = 0  # released turns the speaker went on with: merged with what followed, answered again
    resumed_heard_ms: list[float] = field(default_factory=list)  # of each such reply, what was heard first


def first_words(conv: Conversation, *, new_speaker: bool = True) -> None:
    """Each file is measured as the first thing said in its conversation: the history is emptied,
    and (``new_speaker``) so is what the engine learnt of the speaker's pauses.

    A user does not say the same line twice; a bench that replays its files did, and with the line
    (or the small model's echo of it in a reply) in the history, ``line_end`` read the repeat as
    certain: three statements scored 0.46–0.76 on their first play and 0.92–0.99 on the third, and
    were released after 224–352 ms, where a user's conversation waited the 1.6 s ceiling for the same
    files. Dropping only the same file's earlier turns was not enough (0.45 → 0.93 for one statement
    after the other two and their echoing replies).

    The pause habit hid the same way: kept across the paused set, the first files' pauses after
    "for" and "of" taught the engine a one-second habit, and every later statement waited past it;
    a user's first turn has no habit yet. ``new_speaker=False`` keeps it, to measure a speaker the
    engine has heard pause before.
    """
    conv.history.clear()
    if new_speaker:
        conv.habit = PauseHabit()


def load_manifest(folder: Path = PAUSED_DIR) -> list[dict[str, Any]]:
    return list(json.loads((folder / "manifest.json").read_text()))


async def play_paused(
    conv: Conversation,
    path: Path,
    take: Callable[[], list[Event]],
    timeout_s: float = 60.0,
    paced_by_work: bool = False,
) -> list[Event]:
    """Feed one file in real time plus silence, until the engine is idle again; return its events.

    ``take`` returns the conversation's events since it was last called (its listener's, or ``drain``).
    ``paced_by_work``: instead of the wall clock, feed each frame once the end-of-turn score being
    computed (if any) is in — the decisions of a CPU fast enough to hide that work, on any machine.
    """
    events: list[Event] = take()
    events.clear()
    frames, rate = iter_wav_frames(path)
    silence = np.zeros_like(frames[0])
    offset_s = conv.turns.position / SPEECH_RATE
    t0 = time.perf_counter()
    i = 0
    n_speech = len(frames)
    n_tail = int(TAIL_S / FRAME_S)
    while time.perf_counter() - t0 < timeout_s or paced_by_work:
        delay = t0 + i * FRAME_S - time.perf_counter()
        if paced_by_work:
            await _scored(conv)
        elif delay > 0:
            await asyncio.sleep(delay)
        await conv.feed(frames[i] if i < n_speech else silence, rate)
        events += take()
        i += 1
        if paced_by_work and i >= n_speech + n_tail:
            await conv.wait_reply()
            conv.playback_done()
        if i >= n_speech + n_tail and not conv.replying and not conv.turns.speaking:
            break
        if i > n_speech + 3 * n_tail:
            break  # paced by work, a reply that never ends must not hang the run
    await conv.wait_reply()
    events += take()
    return [_shift(e, offset_s) for e in events]


async def _scored(conv: Conversation) -> None:
    await asyncio.sleep(0)
    while (turn := conv.held_turn) is not None and turn.scoring:
        await asyncio.sleep(0.005)


def _shift(event: Event, offset_s: float) -> Event:
    """Positions relative to the start of this file (the conversation's input stream keeps counting)."""
    if isinstance(event, SpeechEnded):
        return SpeechEnded(round(event.at_s - offset_s, 3), event.duration_s, event.forced)
    return event


def count(path: Path, mode: str, entry: dict[str, Any], events: list[Event]) -> PausedSample:
    ended = [e for e in events if isinstance(e, SpeechEnded) and not e.forced]
    early = [e for e in ended if e.at_s < float(entry["speech_end_s"]) - 0.15]
    return PausedSample(
        file=path.name,
        mode=mode,
        pauses=int(entry["pauses"]),
        turns=len(ended),
        false_cutoffs=len(early),
        heard=[e.text for e in events if isinstance(e, FinalTranscript)],
        line_end=[e.line_end for e in events if isinstance(e, TurnMetrics) and e.line_end is not None],
        resumed=sum(isinstance(e, Interrupted) and e.reason == "resumed" for e in events),
        resumed_heard_ms=[
            round(e.heard_s * 1000.0) for e in events if isinstance(e, Interrupted) and e.reason == "resumed"
        ],
    )


async def run_paused(
    convs: dict[str, tuple[Conversation, Callable[[], list[Event]]]],
    folder: Path = PAUSED_DIR,
    progress: Any = None,
    paced_by_work: bool = False,
    known_speaker: bool = False,
) -> dict[str, Any]:
    """Every paused file through every conversation (one per end-of-turn mode, with its ``take``), interleaved.

    Each file is a new speaker's first turn, unless ``known_speaker``: then one speaker says every
    file in order and the engine keeps what it learnt of their pauses (history is emptied either way).
    """
    samples: list[PausedSample] = []

    for entry in load_manifest(folder):
        path = folder / entry["file"]
        for mode, (conv, take) in convs.items():
            first_words(conv, new_speaker=not known_speaker)
            events = await play_paused(conv, path, take, paced_by_work=paced_by_work)
            sample = count(path, mode, entry, events)
            samples.append(sample)
            if progress:
                progress(
                    f"{path.name} [{mode}]: {sample.turns} turn(s), {sample.false_cutoffs} cut-off(s) "
                    f"of {sample.pauses} pause(s) — {sample.heard}"
                )
    out: dict[str, Any] = {}
    for mode in convs:
        mine = [s for s in samples if s.mode == mode]
        pauses = sum(s.pauses for s in mine)
        cut = sum(s.false_cutoffs for s in mine)
        out[mode] = {
            "false_cutoffs": cut,
            "pauses_total": pauses,
            "false_cutoff_rate": round(cut / pauses, 3) if pauses else None,
            "replies": sum(s.turns for s in mine),
            "resumed": sum(s.resumed for s in mine),
            # what a wrong release cost: the reply heard before the speaker's next words stopped it
            "resumed_heard_ms_max": max((h for s in mine for h in s.resumed_heard_ms), default=None),
            "files": len(mine),
            "speaker": "known" if known_speaker else "new",
        }
    out["per_file"] = [asdict(s) for s in samples]
    return out


async def replay_paused(
    settings: Any, progress: Any = None, questions: list[Path] | None = None, paused: bool = True
) -> dict[str, Any]:
    """``voicechat bench --paused-replay``: the paused set paced by work, both modes, no timing at all.

    With ``questions`` (complete ones), also the end-of-turn wait each mode decided for them, in audio
    milliseconds: on a CPU that hides the work behind that wait, it is what voice-to-voice differs by.
    """
    from voicechat.backends import make_llm, make_stt, make_tts

    stt, llm, tts = make_stt(settings), make_llm(settings), make_tts(settings)
    convs = {
        m: create_conversation(settings.replace(end_of_turn=m), stt=stt, llm=llm, tts=tts) for m in END_OF_TURN_MODES
    }
    for conv in convs.values():
        await conv.warm_up()
    try:
        out: dict[str, Any] = {}
        if questions:
            out["questions_eot_ms"] = {m: [] for m in convs}
            for path in questions:
                for mode, conv in convs.items():
                    events = await play_paused(conv, path, conv.drain, paced_by_work=True)
                    waits = [float(e.eot_ms) for e in events if isinstance(e, TurnMetrics) and e.eot_ms is not None]
                    out["questions_eot_ms"][mode] += waits
                    if progress:
                        progress(f"{path.name} [{mode}]: end of turn after {waits} ms of silence")
        if paused:
            both: dict[str, tuple[Conversation, Callable[[], list[Event]]]] = {
                m: (c, c.drain) for m, c in convs.items()
            }
            out.update(await run_paused(both, progress=progress, paced_by_work=True))
            known = await run_paused(both, progress=progress, paced_by_work=True, known_speaker=True)
            out["known_speaker"] = {m: v for m, v in known.items() if m != "per_file"}
        return out
    finally:
        for conv in convs.values():
            await conv.aclose()
