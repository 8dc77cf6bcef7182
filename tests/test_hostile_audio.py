"""Hostile audio: whatever a browser or file throws at the engine, it neither raises nor grows.

Property-based (hypothesis): rates 8–96 kHz, mono/stereo/5.1, s16/s32/flt/fltp/dbl packed and
planar, zero-length frames, NaN and infinity, full-scale clipping, DC offset, pts gaps and jumps.
"""

from __future__ import annotations

import asyncio

import av
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voicechat.audio import InputConverter
from voicechat.config import Settings
from voicechat.conversation_factory import create_conversation
from voicechat.engine import Conversation
from voicechat.events import ErrorEvent

RATES = [8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000]
LAYOUTS = {"mono": 1, "stereo": 2, "5.1": 6}
FORMATS = {
    "s16": np.int16,
    "s32": np.int32,
    "flt": np.float32,
    "dbl": np.float64,
    "s16p": np.int16,
    "s32p": np.int32,
    "fltp": np.float32,
    "dblp": np.float64,
}


@st.composite
def frames(draw: st.DrawFn) -> tuple[av.AudioFrame, bool]:
    """One frame and whether its content is valid (finite) audio."""
    rate = draw(st.sampled_from(RATES))
    layout = draw(st.sampled_from(list(LAYOUTS)))
    fmt = draw(st.sampled_from(list(FORMATS)))
    ch = LAYOUTS[layout]
    n = draw(st.sampled_from([0, 1, 7, 160, 441, 480, 960, 1024, 4800]))
    kind = draw(st.sampled_from(["noise", "clip", "dc", "nan", "inf", "silence", "sine"]))
    dtype = FORMATS[fmt]
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x = rng.uniform(-1, 1, (ch, n))
    if kind == "clip":
        x = np.sign(x)
    elif kind == "dc":
        x = x * 0.1 + 0.8
    elif kind == "silence":
        x = np.zeros_like(x)
    elif kind == "sine":
        x = np.tile(np.sin(2 * np.pi * 440 * np.arange(n) / rate), (ch, 1))
    valid = True
    if np.issubdtype(dtype, np.floating):
        if kind == "nan" and n:
            x.flat[:: max(1, x.size // 5)] = np.nan
            valid = False
        if kind == "inf" and n:
            x.flat[:: max(1, x.size // 3)] = np.inf
            valid = False
        data = x.astype(dtype)
    else:
        data = (np.clip(np.nan_to_num(x), -1, 1) * np.iinfo(dtype).max).astype(dtype)
    arr = data if fmt.endswith("p") else data.T.reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(arr), format=fmt, layout=layout)
    frame.sample_rate = rate
    frame.pts = draw(st.one_of(st.none(), st.integers(-(2**31), 2**40)))  # gaps, jumps, nonsense
    return frame, valid


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frames(), min_size=1, max_size=6))
def test_any_frame_converts_to_clean_16k_mono(batch: list[tuple[av.AudioFrame, bool]]) -> None:
    conv = InputConverter()
    for frame, _valid in batch:
        out = conv.convert(frame)
        assert out.dtype == np.float32 and out.ndim == 1
        assert np.isfinite(out).all() and np.abs(out).max(initial=0.0) <= 1.0
        # A resampler may hold back a few ms, never produce more than the input's duration allows.
        assert len(out) <= frame.samples * 16000 / frame.sample_rate + 64


@pytest.fixture(scope="module")
def engine_vad_only() -> Conversation:
    from voicechat.vad import SileroVAD

    s = Settings.load({"max_utterance_s": 2.0}, environ={}, dotenv_path=None)

    class NoReply:  # the engine path under test ends at turn detection; no model is needed
        name = "none"

        async def stream(self, messages: object):
            if False:
                yield ""

    return create_conversation(s, stt=None, llm=NoReply(), tts=None, vad=SileroVAD())


@settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(st.lists(frames(), min_size=1, max_size=20))
def test_engine_never_raises_and_stays_bounded(
    engine_vad_only: Conversation, batch: list[tuple[av.AudioFrame, bool]]
) -> None:
    conv = engine_vad_only

    async def feed() -> None:
        for frame, _ in batch:
            await conv.feed(frame)

    asyncio.run(feed())
    assert not [e for e in conv.drain() if isinstance(e, ErrorEvent) and "Traceback" in e.message]
    assert len(conv.turns.current_audio()) <= 2.0 * 16000 + 1024  # never more than max_utterance_s
    assert len(conv.turns._pending) < conv.turns.vad.window
