"""Local backends fail with a message that names the file and the fix; oversized audio is refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from voicechat.audio import write_wav
from voicechat.errors import ModelFileError


def test_corrupt_gguf_names_the_file_and_the_setting(tmp_path: Path) -> None:
    from voicechat.llm.local import LocalChat

    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + os.urandom(4096))
    with pytest.raises(ModelFileError) as info:
        LocalChat(str(bad))
    assert str(bad) in str(info.value) and "VOICECHAT_LOCAL_LLM_MODEL" in str(info.value)
    with pytest.raises(ModelFileError, match="does not exist"):
        LocalChat(str(tmp_path / "missing.gguf"))


def test_missing_whisper_model_names_the_directory_and_the_setting(tmp_path: Path) -> None:
    from voicechat.stt.local import LocalSTT

    with pytest.raises(ModelFileError) as info:
        LocalSTT(str(tmp_path / "no-model-here"))
    assert "no-model-here" in str(info.value) and "VOICECHAT_LOCAL_STT_MODEL" in str(info.value)


def test_missing_or_corrupt_piper_voice_names_the_file(tmp_path: Path) -> None:
    from voicechat.tts.local import PiperTTS

    with pytest.raises(ModelFileError) as info:
        PiperTTS(str(tmp_path / "missing.onnx"))
    assert "missing.onnx" in str(info.value) and "VOICECHAT_PIPER_VOICE" in str(info.value)
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(os.urandom(2048))
    Path(str(corrupt) + ".json").write_text('{"audio": {"sample_rate": 22050}}')
    with pytest.raises(ModelFileError, match=r"corrupt\.onnx"):
        PiperTTS(str(corrupt))


def test_audio_over_the_limit_is_refused_with_a_message(tmp_path: Path) -> None:
    big = tmp_path / "long.wav"
    write_wav(big, np.zeros(16000 * 40, np.int16), 16000)  # 1.28 MB
    env = {**os.environ, "VOICECHAT_MAX_AUDIO_BYTES": "1000000", "HF_HUB_OFFLINE": "1"}
    for cmd in (["transcribe", str(big)], ["turn", str(big)]):
        proc = subprocess.run(
            [sys.executable, "-m", "voicechat", *cmd], capture_output=True, text=True, timeout=60, env=env
        )
        assert proc.returncode == 2
        assert "over the 1.0 MB limit" in proc.stderr and "VOICECHAT_MAX_AUDIO_BYTES" in proc.stderr


def test_languages_without_a_piper_voice_speak_through_espeak_ng() -> None:
    import asyncio

    from voicechat.backends import make_tts
    from voicechat.config import Settings
    from voicechat.tts.local import EspeakTTS

    for lang, text in (("ko-KR", "안녕하세요. 만나서 반가워요."), ("ja-JP", "こんにちは。"), ("zh-CN", "你好。")):
        tts = make_tts(Settings.load({"tts": "local", "language": lang}, environ={}, dotenv_path=None))
        assert isinstance(tts, EspeakTTS)

        async def speak(t: EspeakTTS = tts, words: str = text) -> list[np.ndarray]:
            return [c async for c in t.synthesize(words)]

        pcm = np.concatenate(asyncio.run(speak()))
        assert len(pcm) / tts.sample_rate > 0.3 and np.abs(pcm).max() > 3000
