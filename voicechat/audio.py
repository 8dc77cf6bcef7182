"""Audio in and out: any frame → 16 kHz mono float32; reply PCM → the surface's rate in 20 ms frames.

Resampling is PyAV's (libswresample), which filters properly; a naive interpolation
would alias and hurt both VAD and STT. Every function here runs on the caller's thread
and keeps no global state: converters are per stream because resamplers carry filter history.
"""

from __future__ import annotations

import itertools
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np

from voicechat.errors import AudioFormatError, AudioTooLarge

SPEECH_RATE = 16_000  # what the engine hears: VAD, end of turn, STT and the user's recording all take 16 kHz
FRAME_MS = 20

_NP_TO_AV = {
    np.dtype(np.int16): "s16",
    np.dtype(np.int32): "s32",
    np.dtype(np.float32): "flt",
    np.dtype(np.float64): "dbl",
}


def _sanitize_float_frame(frame: av.AudioFrame) -> av.AudioFrame:
    """NaN/inf in float audio would poison the resampler's filter state: replace them with 0."""
    if frame.format.name not in ("flt", "fltp", "dbl", "dblp"):
        return frame
    arr = frame.to_ndarray()
    if np.isfinite(arr).all():
        return frame
    clean = np.nan_to_num(arr, nan=0.0, posinf=1.0, neginf=-1.0)
    out = av.AudioFrame.from_ndarray(np.ascontiguousarray(clean), format=frame.format.name, layout=frame.layout.name)
    out.sample_rate = frame.sample_rate
    return out


def ndarray_to_frame(pcm: np.ndarray, sample_rate: int, channels: int = 1) -> av.AudioFrame:
    """Raw interleaved PCM (int16/int32/float32/float64, shape (n,) or (n, channels)) → av.AudioFrame."""
    arr = np.asarray(pcm)
    fmt = _NP_TO_AV.get(arr.dtype)
    if fmt is None:
        raise AudioFormatError(f"unsupported PCM dtype {arr.dtype}", "pass int16, int32, float32 or float64 samples")
    if arr.ndim == 2:
        channels = arr.shape[1]
    if channels not in (1, 2):
        raise AudioFormatError(
            f"{channels}-channel raw PCM is not supported", "pass mono or stereo, or an av.AudioFrame"
        )
    if not 1000 <= sample_rate <= 384_000:
        raise AudioFormatError(f"sample rate {sample_rate} Hz is out of range", "pass 8000–96000 Hz audio")
    flat = np.ascontiguousarray(arr.reshape(1, -1))
    frame = av.AudioFrame.from_ndarray(flat, format=fmt, layout="mono" if channels == 1 else "stereo")
    frame.sample_rate = int(sample_rate)
    return frame


class InputConverter:
    """Turns a stream of frames in any format into 16 kHz mono float32.

    One per input stream; not thread-safe (the engine calls it from its own loop).
    A new resampler is made whenever the incoming format changes, because libswresample
    is configured for one input format.
    """

    def __init__(self, rate: int = SPEECH_RATE) -> None:
        self.rate = rate
        self._key: tuple[Any, ...] | None = None
        self._resampler: av.AudioResampler | None = None

    def convert(self, audio: av.AudioFrame | np.ndarray, sample_rate: int | None = None) -> np.ndarray:
        if isinstance(audio, np.ndarray):
            if sample_rate is None:
                raise AudioFormatError("raw PCM needs its sample rate", "pass sample_rate=…")
            if audio.size == 0:
                return np.zeros(0, dtype=np.float32)
            if sample_rate == self.rate and (audio.ndim == 1 or audio.shape[-1] == 1):
                same = _scale_mono(audio)
                if same is not None:  # already at the target rate: nothing to filter
                    self._key, self._resampler = None, None
                    return same
            frame = ndarray_to_frame(audio, sample_rate)
        else:
            frame = audio
        if frame.samples == 0:
            return np.zeros(0, dtype=np.float32)
        frame = _sanitize_float_frame(frame)
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        if key != self._key or self._resampler is None:
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=self.rate)
            self._key = key
        frame.pts = None  # gaps or jumps in pts must not make the resampler insert or drop audio
        try:
            out = self._resampler.resample(frame)
        except (ValueError, av.FFmpegError) as exc:
            raise AudioFormatError(f"could not convert audio frame ({key}): {exc}") from exc
        if not out:
            return np.zeros(0, dtype=np.float32)
        if len(out) == 1:  # the usual case: one frame in, one out
            samples = out[0].to_ndarray().reshape(-1)
        else:
            samples = np.concatenate([f.to_ndarray().reshape(-1) for f in out])
        np.clip(samples, -1.0, 1.0, out=samples)  # the filter can ring past full scale
        return samples


