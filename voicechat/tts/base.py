"""The text-to-speech interface: text in, an async stream of int16 mono chunks out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class TextToSpeech(Protocol):
    """A backend speaks one sentence.

    Chunks are mono int16 numpy arrays at ``sample_rate`` (the backend's native
    rate; the engine resamples to the surface's rate). Yielding several small
    chunks lets playback start before the sentence is fully synthesised.
    """

    name: str
    sample_rate: int

    def synthesize(self, text: str) -> AsyncIterator[np.ndarray]: ...
