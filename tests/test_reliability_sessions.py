"""Long-lived sessions: many start/stop cycles, many sessions at once, a 10-minute monologue."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time

import numpy as np
import pytest

from tests.conftest import piper_pcm
from voicechat.audio import InputConverter
from voicechat.benchmark.process_usage import rss_mb
from voicechat.config import Settings
from voicechat.conversation_factory import conversation_factory, create_conversation
from voicechat.conversation_thread import ConversationThread
from voicechat.events import Event, FinalTranscript, ReplyDone, SpeechEnded, TurnMetrics
from voicechat.models import SHARED_MODELS

pytestmark = pytest.mark.slow

OFFLINE = {"stt": "local", "llm": "local", "tts": "local"}


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_100_start_stop_cycles_leave_nothing_behind() -> None:
    settings = Settings.load(OFFLINE, environ={}, dotenv_path=None)
    factory = conversation_factory(settings)
    ConversationThread(factory, lambda e: None).close()  # models loaded once, outside the measurement
    gc.collect()
    threads0, fds0, rss0 = threading.active_count(), _fds(), rss_mb()
    for _ in range(100):
        runner = ConversationThread(factory, lambda e: None)
        runner.wait_ready(60)
        runner.push(np.zeros(960, np.int16), 48000)
        runner.close()
        assert not runner.alive
    gc.collect()
    time.sleep(0.2)
    assert threading.active_count() <= threads0
    assert _fds() <= fds0 + 2
    growth = rss_mb() - rss0
    print(
        f"100 cycles: RSS {rss0:.0f} → {rss_mb():.0f} MB, threads {threads0} → {threading.active_count()}, "
        f"fds {fds0} → {_fds()}"
    )
    assert growth < 20, f"RSS grew {growth:.1f} MB over 100 cycles"


def test_eight_sessions_at_once_share_one_copy_of_each_model(make_speech) -> None:
    from tests.conftest import wav_frames_as_av

    frames = wav_frames_as_av(make_speech("What is the capital of Italy?", rate=16000), "s16")
    settings = Settings.load(OFFLINE, environ={}, dotenv_path=None)
    rss0 = rss_mb()
    # Models other tests of this process loaded stay loaded (another Whisper for Korean, a one-thread
    # scorer for cloud replies): only what these eight sessions add is counted.
    before = set(SHARED_MODELS.loaded())
    results: list[list[Event]] = [[] for _ in range(8)]
    locks = [threading.Lock() for _ in range(8)]

    def listener(i: int):
        def on(ev: Event) -> None:
            with locks[i]:
                results[i].append(ev)

        return on

    runners = [ConversationThread(conversation_factory(settings), listener(i)) for i in range(8)]
    for r in runners:
        r.wait_ready(120)
    for f in frames:
        for r in runners:
            r.push(f)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if all(any(isinstance(e, TurnMetrics) for e in list(evs)) for evs in results):
            break
        time.sleep(0.1)
    for r in runners:
        r.close()
    loaded = SHARED_MODELS.loaded()
    added = [key[0] for key in loaded if key not in before]
    for kind in ("whisper", "llama", "piper", "silero"):
        assert added.count(kind) <= 1 and any(key[0] == kind for key in loaded), (added, loaded)
    for evs in results:
        assert any(isinstance(e, FinalTranscript) and "italy" in e.text.lower() for e in evs)
        assert any(isinstance(e, ReplyDone) and e.text for e in evs)
    print(f"8 sessions: RSS {rss0:.0f} → {rss_mb():.0f} MB")


def test_ten_minute_monologue_is_cut_and_transcribed_in_pieces(piper_voice) -> None:
    lines = [
        "Yesterday the weather was sunny and warm.",
        "My neighbour planted tomatoes in the garden.",
        "On Monday I will visit my grandmother.",
        "The train to the city leaves at nine.",
        "We cooked pasta with fresh basil for dinner.",
        "Later the children played football outside.",
    ]
    gap = np.zeros(int(16000 * 0.15), np.float32)  # breaths, far shorter than the end-of-turn silence
    piece = np.concatenate([np.concatenate([InputConverter().convert(*piper_pcm(piper_voice, t)), gap]) for t in lines])
    repeats = int(600 * 16000 / len(piece)) + 1
    settings = Settings.load(
        {**OFFLINE, "max_utterance_s": 30.0, "partial_interval_ms": 0}, environ={}, dotenv_path=None
    )
    from voicechat.backends import make_llm

    class CountingLLM:
        """The real local model, counting how often the engine asks it."""

        def __init__(self) -> None:
            self.inner, self.calls = make_llm(settings), 0
            self.name = self.inner.name

        def stream(self, messages):
            self.calls += 1
            return self.inner.stream(messages)

    llm = CountingLLM()

    async def run() -> tuple[list[Event], int]:
        conv = create_conversation(settings, llm=llm)
        longest = 0
        for _ in range(repeats):
            conv.feed_16k(piece)
            longest = max(longest, len(conv.turns.current_audio()))
            await asyncio.sleep(0)
        conv.feed_16k(np.zeros(16000, np.float32))
        await conv.wait_reply()
        events = conv.drain()
        await conv.aclose()
        return events, longest

    events, longest = asyncio.run(run())
    forced = [e for e in events if isinstance(e, SpeechEnded) and e.forced]
    finals = [e for e in events if isinstance(e, FinalTranscript)]
    assert len(forced) >= 19  # 600 s in pieces of at most 30 s
    assert longest <= 30 * 16000 + 1024
    assert len(finals) == 1 and llm.calls == 1  # one answer, to the whole monologue
    text = finals[0].text.lower()
    keywords = ("weather", "tomatoes", "grandmother", "train", "basil", "football")
    counts = {w: text.count(w) for w in keywords}
    assert sum(counts.values()) >= 0.7 * len(keywords) * repeats, (counts, repeats)  # nothing lost between pieces
    assert min(counts.values()) >= 0.4 * repeats, (counts, repeats)
