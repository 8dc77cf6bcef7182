"""The simulated callers of the capacity benchmark: real speech paced in real time, one per session.

Each :class:`_User` plays questions into its session's runner (:mod:`voicechat.conversation_on_loop`)
and listens for the reply; :func:`_transport` is the one loop that pushes a 20 ms frame to every
session per tick, as aiortc's single loop does for every call. Used by the capacity sweep
(:mod:`voicechat.benchmark.capacity_run`), the host sweep and the cloud-cost run.

Threads: the transport loop (the calling thread), where the engines run too, as in the app (or one
engine thread per session, as in the notebook: events arrive there, so :class:`_User` guards what
both touch with a lock), and one GIL probe thread.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from voicechat.audio import iter_wav_frames
from voicechat.benchmark.stats import true_end_of_speech
from voicechat.conversation_thread import ConversationRunner
from voicechat.events import AudioOut, Event, PartialTranscript, TurnMetrics

FRAME_S = 0.02


@dataclass
class Question:
    frames: list[np.ndarray]
    rate: int
    eos_s: float  # true end of speech, read from the recording
    spoken_s: float  # from the true start of speech to its end

    @classmethod
    def load(cls, path: Path) -> Question:
        frames, rate = iter_wav_frames(path)
        pcm = np.concatenate(frames)
        eos = true_end_of_speech(pcm, rate)
        sos = len(pcm) / rate - true_end_of_speech(pcm[::-1], rate)
        return cls(frames, rate, eos, max(0.0, eos - sos))


@dataclass
class _User:
    """One simulated caller: the next mic frame to send, and what its engine said back."""

    questions: list[Question]
    rng: random.Random
    idle_frames: int  # silence before the first question (users do not all start at once)
    lock: threading.Lock = field(default_factory=threading.Lock)
    v2v_ms: list[float] = field(default_factory=list)
    asked: list[int] = field(default_factory=list)  # which question each v2v_ms answered
    # Per turn, from its TurnMetrics: the silence waited before the reply was released (eot_ms) and
    # how long the end-of-turn score took to come back (line_end_ms: the model's lock queue included).
    stages: dict[str, list[float]] = field(default_factory=lambda: {"eot_ms": [], "line_end_ms": []})
    partials: int = 0
    turns_done: int = 0
    played: int = 0  # questions spoken to the end
    spoken_s: float = 0.0
    _q: int = 0
    _i: int = 0
    _t0: float = 0.0
    _eos_wall: float | None = None
    _answered: bool = True
    _playback_end: float = 0.0
    _silence: dict[int, np.ndarray] = field(default_factory=dict)

    def next_frame(self, now: float) -> tuple[np.ndarray, int]:
        """Transport loop: the frame to push at tick time ``now``."""
        q = self.questions[self._q % len(self.questions)]
        if self.idle_frames > 0:
            self.idle_frames -= 1
            return self._quiet(q), q.rate
        if self._i == 0:
            with self.lock:
                self._t0, self._eos_wall, self._answered = now, now + q.eos_s, False
        if self._i < len(q.frames):
            frame = q.frames[self._i]
            self._i += 1
            if self._i == len(q.frames):
                self.played += 1
                self.spoken_s += q.spoken_s
            return frame, q.rate
        with self.lock:
            finished = self._answered and now >= self._playback_end
        if finished or now - self._t0 > 20.0:
            self._q, self._i = self._q + 1, 0
            self.idle_frames = self.rng.randint(25, 75)  # 0.5–1.5 s before the next question
        return self._quiet(q), q.rate

    @property
    def between_questions(self) -> bool:
        return self.idle_frames > 0

    def _quiet(self, q: Question) -> np.ndarray:
        n = len(q.frames[0])
        if n not in self._silence:
            self._silence[n] = np.zeros_like(q.frames[0])
        return self._silence[n]

    def on_event(self, event: Event) -> None:
        """Engine thread: the first reply audio of a turn ends its voice-to-voice time."""
        now = time.perf_counter()
        with self.lock:
            if isinstance(event, AudioOut):
                if not self._answered and self._eos_wall is not None:
                    self.v2v_ms.append((now - self._eos_wall) * 1000.0)
                    self.asked.append(self._q % len(self.questions))
                    self._answered = True
                self._playback_end = max(now, self._playback_end) + event.duration_s
            elif isinstance(event, TurnMetrics):
                self.turns_done += 1
                self._answered = True
                for name, values in self.stages.items():
                    if (value := getattr(event, name)) is not None:
                        values.append(float(value))
            elif isinstance(event, PartialTranscript):
                self.partials += 1


class _GilProbe:
    """A thread asking for the GIL every 2 ms: how late it gets it is what every session waits."""

    def __init__(self) -> None:
        self.late_ms: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="voicechat-gil-probe", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            t = time.perf_counter()
            time.sleep(0.002)
            self.late_ms.append((time.perf_counter() - t - 0.002) * 1000.0)

    def __enter__(self) -> _GilProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def _transport(
    users: list[tuple[_User, ConversationRunner]],
    seconds: float,
    tick_late_ms: list[float],
    until: Callable[[], bool] | None = None,
) -> None:
    """Main thread: one frame to every session every 20 ms, like aiortc's loop."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    tick = 0
    while loop.time() - start < seconds and not (until is not None and until()):
        due = start + tick * FRAME_S
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tick_late_ms.append(max(0.0, loop.time() - due) * 1000.0)
        now = time.perf_counter() - (loop.time() - due)  # the frame's due time on the perf clock
        for user, thread in users:
            frame, rate = user.next_frame(now)
            thread.push(frame, rate)
        tick += 1
