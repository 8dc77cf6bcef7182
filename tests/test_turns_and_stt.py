"""Turn detection on real speech with pauses, and the offline transcriber's accuracy."""

from __future__ import annotations

import asyncio
import re

import numpy as np
import pytest

from tests.conftest import piper_pcm
from voicechat.audio import int16_to_float, read_audio
from voicechat.end_of_turn import SilenceSegmenter, SpeechStart, TurnConfig, TurnEnd
from voicechat.vad import SileroVAD, WebRtcVAD

pytestmark = pytest.mark.slow


def _speech16k(voice, text: str) -> np.ndarray:
    from voicechat.audio import InputConverter

    pcm, rate = piper_pcm(voice, text)
    return InputConverter().convert(pcm, rate)


def _silence(s: float) -> np.ndarray:
    return np.zeros(int(16000 * s), dtype=np.float32)


@pytest.fixture(scope="module")
def two_questions(piper_voice) -> tuple[np.ndarray, list[tuple[int, int]]]:
    a = _speech16k(piper_voice, "Hello there, how are you today?")
    b = _speech16k(piper_voice, "What time is it in Tokyo?")
    parts = [_silence(0.5), a, _silence(1.2), b, _silence(1.2)]
    starts = [len(parts[0]), len(parts[0]) + len(a) + len(parts[2])]
    spans = [(starts[0], starts[0] + len(a)), (starts[1], starts[1] + len(b))]
    return np.concatenate(parts), spans


@pytest.mark.parametrize("vad_kind", ["silero", "webrtc"])
def test_recording_with_pauses_splits_into_the_right_turns(two_questions, vad_kind: str) -> None:
    audio, spans = two_questions
    det = SilenceSegmenter(SileroVAD() if vad_kind == "silero" else WebRtcVAD(), TurnConfig(end_of_turn_ms=500))
    events = []
    for i in range(0, len(audio), 320):  # 20 ms chunks, as a microphone sends
        events += det.feed(audio[i : i + 320])
    ends = [e for e in events if isinstance(e, TurnEnd)]
    starts = [e for e in events if isinstance(e, SpeechStart)]
    assert len(ends) == 2 and len(starts) == 2
    for (s, e), start_ev, end_ev in zip(spans, starts, ends, strict=True):
        # Piper's own leading/trailing silence is part of the span, so allow 250 ms.
        assert abs(start_ev.at - s) < 0.25 * 16000
        assert abs(end_ev.last_voiced - e) < 0.25 * 16000
        assert 0.5 * 16000 <= end_ev.at - end_ev.last_voiced < 0.6 * 16000  # the configured wait
        assert not end_ev.forced


def test_a_short_pause_inside_a_sentence_does_not_end_the_turn(piper_voice) -> None:
    a = _speech16k(piper_voice, "I would like to know")
    b = _speech16k(piper_voice, "the weather for tomorrow.")
    audio = np.concatenate([_silence(0.3), a, _silence(0.25), b, _silence(1.0)])
    det = SilenceSegmenter(SileroVAD(), TurnConfig(end_of_turn_ms=600))
    ends = [e for e in det.feed(audio) if isinstance(e, TurnEnd)]
    assert len(ends) == 1
    assert len(ends[0].audio) > len(a) + len(b) - 0.3 * 16000


def test_silence_and_noise_make_no_turn() -> None:
    rng = np.random.default_rng(1)
    det = SilenceSegmenter(SileroVAD())
    assert det.feed(_silence(3.0)) == []
    assert [
        e for e in det.feed((rng.standard_normal(16000 * 3) * 0.05).astype(np.float32)) if isinstance(e, TurnEnd)
    ] == []


def test_endless_speech_is_cut_at_the_maximum_with_bounded_buffers(piper_voice) -> None:
    sentence = _speech16k(piper_voice, "and then we kept on talking about many different things")
    det = SilenceSegmenter(SileroVAD(), TurnConfig(max_utterance_s=4.0, end_of_turn_ms=800))
    ends = []
    longest = 0
    for _ in range(6):  # ~18 s of speech with only short gaps
        ends += [e for e in det.feed(np.concatenate([sentence, _silence(0.15)])) if isinstance(e, TurnEnd)]
        longest = max(longest, len(det.current_audio()))
    forced = [e for e in ends if e.forced]
    assert len(forced) >= 3
    assert all(len(e.audio) <= 4.0 * 16000 + 512 for e in forced)
    assert longest <= 4.0 * 16000 + 512


def _wer(ref: str, hyp: str) -> float:
    r = re.sub(r"[^a-z0-9' ]", " ", ref.lower()).split()
    h = re.sub(r"[^a-z0-9' ]", " ", hyp.lower()).split()
    d = list(range(len(h) + 1))
    for i in range(1, len(r) + 1):
        prev, d[0] = d[0], i
        for j in range(1, len(h) + 1):
            cur = min(d[j] + 1, d[j - 1] + 1, prev + (r[i - 1] != h[j - 1]))
            prev, d[j] = d[j], cur
    return d[len(h)] / max(1, len(r))


SENTENCES = [
    "What is the capital of Italy?",
    "Please tell me a short story about a brave little dog.",
    "How many minutes are there in one hour?",
    "Turn on the lights in the kitchen and close the door.",
    "Can you recommend a good book for the weekend?",
]


@pytest.mark.parametrize("rate", [8000, 44100, 48000])
def test_local_transcription_word_error_rate_on_piper_speech(make_speech, rate: int) -> None:
    from voicechat.stt.local import LocalSTT

    stt = LocalSTT()
    errors = words = 0
    for text in SENTENCES:
        hyp = asyncio.run(stt.transcribe(read_audio(make_speech(text, rate=rate)), language="en-US"))
        errors += round(_wer(text, hyp) * len(text.split()))
        words += len(text.split())
    assert errors / words <= 0.10, f"WER {errors / words:.2%} at {rate} Hz"


def test_transcriber_says_nothing_for_silence_and_noise() -> None:
    from voicechat.stt.local import LocalSTT

    stt = LocalSTT()
    assert asyncio.run(stt.transcribe(_silence(2.0))) == ""
    assert asyncio.run(stt.transcribe(int16_to_float(np.zeros(800, np.int16)))) == ""
