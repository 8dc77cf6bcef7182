"""The benchmark's arithmetic, kept pure so it can be unit-tested on tiny inputs.

End of speech is read from the recording itself (energy), never from the VAD under test.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def true_end_of_speech(audio: np.ndarray, rate: int, window_ms: int = 10, rel_db: float = -35.0) -> float:
    """Seconds from the start to the end of the last window louder than ``rel_db`` below the peak window.

    The noise floor is taken into account: a window must also be 12 dB above the quietest tenth.
    Returns 0.0 for digital silence.
    """
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if np.issubdtype(np.asarray(audio).dtype, np.integer):
        x = x / 32768.0
    step = max(1, rate * window_ms // 1000)
    n = len(x) // step
    if n == 0:
        return 0.0
    rms = np.sqrt(np.mean(x[: n * step].reshape(n, step) ** 2, axis=1))
    peak = float(rms.max())
    if peak <= 0.0:
        return 0.0
    floor = float(np.percentile(rms, 10))
    threshold = max(peak * 10 ** (rel_db / 20), floor * 10 ** (12 / 20))
    loud = np.flatnonzero(rms > threshold)
    if loud.size == 0:
        return 0.0
    return float((loud[-1] + 1) * step / rate)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100); NaN for no values."""
    vals = sorted(v for v in values if v is not None and not math.isnan(v))
    if not vals:
        return float("nan")
    if len(vals) == 1:
        return float(vals[0])
    pos = (len(vals) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(vals) - 1)
    return float(vals[lo] + (vals[hi] - vals[lo]) * (pos - lo))


def median(values: Sequence[float]) -> float:
    return percentile(values, 50.0)


def paired_ratio(ours: Sequence[float], theirs: Sequence[float]) -> float:
    """Median of per-turn ratios ours/theirs (turn by turn, so a slow question does not dominate)."""
    if len(ours) != len(theirs):
        raise ValueError("ratio needs the same turns on both sides")
    ratios = [a / b for a, b in zip(ours, theirs, strict=True) if b and b > 0]
    return median(ratios)


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "p50": round(percentile(values, 50), 1),
        "p95": round(percentile(values, 95), 1),
        "max": round(max(values), 1) if values else float("nan"),
    }
