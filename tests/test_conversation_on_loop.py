"""Engines on a loop the surface owns (aiortc's, in the app): frames go in with no thread of their own."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from tests.conftest import wav_frames_as_av
from voicechat.config import Settings
from voicechat.conversation_factory import conversation_factory
from voicechat.conversation_on_loop import ConversationOnLoop, running_engines
from voicechat.events import AudioOut, Event, FinalTranscript

pytestmark = pytest.mark.slow


def test_a_turn_on_the_media_loop_and_a_close_there_that_does_not_block_it(make_speech) -> None:
    frames = wav_frames_as_av(make_speech("What is the capital of Italy?", rate=48000), "s16")
    loop = asyncio.new_event_loop()
    media = threading.Thread(target=loop.run_forever, name="media-loop", daemon=True)
    media.start()
    got: list[tuple[str, Event]] = []
    lock = threading.Lock()

    def listener(ev: Event) -> None:
        with lock:
            got.append((threading.current_thread().name, ev))

    settings = Settings.load({"stt": "local", "llm": "local", "tts": "local"}, environ={}, dotenv_path=None)
    before = running_engines()
    runner = ConversationOnLoop(conversation_factory(settings), listener, loop=loop)
    runner.wait_ready(120)
    assert running_engines() == before + 1

    async def play() -> None:  # the media loop receives the mic, as aiortc's does
        for f in frames:
            runner.push(f)
            await asyncio.sleep(0.002)

    asyncio.run_coroutine_threadsafe(play(), loop).result(60)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with lock:
            if any(isinstance(e, AudioOut) for _, e in got):
                break
        time.sleep(0.05)
    with lock:
        assert any(isinstance(e, FinalTranscript) and "italy" in e.text.lower() for _, e in got)
        assert any(isinstance(e, AudioOut) for _, e in got)
        assert {name for name, _ in got} == {"media-loop"}  # events arrive on the loop, no thread added

    async def close_there() -> bool:
        t0 = time.monotonic()
        runner.close()  # on the loop itself: must schedule the stop, not wait for it (that would deadlock)
        returned_at_once = time.monotonic() - t0 < 2.0  # a wait there gives up only after its 5 s timeout
        await asyncio.sleep(0.5)
        conv = runner.conversation
        return returned_at_once and conv is not None and conv._closed

    assert asyncio.run_coroutine_threadsafe(close_there(), loop).result(30)
    assert running_engines() == before and not runner.alive
    runner.push(frames[0])  # after close: ignored
    loop.call_soon_threadsafe(loop.stop)
    media.join(10)
