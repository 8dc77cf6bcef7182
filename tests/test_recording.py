"""Recordings: both sides of a real offline turn, time-aligned, each reply on its own; opt-in and bounded."""

from __future__ import annotations

import asyncio
import io
import wave
import zipfile
from pathlib import Path

import numpy as np
import pytest

from voicechat.audio import int16_to_float
from voicechat.config import Settings
from voicechat.conversation_factory import create_conversation
from voicechat.errors import ConfigError
from voicechat.events import AudioOut, Interrupted
from voicechat.file_turns import run_turn_from_wav
from voicechat.recording import ConversationRecorder

QUESTION = "What is the capital of Italy?"


def read_wav(data: bytes) -> tuple[np.ndarray, int]:
    """(samples as (n, channels) int16, rate)."""
    with wave.open(io.BytesIO(data)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, w.getnchannels())
        return pcm, w.getframerate()


def voiced(track: np.ndarray, rate: int, frame_s: float = 0.02) -> np.ndarray:
    """Start times (s) of the 20 ms frames with sound in them."""
    n = int(rate * frame_s)
    frames = track[: len(track) // n * n].astype(np.float64).reshape(-1, n)
    return np.flatnonzero(np.sqrt((frames**2).mean(axis=1)) > 300) * frame_s


@pytest.fixture(scope="module")
def offline():
    from voicechat.backends import make_llm, make_stt, make_tts

    s = Settings.load({"stt": "local", "llm": "local", "tts": "local"}, environ={}, dotenv_path=None)
    return s, make_stt(s), make_llm(s), make_tts(s)


@pytest.mark.slow
def test_a_real_turn_is_recorded_on_both_sides_time_aligned_and_never_touches_disk(
    offline, make_speech, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s, stt, llm, tts = offline
    # Past the end-of-turn ceiling (1.6 s): the turn ends on silence fed in real time, however slow the
    # score, never on end_of_input's silence added at once (which would shift the tracks against the clock).
    wav = make_speech(QUESTION, rate=48000, lead_s=0.5, trail_s=2.0)
    monkeypatch.chdir(tmp_path)

    async def run():
        conv = create_conversation(s.replace(record_audio=True), stt=stt, llm=llm, tts=tts, output_rate=48000)
        try:
            result = await run_turn_from_wav(conv, wav, realtime=True)
            # The microphone stays open while the reply plays: 20 ms of room silence at a time.
            silence = np.zeros(320, dtype=np.float32)
            while conv.replying:
                conv.feed_16k(silence)
                await asyncio.sleep(0.02)
            assert conv.recording is not None
            return result, conv.recording.take()
        finally:
            await conv.aclose()

    result, rec = asyncio.run(run())
    assert "italy" in result.transcript.lower() and result.reply
    assert list(tmp_path.iterdir()) == [], "a recording must not be written to disk unless asked"

    stereo, rate = read_wav(rec.conversation_wav())
    assert stereo.shape[1] == 2 and rate == 24000
    user, assistant = stereo[:, 0], stereo[:, 1]
    heard = asyncio.run(stt.transcribe(int16_to_float(rec.tracks(16000)[0]), language="en-US"))
    assert "italy" in heard.lower(), heard
    said, replied = voiced(user, rate), voiced(assistant, rate)
    assert said.size and replied.size, "one side of the conversation is silent"
    # The question is 0.5 s into the file; the reply starts after it ends, as long after it as the
    # engine measured in this run (end of speech → first reply audio), whatever the machine's speed.
    assert abs(said[0] - 0.5) < 0.25, said[0]
    assert result.metrics is not None and result.metrics.first_audio_ms is not None
    first_audio_s = result.metrics.first_audio_ms / 1000
    assert said[-1] < replied[0], (said[-1], replied[0])
    assert abs((replied[0] - said[-1]) - first_audio_s) < 0.4, (said[-1], replied[0], first_audio_s)
    assert not voiced(user[int(replied[0] * rate) :], rate).size, "the user's side must not hold the reply"

    # Each reply on its own: exactly the reply audio the surface was sent.
    reply, reply_rate = read_wav(rec.reply_wav(1))
    assert reply_rate == 48000 and np.array_equal(reply[:, 0], result.pcm)
    assert abs(len(result.pcm) / 48000 - len(np.flatnonzero(assistant)) / rate) < 0.3
    assert rec.turns == [1] and not rec.full

    out = rec.write(tmp_path / "talk.zip")
    names = zipfile.ZipFile(out).namelist()
    assert names == ["user.wav", "assistant.wav", "reply-turn-1.wav"]


@pytest.mark.slow
def test_recording_is_off_unless_asked(offline) -> None:
    s, stt, llm, tts = offline
    assert create_conversation(s, stt=stt, llm=llm, tts=tts).recording is None
    assert Settings.load(environ={"VOICECHAT_RECORD_AUDIO": "1"}, dotenv_path=None).record_audio is True
    assert Settings.load(environ={"VOICECHAT_RECORD_AUDIO": "off"}, dotenv_path=None).record_audio is False
    with pytest.raises(ConfigError, match="VOICECHAT_RECORD_AUDIO"):
        Settings.load(environ={"VOICECHAT_RECORD_AUDIO": "maybe"}, dotenv_path=None)
    with pytest.raises(ConfigError, match="VOICECHAT_RECORD_MAX_S"):
        Settings.load(environ={"VOICECHAT_RECORD_MAX_S": "0"}, dotenv_path=None)


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_barge_in_keeps_only_the_reply_audio_that_was_played() -> None:
    clock = Clock()
    rec = ConversationRecorder(24000, max_s=60, clock=clock)
    tone = (np.sin(np.arange(24000 * 3) / 5) * 8000).astype(np.int16)  # 3 s of reply audio
    for _ in range(50):  # 1 s of microphone in real time
        rec.add_input(np.full(320, 0.2, dtype=np.float32))
        clock.t += 0.02
    rec.on_event(AudioOut(1, tone, 24000))  # the whole reply arrives at once, plays from 1.0 s
    for _ in range(25):  # 0.5 s later the user talks over it
        rec.add_input(np.zeros(320, dtype=np.float32))
        clock.t += 0.02
    rec.on_event(Interrupted(1, "barge-in"))
    take = rec.take()
    played = sum(len(seg.pcm) for seg in take.assistant) / 24000
    assert abs(played - 0.5) < 0.03, played
    assert take.assistant[0].start_s == pytest.approx(1.0, abs=0.03)
    user, assistant = take.tracks(24000)
    assert len(user) == len(assistant) and voiced(assistant, 24000).max() < 1.55


def test_a_pause_in_the_input_stays_a_pause_and_the_size_is_bounded() -> None:
    clock = Clock()
    rec = ConversationRecorder(24000, max_s=5, clock=clock)
    loud = np.full(1600, 0.2, dtype=np.float32)  # 100 ms chunks
    for _ in range(10):
        rec.add_input(loud)
        clock.t += 0.1
    clock.t += 2.0  # the microphone was off for 2 s
    for _ in range(30):
        rec.add_input(loud)
        clock.t += 0.1
    take = rec.take()
    assert take.full and take.duration_s == pytest.approx(5.0)
    said = voiced(take.tracks(16000)[0], 16000)
    gap = np.diff(said).max()
    assert 1.9 < gap < 2.2, gap
    rec.clear()
    assert rec.take().duration_s == 0 and not rec.take().full
    with pytest.raises(ValueError, match=r"\.wav or \.zip"):
        take.write("talk.mp3")
