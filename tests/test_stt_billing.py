"""What a cloud STT bills: each second of speech uploaded once, with the live transcript kept.

Real Piper speech with a mid-sentence pause, fed in real time through the engine on the
OpenAI-format path (the loopback server), the local Whisper model writing the live text.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import numpy as np
import pytest

from tests.conftest import piper_pcm
from voicechat.audio import InputConverter
from voicechat.config import Settings
from voicechat.conversation_factory import create_conversation
from voicechat.events import FinalTranscript, PartialTranscript, ReplyDone
from voicechat_bench_kit.openai_loopback_server import TRANSCRIPTIONS, FakeOpenAIServer, Reply, serve, wav_seconds

pytestmark = pytest.mark.slow
KEY = "sk-test-billing"


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    yield from serve(api_key=KEY)


def _speech(voice, text: str) -> np.ndarray:
    pcm, rate = piper_pcm(voice, text)
    x = InputConverter().convert(pcm, rate)
    loud = np.flatnonzero(np.abs(x) > 0.02)
    return x[loud[0] : loud[-1] + 1]


def _settings(server: FakeOpenAIServer, **kw: str) -> Settings:
    values = {"stt": "openai", "llm": "openai", "tts": "openai", "end_of_turn_ms": 700, **kw}
    return Settings.load(values, environ={"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": server.base_url}, dotenv_path=None)


def _talk(settings: Settings, audio: np.ndarray) -> list[object]:

    async def run() -> list[object]:
        conv = create_conversation(settings)
        for i in range(0, len(audio), 320):  # real time: the speculative turn and the live text really run
            conv.feed_16k(audio[i : i + 320])
            await asyncio.sleep(0.02)
        await conv.wait_reply()
        events = conv.drain()
        await conv.aclose()
        return events

    return asyncio.run(run())


def test_a_paused_question_is_billed_once_and_still_shows_live_text(server: FakeOpenAIServer, piper_voice) -> None:
    first, second = _speech(piper_voice, "What is the capital"), _speech(piper_voice, "of Italy?")
    gap = np.zeros(5600, np.float32)  # 350 ms: a speculative start, then the user goes on
    audio = np.concatenate([np.zeros(4800, np.float32), first, gap, second, np.zeros(16000, np.float32)])
    spoken_s = (len(first) + len(gap) + len(second)) / 16000
    server.plan(TRANSCRIPTIONS, Reply(text="What is the capital"), Reply(text="of Italy?"))

    events = _talk(_settings(server), audio)

    uploads = server.requests_to(TRANSCRIPTIONS)
    billed_s = sum(wav_seconds(r.files["file"][2]) for r in uploads)
    assert len(uploads) == 2  # the words before the pause, then only the words after it
    assert billed_s <= 1.3 * spoken_s, (billed_s, spoken_s)
    finals = [e.text for e in events if isinstance(e, FinalTranscript)]
    assert finals == ["What is the capital of Italy?"]  # both pieces, in order, in one turn
    assert [e.text for e in events if isinstance(e, ReplyDone)] == ["Hello there!"]
    partials = [e.text.lower() for e in events if isinstance(e, PartialTranscript)]
    assert partials and partials[0].startswith("what")  # live text from the local model, free of charge


def test_interim_stt_stt_pays_the_provider_for_the_live_text(server: FakeOpenAIServer, piper_voice) -> None:
    question = _speech(piper_voice, "Could you tell me what the weather will be like tomorrow in Paris?")
    audio = np.concatenate([np.zeros(4800, np.float32), question, np.zeros(16000, np.float32)])

    events = _talk(_settings(server, interim_stt="stt"), audio)

    # The trade-off the setting names: live text from the provider re-sends the utterance so far.
    billed_s = server.stt_audio_seconds()
    assert billed_s > 1.3 * len(question) / 16000
    assert any(isinstance(e, PartialTranscript) for e in events)
