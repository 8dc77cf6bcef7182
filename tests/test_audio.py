"""Audio conversion with real speech at the rates and formats browsers and files deliver."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from tests.conftest import _resample_wav, wav_frames_as_av
from voicechat.audio import FrameChunker, InputConverter, OutputConverter, read_audio
from voicechat.errors import AudioFormatError

SENTENCE = "The quick brown fox jumps over the lazy dog."


def _similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Peak normalised cross-correlation within ±10 ms: 1.0 means the same waveform."""
    n = min(len(a), len(b))
    a, b = a[:n] - a[:n].mean(), b[:n] - b[:n].mean()
    best = 0.0
    for lag in range(-160, 161, 4):
        x, y = (a[lag:], b[: n - lag]) if lag >= 0 else (a[: n + lag], b[-lag:])
        best = max(best, float(np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y) + 1e-9)))
    return best


@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("fmt", ["s16", "flt", "fltp", "s16p"])
def test_frames_convert_to_16k_mono_preserving_speech(
    make_speech, tmp_path: Path, rate: int, channels: int, fmt: str
) -> None:
    path: Path = make_speech(SENTENCE, rate=rate, channels=channels)
    ref_path = tmp_path / "ref.wav"
    _resample_wav(path, ref_path, 16000, 1)  # sox converts the very same file: the yardstick
    reference = read_audio(ref_path)
    conv = InputConverter()
    out = np.concatenate([conv.convert(f) for f in wav_frames_as_av(path, fmt)])
    assert out.dtype == np.float32
    expected = len(reference)
    assert abs(len(out) - expected) < 0.02 * expected + 400
    assert _similarity(out, reference) > 0.95


def test_raw_pcm_in_int16_and_float32_matches_frames(make_speech) -> None:
    path = make_speech(SENTENCE, rate=48000)
    frames = wav_frames_as_av(path, "s16")
    pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in frames])
    a = InputConverter().convert(pcm, 48000)
    b = InputConverter().convert(pcm.astype(np.float32) / 32768.0, 48000)
    assert len(a) == len(b) > 16000
    assert np.allclose(a, b, atol=1e-3)


def test_format_change_midstream_and_bad_values_never_raise() -> None:
    conv = InputConverter()
    rng = np.random.default_rng(0)
    loud = rng.uniform(-1, 1, 960).astype(np.float32)
    loud[::7] = np.nan
    loud[::11] = np.inf
    out1 = conv.convert(loud, 48000)
    stereo = av.AudioFrame.from_ndarray(np.zeros((2, 441), np.float32), format="fltp", layout="stereo")
    stereo.sample_rate = 44100
    out2 = conv.convert(stereo)
    out3 = conv.convert(np.zeros(0, np.int16), 16000)
    assert np.isfinite(out1).all() and np.isfinite(out2).all() and out3.size == 0
    assert np.abs(out1).max() <= 1.0


def test_raw_pcm_without_rate_is_a_clear_error() -> None:
    with pytest.raises(AudioFormatError, match="sample_rate"):
        InputConverter().convert(np.zeros(160, np.int16))


def test_output_is_20ms_frames_at_surface_rate() -> None:
    src_rate = 22050
    tone = (np.sin(2 * np.pi * 440 * np.arange(src_rate) / src_rate) * 8000).astype(np.int16)
    out, chunker = OutputConverter(48000), FrameChunker(48000)
    frames = [chunker.push(out.convert(tone[i : i + 1234], src_rate)) for i in range(0, len(tone), 1234)]
    frames.append(chunker.push(out.flush()))
    frames.append(chunker.flush())
    for f in frames:
        assert len(f) % 960 == 0
    total = np.concatenate(frames)
    assert abs(len(total) - 48000) <= 960 + 64
    # Still a 440 Hz tone after resampling: the spectrum peaks there.
    spectrum = np.abs(np.fft.rfft(total[:48000].astype(np.float64)))
    assert abs(np.argmax(spectrum) * 48000 / 48000 - 440) < 3