def _scale_mono(pcm: np.ndarray) -> np.ndarray | None:
    """Mono PCM already at the target rate → float32 in [-1, 1], without a resampler.

    This is the notebook's path (its worklet sends 16 kHz) and a 16 kHz microphone's: about half
    the per-frame cost of going through libswresample, which would only change the sample format.
    None for a dtype this does not handle, which then takes the resampler (and its error message).
    """
    flat = pcm.reshape(-1)
    if flat.dtype == np.int16:
        return flat.astype(np.float32) * np.float32(1 / 32768)
    if flat.dtype == np.int32:
        return (flat * (1 / 2147483648)).astype(np.float32)
    if flat.dtype in (np.float32, np.float64):
        out = np.nan_to_num(flat.astype(np.float32), nan=0.0, posinf=1.0, neginf=-1.0)
        np.clip(out, -1.0, 1.0, out=out)
        return out
    return None


class OutputConverter:
    """Resamples reply PCM (int16 mono at the backend's rate) to the surface's rate.

    One per reply stream, reset on barge-in so no stale filter tail leaks into the next reply.
    """

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._src_rate: int | None = None
        self._resampler: av.AudioResampler | None = None

    def reset(self) -> None:
        self._resampler = None
        self._src_rate = None

    def convert(self, pcm: np.ndarray, src_rate: int) -> np.ndarray:
        pcm = np.asarray(pcm, dtype=np.int16)
        if src_rate == self.rate or pcm.size == 0:
            return pcm.copy() if src_rate == self.rate else np.zeros(0, np.int16)
        if self._resampler is None or self._src_rate != src_rate:
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=self.rate)
            self._src_rate = src_rate
        frames = self._resampler.resample(ndarray_to_frame(pcm, src_rate))
        if not frames:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.int16, copy=False)

    def flush(self) -> np.ndarray:
        """The resampler's buffered tail at the end of a reply."""
        if self._resampler is None:
            return np.zeros(0, dtype=np.int16)
        frames = self._resampler.resample(None)
        self.reset()
        if not frames:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.int16, copy=False)


class FrameChunker:
    """Cuts a PCM stream into fixed frames (20 ms by default); keeps the remainder for the next push."""

    def __init__(self, rate: int, frame_ms: int = FRAME_MS) -> None:
        self.frame_samples = rate * frame_ms // 1000
        self._pending = np.zeros(0, dtype=np.int16)

    def push(self, pcm: np.ndarray) -> np.ndarray:
        """Whole frames available now, as one array whose length is a multiple of the frame."""
        data = np.concatenate([self._pending, np.asarray(pcm, dtype=np.int16)])
        whole = len(data) - len(data) % self.frame_samples
        self._pending = data[whole:]
        return data[:whole]

    def flush(self) -> np.ndarray:
        """The remainder padded with silence to a whole frame (end of a reply)."""
        if len(self._pending) == 0:
            return np.zeros(0, dtype=np.int16)
        out = np.zeros(self.frame_samples, dtype=np.int16)
        out[: len(self._pending)] = self._pending
        self._pending = np.zeros(0, dtype=np.int16)
        return out

    def clear(self) -> None:
        self._pending = np.zeros(0, dtype=np.int16)


def float_to_int16(audio: np.ndarray) -> np.ndarray:
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16)


