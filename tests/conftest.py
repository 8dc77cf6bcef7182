"""Shared fixtures: real speech made by Piper and espeak-ng, at the rates a microphone sends.

Audio is synthesised once per test session into a temporary folder and converted with
sox-free numpy/PyAV code paths of our own only where the test is not about conversion.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VOICECHAT_ICE_SERVERS", "[]")
for _name in (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    *(f"VOICECHAT_{stage}_{what}" for stage in ("STT", "LLM", "TTS") for what in ("BASE_URL", "API_KEY")),
):
    os.environ.pop(_name, None)


def _resample_wav(src: Path, dst: Path, rate: int, channels: int) -> None:
    """Resample with sox (an independent tool), so conversion tests don't grade our own resampler."""
    subprocess.run(["sox", str(src), "-r", str(rate), "-c", str(channels), "-b", "16", str(dst)], check=True)


@pytest.fixture(scope="session")
def speech_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("speech")


@pytest.fixture(scope="session")
def piper_voice():
    from voicechat.tts.local import PiperTTS

    return PiperTTS(deterministic=True)  # reproducible speech: a failure can be replayed


def piper_pcm(voice, text: str) -> tuple[np.ndarray, int]:
    import asyncio

    async def run() -> list[np.ndarray]:
        return [c async for c in voice.synthesize(text)]

    return np.concatenate(asyncio.run(run())), voice.sample_rate


def write_wav(path: Path, pcm: np.ndarray, rate: int) -> Path:
    from voicechat.audio import write_wav as _w

    _w(path, pcm, rate)
    return path


@pytest.fixture(scope="session")
def make_speech(speech_dir: Path, piper_voice) -> Callable[..., Path]:
    """``make_speech(text, rate=16000, channels=1, engine="piper", lead_s=0.3, trail_s=1.0)`` → WAV path."""
    cache: dict[tuple[object, ...], Path] = {}

    def make(
        text: str,
        rate: int = 16000,
        channels: int = 1,
        engine: str = "piper",
        lead_s: float = 0.3,
        trail_s: float = 1.0,
    ) -> Path:
        key = (text, rate, channels, engine, lead_s, trail_s)
        if key in cache:
            return cache[key]
        base = speech_dir / f"src_{len(cache)}.wav"
        if engine == "piper":
            pcm, src_rate = piper_pcm(piper_voice, text)
        else:
            raw = speech_dir / f"espeak_{len(cache)}.wav"
            subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), text], check=True)
            from voicechat.audio import float_to_int16, read_audio

            src_rate = 22050
            pcm = float_to_int16(read_audio(raw, src_rate))
        pad = lambda s: np.zeros(int(src_rate * s), dtype=np.int16)  # noqa: E731
        write_wav(base, np.concatenate([pad(lead_s), pcm, pad(trail_s)]), src_rate)
        out = speech_dir / f"speech_{len(cache)}_{rate}_{channels}.wav"
        _resample_wav(base, out, rate, channels)
        cache[key] = out
        return out

    return make


def wav_frames_as_av(path: Path, fmt: str = "s16", frame_ms: int = 20) -> list[av.AudioFrame]:
    """A WAV as av.AudioFrames in ``fmt`` (s16, flt, fltp, s16p…), like WebRTC delivers them."""
    frames = []
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        rate = stream.rate
        layout = stream.layout.name
        resampler = av.AudioResampler(format=fmt, layout=layout, rate=rate, frame_size=rate * frame_ms // 1000)
        for f in c.decode(audio=0):
            frames.extend(resampler.resample(f))
        frames.extend(resampler.resample(None))
    return frames


def require(binary: str) -> None:
    if shutil.which(binary) is None:
        pytest.fail(f"{binary} is not installed; .ci/run installs it (apt-get install {binary})")
