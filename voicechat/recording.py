"""Recordings of a conversation: both sides time-aligned, and each reply — in memory, only when asked.

Off by default (``VOICECHAT_RECORD_AUDIO=1`` or ``Settings(record_audio=True)`` turns it on) and
never written to disk unless a caller asks for a file: surfaces serve the bytes of a
:class:`Recording` straight to a download. Bounded: recording stops at ``record_max_s`` seconds of
conversation (``full`` says so), which caps memory at 32 kB per second for the user's side
(16 kHz int16) plus 2 bytes × the output rate per second of reply audio.

The timeline. The user's side is the microphone audio as the engine received it, one chunk after
the other; when input stops for a while (microphone off, half-duplex playback) the wall clock
fills the gap with silence. Reply audio is placed where the surface starts playing it: at the
moment it is emitted, or right after the reply audio already queued — a surface plays its queue in
order, in real time. On barge-in or stop the surface drops its queue, so audio placed after that
moment is cut: the recording holds what was played, not what was generated.

Threads: :class:`ConversationRecorder` is fed on the engine's loop thread (``add_input`` from
``Conversation.feed_16k``, ``on_event`` from its emit path); :meth:`ConversationRecorder.take`
may be called from any thread — it copies the segment lists under a lock, and the frozen
:class:`Recording` it returns builds WAV and ZIP bytes on the caller's thread, off the engine loop.
"""

from __future__ import annotations

import io
import threading
import time
import wave
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voicechat.audio import SPEECH_RATE, OutputConverter, float_to_int16
from voicechat.events import AudioOut, Event, Interrupted

EXPORT_RATE = 24_000
INPUT_GAP_S = 0.5  # input that resumes later than this after the last chunk ended starts a gap of silence


@dataclass(frozen=True)
class Segment:
    """A piece of one side's audio: mono int16 starting ``start_s`` seconds into the conversation."""

    start_s: float
    pcm: np.ndarray
    turn: int = 0  # the reply's turn (assistant side); 0 on the user's side


@dataclass(frozen=True)
class Recording:
    """A finished copy of the recording; every export is built from it on the caller's thread."""

    user: tuple[Segment, ...]
    assistant: tuple[Segment, ...]
    assistant_rate: int
    duration_s: float
    full: bool

    @property
    def turns(self) -> list[int]:
        """Turns whose reply audio was (at least partly) played."""
        return sorted({s.turn for s in self.assistant})

    def tracks(self, rate: int = EXPORT_RATE) -> tuple[np.ndarray, np.ndarray]:
        """(user, assistant) as two int16 arrays of equal length at ``rate``, aligned sample for sample."""
        length = round(self.duration_s * rate)
        out = []
        for segments, src in ((self.user, SPEECH_RATE), (self.assistant, self.assistant_rate)):
            # Laid out at the side's own rate, then resampled once (not once per 20 ms segment).
            size = round(self.duration_s * src)
            track = np.zeros(size, dtype=np.int16)
            for seg in segments:
                start = min(round(seg.start_s * src), size)
                end = min(start + len(seg.pcm), size)
                track[start:end] = seg.pcm[: end - start]
            track = _resample(track, src, rate)
            out.append(np.concatenate([track, np.zeros(max(0, length - len(track)), np.int16)])[:length])
        return out[0], out[1]

    def conversation_wav(self, rate: int = EXPORT_RATE) -> bytes:
        """The whole conversation as a stereo WAV: left = the user, right = the assistant."""
        user, assistant = self.tracks(rate)
        return wav_bytes(np.stack([user, assistant], axis=1), rate)

    def reply_wav(self, turn: int) -> bytes:
        """One turn's reply audio as it was played (cut where it was interrupted), mono WAV."""
        parts = [s.pcm for s in self.assistant if s.turn == turn]
        if not parts:
            raise KeyError(f"no reply audio was recorded for turn {turn} (recorded turns: {self.turns})")
        return wav_bytes(np.concatenate(parts), self.assistant_rate)

    def zip_bytes(self) -> bytes:
        """The two sides as two time-aligned files (``user.wav``, ``assistant.wav``) and ``reply-turn-N.wav``
        per reply (the stereo file is :meth:`conversation_wav`; not repeated here, to keep this small)."""
        user, assistant = self.tracks()
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("user.wav", wav_bytes(user, EXPORT_RATE))
            z.writestr("assistant.wav", wav_bytes(assistant, EXPORT_RATE))
            for turn in self.turns:
                z.writestr(f"reply-turn-{turn}.wav", self.reply_wav(turn))
        return buf.getvalue()

    def write(self, path: str | Path, *, turn: int | None = None) -> Path:
        """Write a file: ``.wav`` = the stereo conversation (or one reply with ``turn``), ``.zip`` = the two
        sides and every reply as separate files."""
        out = Path(path)
        suffix = out.suffix.lower()
        if suffix == ".zip" and turn is None:
            data = self.zip_bytes()
        elif suffix == ".wav":
            data = self.conversation_wav() if turn is None else self.reply_wav(turn)
        else:
            raise ValueError(
                f"export audio to .wav or .zip (everything), not {suffix or 'a file without suffix'}"
                + (" (one reply is a .wav)" if turn is not None else "")
            )
        out.write_bytes(data)
        return out


