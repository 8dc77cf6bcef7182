"""Audio files as users have them: every file path reads through PyAV, whatever the WAV flavour or codec.

The files are made here from real Piper speech, by sox (an independent tool) or by hand for the
WAVE_FORMAT_EXTENSIBLE header that editors write — the formats Python's ``wave`` module refuses.
"""

from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import require
from voicechat import cli
from voicechat.audio import iter_wav_frames, read_audio
from voicechat.errors import AudioFormatError

QUESTION = "What is the capital of Italy?"
KSDATAFORMAT_SUBTYPE_PCM = bytes.fromhex("0100000000001000800000aa00389b71")


def write_extensible_wav(path: Path, pcm: np.ndarray, rate: int) -> Path:
    """16-bit stereo PCM with a WAVE_FORMAT_EXTENSIBLE (0xFFFE) header, as sox and many editors write it."""
    data = np.repeat(pcm.reshape(-1, 1), 2, axis=1).astype("<i2").tobytes()
    fmt = struct.pack("<HHIIHHHHI16s", 0xFFFE, 2, rate, rate * 4, 4, 16, 22, 16, 0x3, KSDATAFORMAT_SUBTYPE_PCM)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


@pytest.fixture(scope="module")
def question_files(make_speech, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    require("sox")
    src = make_speech(QUESTION, rate=44100)
    out = tmp_path_factory.mktemp("formats")
    files = {
        "float32": (["-e", "floating-point", "-b", "32"], "float.wav"),
        "24-bit": (["-t", "wavpcm", "-b", "24", "-r", "48000"], "s24.wav"),
        "flac": (["-r", "22050"], "question.flac"),
        "ogg": (["-c", "2"], "question.ogg"),
    }
    made: dict[str, Path] = {}
    for name, (opts, filename) in files.items():
        subprocess.run(["sox", str(src), *opts, str(out / filename)], check=True)
        made[name] = out / filename
    pcm = (read_audio(src, 48000) * 32767).astype(np.int16)
    made["extensible"] = write_extensible_wav(out / "extensible.wav", pcm, 48000)
    return made


FORMATS = ("float32", "extensible", "24-bit", "flac", "ogg")


def test_python_wave_refuses_these_files(question_files: dict[str, Path]) -> None:
    """The premise: these are the files the old ``wave``-based reader crashed on."""
    import wave

    for name in ("float32", "extensible", "flac"):
        with pytest.raises((wave.Error, EOFError)):
            wave.open(str(question_files[name])).close()


@pytest.mark.parametrize("name", FORMATS)
def test_every_format_becomes_20ms_frames_of_the_same_speech(
    question_files: dict[str, Path], make_speech, name: str
) -> None:
    frames, rate = iter_wav_frames(question_files[name])
    assert rate in (44100, 48000, 22050)
    assert all(f.dtype == np.int16 and f.shape[0] == rate // 50 for f in frames[:-1])
    # The same words as the 16-bit original, sample for sample up to codec loss.
    ours = np.concatenate(frames)[:, 0].astype(np.float32) / 32768
    ref = read_audio(make_speech(QUESTION, rate=44100), rate)
    n = min(len(ours), len(ref))
    assert abs(len(ours) - len(ref)) < rate * 0.1
    corr = float(np.dot(ours[:n], ref[:n]) / (np.linalg.norm(ours[:n]) * np.linalg.norm(ref[:n])))
    assert corr > 0.9, corr


@pytest.mark.slow
def test_voicechat_turn_answers_every_format(
    question_files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in FORMATS:
        code = cli.main(["turn", str(question_files[name]), "--json", "--fast", "--out", str(tmp_path / "r.wav")])
        out, err = capsys.readouterr()
        assert code == 0, (name, err)
        result = json.loads(out.strip().splitlines()[-1])
        assert "capital" in result["transcript"].lower() and "italy" in result["transcript"].lower(), (name, result)
        assert result["reply"] and result["reply_audio_s"] > 0.3, (name, result)


@pytest.mark.parametrize("command", ["turn", "transcribe"])
def test_unreadable_file_is_one_line_error_before_any_model_loads(
    tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "question.wav"
    bad.write_text("this is not audio\n")
    missing = tmp_path / "nowhere.flac"
    for path in (bad, missing):
        code = cli.main([command, str(path)])
        out, err = capsys.readouterr()
        assert code == 2 and out == ""
        assert err.startswith(f"error: cannot read audio file {path}") and len(err.strip().splitlines()) == 1, err


def test_bad_file_through_python_api_is_audio_format_error(tmp_path: Path) -> None:
    bad = tmp_path / "q.ogg"
    bad.write_bytes(b"OggS" + bytes(200))
    with pytest.raises(AudioFormatError, match=r"q\.ogg"):
        iter_wav_frames(bad)