def int16_to_float(pcm: np.ndarray) -> np.ndarray:
    return (np.asarray(pcm, dtype=np.int16).astype(np.float32)) / 32768.0


def check_size(path: str | Path, limit: int) -> None:
    """Refuse a file over ``limit`` bytes before reading any of it."""
    size = Path(path).stat().st_size if Path(path).is_file() else 0
    if size > limit:
        raise AudioTooLarge(
            f"{path} is {size / 1e6:.1f} MB, over the {limit / 1e6:.1f} MB limit for audio",
            "send a shorter recording, or raise VOICECHAT_MAX_AUDIO_BYTES",
        )


def _decoded(path: str | Path) -> Iterator[av.AudioFrame]:
    """Every audio frame of a file, through FFmpeg: WAV in any sample format (16/24/32-bit, float,
    WAVE_FORMAT_EXTENSIBLE), FLAC, OGG, MP3…

    Whatever FFmpeg cannot open or decode becomes one :class:`AudioFormatError` naming the file,
    so every command reports a bad file the same way, in one line.
    """
    try:
        container = av.open(str(path))
    except (OSError, av.FFmpegError) as exc:
        raise AudioFormatError(f"cannot read audio file {path}: {exc}", "check the path and format") from exc
    with container:
        if not container.streams.audio:
            raise AudioFormatError(f"{path} has no audio stream", "pass a file with sound in it")
        try:
            yield from container.decode(audio=0)
        except (OSError, av.FFmpegError) as exc:
            raise AudioFormatError(f"cannot decode audio file {path}: {exc}", "check the file is not damaged") from exc


def read_audio(path: str | Path, rate: int = SPEECH_RATE) -> np.ndarray:
    """Decode any audio file FFmpeg reads (WAV, FLAC, MP3, OGG…) to mono float32 at ``rate``."""
    conv = InputConverter(rate)
    parts = [conv.convert(frame) for frame in _decoded(path)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


def iter_wav_frames(path: str | Path, frame_ms: int = FRAME_MS) -> tuple[list[np.ndarray], int]:
    """Any audio file as int16 frames of ``frame_ms`` at its own rate, as a microphone sends them.

    Mono files give (n, 1) frames, anything with more channels is mixed to stereo (n, 2):
    the engine's input path takes both, and keeping the file's rate means the resampling a
    live microphone goes through is exercised too.
    """
    frames = _decoded(path)
    first = next(frames, None)
    if first is None:
        return [], SPEECH_RATE
    rate = int(first.sample_rate)
    channels = 1 if first.layout.nb_channels == 1 else 2
    resampler = av.AudioResampler(format="s16", layout="mono" if channels == 1 else "stereo", rate=rate)
    parts: list[np.ndarray] = []
    try:
        for frame in itertools.chain([first], frames):
            frame.pts = None
            parts += [f.to_ndarray().reshape(-1, channels) for f in resampler.resample(_sanitize_float_frame(frame))]
        parts += [f.to_ndarray().reshape(-1, channels) for f in resampler.resample(None)]
    except (ValueError, av.FFmpegError) as exc:  # e.g. the format changes mid-file
        raise AudioFormatError(f"cannot convert audio file {path}: {exc}", "convert it to one format first") from exc
    data = np.concatenate(parts) if parts else np.zeros((0, channels), dtype=np.int16)
    step = rate * frame_ms // 1000
    return [data[i : i + step] for i in range(0, len(data), step)], rate


def write_wav(path: str | Path, pcm: np.ndarray, rate: int) -> None:
    """Write mono int16 PCM as a WAV file."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(pcm, dtype=np.int16).tobytes())


def rms_dbfs(pcm: np.ndarray) -> float:
    """Loudness of int16 or float audio in dBFS (-inf for digital silence)."""
    x = pcm.astype(np.float64) / (32768.0 if pcm.dtype == np.int16 else 1.0)
    if x.size == 0:
        return float("-inf")
    rms = float(np.sqrt(np.mean(x * x)))
    return 20 * np.log10(rms) if rms > 0 else float("-inf")
