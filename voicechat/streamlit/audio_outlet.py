"""Where the engine's reply audio goes: whichever streamlit-webrtc PCM source feeds the browser now.

Threads: :meth:`AudioOutlet.attach` on Streamlit's script thread; :meth:`AudioOutlet.push` and
:meth:`AudioOutlet.clear` wherever the engine runs (aiortc's loop or an engine thread), ``clear``
also from the script thread. One lock guards the swap.
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)


class PcmSink(Protocol):
    """What the outlet needs from streamlit-webrtc's ``PcmAudioSource`` (so tests can pass the real one)."""

    @property
    def sample_rate(self) -> int: ...

    def push(self, pcm: np.ndarray) -> None: ...

    def clear(self) -> None: ...


class AudioOutlet:
    """Thread-safe holder of the PCM source that currently feeds the browser.

    streamlit-webrtc makes a new ``PcmAudioSource`` for every WebRTC session (its
    ``webrtc-session`` lifecycle), while the engine outlives them; the script thread
    re-attaches the current source on every run and the engine thread pushes through here,
    so neither holds a stale source. Barge-in calls :meth:`clear` from the engine thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._source: PcmSink | None = None
        self.pushed_samples = 0
        self.clears = 0

    def attach(self, source: PcmSink | None) -> None:
        """Script thread: route reply audio to ``source`` (``None`` drops it)."""
        with self._lock:
            self._source = source

    def push(self, pcm: np.ndarray, sample_rate: int) -> None:
        """Engine thread: queue reply audio (int16 mono) for the browser."""
        with self._lock:
            source = self._source
            if source is None:
                return
            if sample_rate != source.sample_rate:
                log.warning("dropping reply audio at %d Hz for a %d Hz source", sample_rate, source.sample_rate)
                return
            self.pushed_samples += len(pcm)
        source.push(np.ascontiguousarray(pcm, dtype=np.int16))

    def clear(self) -> None:
        """Engine thread (barge-in, stop) or script thread: drop every queued reply sample."""
        with self._lock:
            source = self._source
            self.clears += 1
        if source is not None:
            source.clear()
