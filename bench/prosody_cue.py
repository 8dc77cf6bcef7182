"""A cheap acoustic end-of-turn cue: the pitch and loudness of the last voiced audio before a pause.

Why: a speaker who pauses inside a turn usually holds or raises pitch on the word before the pause
("First, open the window, ..."), and one who has finished lets it fall to the bottom of their range
and gets quieter. ``line_end`` reads only words, so a finished clause followed by more looks
finished to it; this reads what the words cannot carry. Numpy only (no torch), a few ms per pause.

Pitch is YIN (de Cheveigné & Kawahara 2002) on 40 ms frames every 10 ms, 60–400 Hz, a frame voiced
when its cumulative-mean-normalised difference dips below 0.25 and it is within 35 dB of the loudest
frame. Octave errors (a frame read at double or half the true pitch) are folded back towards the
utterance's median pitch, so a single bad frame cannot make a ±12-semitone "fall".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RATE = 16_000
FRAME = 640  # 40 ms: two periods of a 50 Hz voice
HOP = 160  # 10 ms
F0_MIN, F0_MAX = 60.0, 400.0


def _frames(audio: np.ndarray) -> np.ndarray:
    n = 1 + max(0, len(audio) - FRAME) // HOP
    idx = np.arange(FRAME)[None, :] + HOP * np.arange(n)[:, None]
    return np.asarray(audio[idx] if len(audio) >= FRAME else np.zeros((0, FRAME)), dtype=np.float64)


def f0_track(audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per 10 ms frame: f0 in Hz (NaN where unvoiced) and level in dBFS."""
    fr = _frames(audio)
    if len(fr) == 0:
        return np.zeros(0), np.zeros(0)
    level = 10 * np.log10(np.mean(fr**2, axis=1) + 1e-12)
    lo, hi = int(RATE / F0_MAX), int(RATE / F0_MIN)
    w = FRAME - hi  # integration window, so every lag has the same number of products
    head = np.zeros_like(fr)
    head[:, :w] = fr[:, :w]
    n_fft = 2 * FRAME
    # r(t) = sum over j < w of x[j] * x[j + t]: the window against the frame shifted by each lag
    acf = np.fft.irfft(np.conj(np.fft.rfft(head, n=n_fft)) * np.fft.rfft(fr, n=n_fft), n=n_fft)[:, : hi + 1]
    energy = np.cumsum(np.concatenate([np.zeros((len(fr), 1)), fr**2], axis=1), axis=1)
    e0 = energy[:, w] - energy[:, 0]
    lags = np.arange(hi + 1)
    e_lag = energy[:, lags + w] - energy[:, lags]
    d = np.maximum(e0[:, None] + e_lag - 2 * acf, 0.0)  # YIN's difference function
    d[:, 0] = 0
    cum = np.cumsum(d[:, 1:], axis=1) / np.arange(1, hi + 1)
    cmnd = np.ones_like(d)
    cmnd[:, 1:] = d[:, 1:] / np.maximum(cum, 1e-12)
    f0 = np.full(len(fr), np.nan)
    for i, row in enumerate(cmnd):
        below = np.flatnonzero(row[lo : hi + 1] < 0.25)
        if below.size == 0 or level[i] < level.max() - 35:
            continue
        t = lo + below[0]
        while t + 1 <= hi and row[t + 1] < row[t]:  # walk down to the local minimum
            t += 1
        a, b, c = row[t - 1], row[t], row[min(t + 1, hi)]
        shift = 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) != 0 else 0.0
        f0[i] = RATE / (t + float(np.clip(shift, -1, 1)))
    return _fold_octaves(f0), level


def _fold_octaves(f0: np.ndarray) -> np.ndarray:
    """Halve or double frames more than ~8 semitones from the median: they are octave errors more
    often than real jumps (speech moves that far only over several frames)."""
    voiced = f0[~np.isnan(f0)]
    if voiced.size < 3:
        return f0
    med = float(np.median(voiced))
    out = f0.copy()
    out[out > med * 1.6] /= 2
    out[out < med / 1.6] *= 2
    return out


def semitones(hz: np.ndarray | float, ref: float) -> np.ndarray:
    return 12 * np.log2(np.asarray(hz) / ref)


@dataclass(frozen=True)
class Cue:
    """Features of the last voiced audio before a pause; larger values look *more finished*.

    - ``fall``: median pitch of the tail's first 60 % minus its last 40 %, semitones (a fall > 0).
    - ``low``: the utterance's median pitch minus the tail's last 40 %, semitones (ends low > 0).
    - ``fade``: the tail's loudest 10 ms minus its last voiced 100 ms, dB (getting quieter > 0).
    """

    fall: float
    low: float
    fade: float
    voiced_frames: int


def cue(audio: np.ndarray, end: int, tail_s: float = 0.4) -> Cue | None:
    """The cue for a pause whose last voiced sample is ``end`` (16 kHz float audio up to there)."""
    f0, level = f0_track(audio[:end])
    voiced = np.flatnonzero(~np.isnan(f0))
    if voiced.size < 8:
        return None
    med = float(np.median(f0[voiced]))
    last = voiced[-1]
    tail = voiced[voiced > last - int(tail_s * 100)]
    if tail.size < 6:
        return None
    cut = round(tail.size * 0.6)
    head_st = float(np.median(semitones(f0[tail[:cut]], med)))
    end_st = float(np.median(semitones(f0[tail[cut:]], med)))
    fade = float(level[tail].max() - np.mean(level[tail[tail > last - 10]]))
    return Cue(fall=head_st - end_st, low=-end_st, fade=fade, voiced_frames=int(tail.size))
