"""The thread boundary: audio pushed from a foreign thread drives a turn; close leaves no thread."""

from __future__ import annotations

import threading
import time

import pytest

from tests.conftest import wav_frames_as_av
from voicechat.config import Settings
from voicechat.conversation_factory import conversation_factory
from voicechat.conversation_thread import ConversationThread
from voicechat.events import AudioOut, Event, FinalTranscript, ReplyDone

pytestmark = pytest.mark.slow


def _local_runner() -> tuple[ConversationThread, list[Event], threading.Lock]:
    """A ready runner on the offline backends, and the events it has sent (read them under the lock)."""
    got: list[Event] = []
    lock = threading.Lock()

    def listener(ev: Event) -> None:
        with lock:
            got.append(ev)

    settings = Settings.load({"stt": "local", "llm": "local", "tts": "local"}, environ={}, dotenv_path=None)
    runner = ConversationThread(conversation_factory(settings), listener)
    runner.wait_ready(120)
    return runner, got, lock


def test_frames_from_another_thread_make_a_turn_and_close_joins(make_speech) -> None:
    frames = wav_frames_as_av(make_speech("What is the capital of Italy?", rate=48000), "s16")
    before = {t.name for t in threading.enumerate()}
    runner, got, lock = _local_runner()

    def producer() -> None:  # plays the role of aiortc's track thread
        for f in frames:
            runner.push(f)
            time.sleep(0.002)

    t = threading.Thread(target=producer)
    t.start()
    t.join()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with lock:
            if any(isinstance(e, ReplyDone) for e in got):
                break
        time.sleep(0.05)
    runner.close()
    assert not runner.alive
    assert "voicechat-engine" not in {t.name for t in threading.enumerate()} - before
    with lock:
        assert any(isinstance(e, FinalTranscript) and "italy" in e.text.lower() for e in got)
        assert any(isinstance(e, AudioOut) for e in got)
    runner.push(frames[0])  # after close: ignored, no error


def test_frames_pushed_while_the_engine_is_busy_all_arrive_in_order(make_speech) -> None:
    """A busy engine thread takes the frames that queued meanwhile in one go: none lost, none reordered."""
    frames = wav_frames_as_av(make_speech("Please tell me the capital of Italy.", rate=48000, trail_s=2.0), "s16")
    runner, got, lock = _local_runner()
    busy = threading.Event()

    def hold(_conv: object) -> None:  # the engine thread is stuck in a long callback
        busy.set()
        time.sleep(1.0)

    holder = threading.Thread(target=lambda: runner.run(hold, timeout=30))
    holder.start()
    assert busy.wait(10)
    for f in frames:  # all of it arrives while the engine cannot take it
        runner.push(f)
    holder.join()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with lock:
            if any(isinstance(e, FinalTranscript) for e in got):
                break
        time.sleep(0.05)
    runner.close()
    with lock:
        finals = [e.text.lower() for e in got if isinstance(e, FinalTranscript)]
    assert len(finals) == 1 and "capital of italy" in finals[0], finals