def joined(parts: list[tuple[Recording, int]], max_s: float) -> Recording | None:
    """Recordings of engines that ran one after another, as one; ``parts`` pairs each with the
    number of turns before it (a surface that restarts its engine renumbers turns the same way).

    Each part starts where the previous one ended; the whole stops at ``max_s``.
    """
    user: list[Segment] = []
    assistant: list[Segment] = []
    start = 0.0
    rate = parts[0][0].assistant_rate if parts else EXPORT_RATE
    full = False
    for rec, turn_offset in parts:
        if rec.assistant_rate != rate:
            raise ValueError("recordings at different output rates cannot be joined")
        user += [Segment(start + s.start_s, s.pcm) for s in rec.user if start + s.start_s < max_s]
        assistant += [
            Segment(start + s.start_s, s.pcm, s.turn + turn_offset) for s in rec.assistant if start + s.start_s < max_s
        ]
        start += rec.duration_s
        full = full or rec.full
    if not parts:
        return None
    return Recording(tuple(user), tuple(assistant), rate, min(start, max_s), full or start > max_s)


class ConversationRecorder:
    """Fed by the engine (see the module docstring for the timeline and the threads)."""

    def __init__(self, output_rate: int, max_s: float, clock: Callable[[], float] = time.perf_counter) -> None:
        self.output_rate = output_rate
        self.max_s = max_s
        self._clock = clock
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._user: list[Segment] = []
        self._assistant: list[Segment] = []
        self._user_end = 0.0  # seconds: where the next input chunk goes
        self._reply_end = 0.0  # seconds: where queued reply audio ends
        self._anchor: tuple[float, float] | None = None  # (clock, timeline seconds) at the last input
        self.full = False

    def now(self) -> float:
        """Where in the conversation "now" is: the end of the input, extrapolated by the wall clock."""
        if self._anchor is None:
            return self._user_end
        at_clock, at_s = self._anchor
        return max(self._user_end, at_s + self._clock() - at_clock)

    # ------------------------------------------------------------------ engine loop thread
    def add_input(self, samples: np.ndarray) -> None:
        """16 kHz mono float32 microphone audio, as the engine receives it."""
        if self.full or samples.size == 0:
            return
        duration = len(samples) / SPEECH_RATE
        start = self._user_end
        arrived_at = self.now() - duration
        if arrived_at > start + INPUT_GAP_S:
            start = arrived_at  # input had stopped: leave the gap silent
        pcm = self._fit(start, float_to_int16(samples), SPEECH_RATE)
        with self._lock:
            if pcm.size:
                self._user.append(Segment(start, pcm))
            self._user_end = start + len(pcm) / SPEECH_RATE
            self._anchor = (self._clock(), self._user_end)

    def on_event(self, event: Event) -> None:
        """Reply audio is placed on the timeline; an interruption cuts what had not been played."""
        if isinstance(event, AudioOut):
            self._add_output(event)
        elif isinstance(event, Interrupted):
            self.cut()

    def _add_output(self, event: AudioOut) -> None:
        if self.full or event.pcm.size == 0:
            return
        if event.sample_rate != self.output_rate:
            raise ValueError(f"reply audio at {event.sample_rate} Hz; this recorder takes {self.output_rate} Hz")
        if self._anchor is None:  # a reply before any input (a typed message): the clock starts now
            self._anchor = (self._clock(), self._user_end)
        start = max(self.now(), self._reply_end)
        pcm = self._fit(start, np.asarray(event.pcm, dtype=np.int16).reshape(-1), self.output_rate)
        with self._lock:
            if pcm.size:
                self._assistant.append(Segment(start, pcm, event.turn))
            self._reply_end = start + len(pcm) / self.output_rate

    def cut(self) -> None:
        """The surface dropped its queued reply audio now: keep only what was played."""
        now = self.now()
        with self._lock:
            kept = []
            for seg in self._assistant:
                played = round((now - seg.start_s) * self.output_rate)
                if played >= len(seg.pcm):
                    kept.append(seg)
                elif played > 0:
                    kept.append(Segment(seg.start_s, seg.pcm[:played], seg.turn))
            self._assistant = kept
            self._reply_end = min(self._reply_end, now)

    def clear(self) -> None:
        """Forget everything recorded (the conversation was cleared)."""
        with self._lock:
            self._reset()

    def _fit(self, start: float, pcm: np.ndarray, rate: int) -> np.ndarray:
        """Clip audio at the size limit; reaching it stops the recording."""
        room = int((self.max_s - start) * rate)
        if room < len(pcm):
            self.full = True
            return pcm[: max(0, room)]
        return pcm

    # ------------------------------------------------------------------ any thread
    def take(self) -> Recording:
        """A copy of what has been recorded so far (cheap: the audio arrays are shared, never modified)."""
        with self._lock:
            user, assistant = tuple(self._user), tuple(self._assistant)
            end = max([self._user_end, *(s.start_s + len(s.pcm) / self.output_rate for s in assistant)])
            return Recording(user, assistant, self.output_rate, end, self.full)

    def export(self, path: str | Path, *, turn: int | None = None) -> Path:
        """Write what has been recorded so far to ``path`` (see :meth:`Recording.write`)."""
        return self.take().write(path, turn=turn)


def wav_bytes(pcm: np.ndarray, rate: int) -> bytes:
    """int16 samples, shape (n,) mono or (n, channels), as a WAV file in memory."""
    data = np.asarray(pcm, dtype="<i2")
    channels = 1 if data.ndim == 1 else data.shape[1]
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(data.tobytes())
    return buf.getvalue()


def _resample(pcm: np.ndarray, src: int, dst: int) -> np.ndarray:
    if src == dst or pcm.size == 0:
        return pcm
    conv = OutputConverter(dst)
    out = np.concatenate([conv.convert(pcm, src), conv.flush()])
    want = round(len(pcm) * dst / src)  # exact length, so segments stay where they belong
    return out[:want] if len(out) >= want else np.concatenate([out, np.zeros(want - len(out), np.int16)])
