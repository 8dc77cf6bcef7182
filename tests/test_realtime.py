"""Realtime (speech-to-speech) turns against a WebSocket server that speaks the Realtime protocol.

The server (bench_kit/voicechat_bench_kit/realtime_loopback_server.py) stands in for OpenAI's; the engine,
its turn-taking, the ``openai`` SDK's realtime client and the WebSocket are real, and the user's
speech is Piper's.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from voicechat.audio import iter_wav_frames
from voicechat.benchmark.realtime_run import piper_voice
from voicechat.config import Settings, TurnSettings
from voicechat.conversation_factory import create_conversation
from voicechat.engine import Conversation
from voicechat.events import AudioOut, ErrorEvent, Event, Interrupted, ReplyDone, TurnMetrics
from voicechat.file_turns import run_turn_from_wav
from voicechat.realtime.session import RealtimeVoice
from voicechat_bench_kit.realtime_loopback_server import RATE_LIMITED, FakeRealtimeServer, Plan, serve_realtime

KEY = "sk-test-SECRET-realtime-0123456789"
LONG_REPLY = (
    "Rome is the capital of Italy. It has been a great city for more than two thousand years, "
    "and it is full of old churches, fountains and squares."
)


@pytest.fixture
def server() -> Iterator[FakeRealtimeServer]:
    yield from serve_realtime(api_key=KEY, voice=piper_voice)


def _settings(server: FakeRealtimeServer, key: str = KEY, **kw: Any) -> Settings:
    return Settings(
        openai_api_key=key,
        openai_base_url=server.base_url,
        llm="realtime",
        turn=TurnSettings(end_of_turn="silence"),
        request_timeout_s=5.0,
        **kw,
    )


def _conversation(settings: Settings, **kw: Any) -> Conversation:
    """The realtime model hears and speaks; no local STT/TTS and no live captions are needed here."""
    return create_conversation(settings, stt=None, tts=None, interim_stt=None, **kw)


def _paced(frames: list[np.ndarray]) -> Iterator[tuple[float, np.ndarray]]:
    start = time.perf_counter()
    for i, frame in enumerate(frames):
        yield start + i * 0.02, frame


def test_voice_turn_goes_to_the_model_and_its_speech_comes_back(server: FakeRealtimeServer, make_speech) -> None:
    """A spoken question with a pause in it: every turn started ahead at a pause is cancelled and
    deleted when speech resumes, so the model's memory holds the one question and its answer."""
    question = make_speech("What is, let me think, the capital of Italy?", rate=48000)
    s = _settings(server)

    async def run() -> Any:
        conv = _conversation(s)
        voice = conv.voice
        assert isinstance(voice, RealtimeVoice)
        await voice.connection([])  # open before the user speaks, as after a first turn: timing-independent
        try:
            return conv, await run_turn_from_wav(conv, question)
        finally:
            await conv.aclose()

    conv, result = asyncio.run(run())
    assert result.errors == []
    assert result.transcript == server.transcript  # the server's transcription of the user's audio
    assert result.reply == server.reply_text
    # The reply is the server's 24 kHz speech, resampled to the surface's 48 kHz (not sped up or cut).
    spoken_s = len(server.speech(server.reply_text)) / 24000
    assert abs(len(result.pcm) / 48000 - spoken_s) < 0.06
    # Over the wire: the SDK's handshake on the base URL, our session, the utterance at 24 kHz.
    handshake = server.handshakes[0]
    assert handshake["path"] == "/v1/realtime?model=gpt-realtime"
    assert handshake["authorization"] == f"Bearer {KEY}"
    session = server.sessions[0]
    assert session["instructions"] == s.prompt() and session["audio"]["output"]["voice"] == "alloy"
    assert session["audio"]["input"]["turn_detection"] is None  # voicechat decides the turns
    assert session["audio"]["input"]["transcription"] == {"model": "whisper-1", "language": "en"}
    creates = server.events("response.create")
    assert len(creates) >= 2, "the pause should have started a turn ahead of time"
    assert len(server.events("response.cancel")) == len(creates) - 1
    memory = server.memory()
    assert [(m["role"], m["text"]) for m in memory] == [("user", server.transcript), ("assistant", server.reply_text)]
    heard_ms = memory[0]["audio_ms"]
    assert 2000 < heard_ms < 5000  # the whole question, once, at 24 kHz (~2.9 s of speech + pauses)
    # The engine's own record and metrics.
    assert [(e.role, e.content) for e in conv.history.entries] == [
        ("user", server.transcript),
        ("assistant", server.reply_text),
    ]
    assert result.metrics is not None and result.metrics.first_audio_ms is not None
    # First audio can't come sooner than the end of turn plus the server's time to first audio.
    assert result.metrics.first_audio_ms >= result.metrics.eot_ms


def _listen(events: list[tuple[float, Event]]) -> Any:
    return lambda event: events.append((time.perf_counter(), event))


def _heard_until(events: list[tuple[float, Event]], until: float, turn: int) -> float:
    """Seconds of the reply a speaker would have played by ``until``: real-time playback from the
    first frame, waiting (not skipping) when frames come late: the engine's own model of a surface."""
    end = 0.0
    delivered = 0.0
    for at, event in events:
        if isinstance(event, AudioOut) and event.turn == turn and at <= until:
            end = max(at, end) + event.duration_s
            delivered += event.duration_s
    return delivered - max(0.0, end - until)


def test_barge_in_truncates_the_models_memory_to_what_was_heard(
    server: FakeRealtimeServer, make_speech, piper_voice
) -> None:
    server.reply_text = LONG_REPLY
    server.speech(LONG_REPLY)
    question, _ = iter_wav_frames(make_speech("Tell me about Rome.", rate=16000, trail_s=0.8))
    cut_in, _ = iter_wav_frames(make_speech("Wait, and Milan?", rate=16000, lead_s=0.0))
    events: list[tuple[float, Event]] = []
    s = _settings(server)

    async def run() -> Conversation:
        conv = _conversation(s, listener=_listen(events))
        for at, frame in _paced(question):
            await asyncio.sleep(max(0.0, at - time.perf_counter()))
            await conv.feed(frame, 16000)
        while not any(isinstance(e, AudioOut) for _, e in events):
            await asyncio.sleep(0.01)
        # The user listens to a second or so of the answer, then talks over it; the microphone sends
        # its silence meanwhile, as a real one does (the engine times the resume window in mic audio).
        quiet = [np.zeros_like(cut_in[0])]
        for at, frame in _paced(quiet * 60 + cut_in + quiet * 40):
            await asyncio.sleep(max(0.0, at - time.perf_counter()))
            await conv.feed(frame, 16000)
        await conv.wait_reply()
        await asyncio.sleep(0.3)
        await conv.aclose()
        return conv

    conv = asyncio.run(run())
    interrupted_at = next(at for at, e in events if isinstance(e, Interrupted) and e.turn == 1)
    heard_ms = _heard_until(events, interrupted_at, turn=1) * 1000
    truncate = server.events("conversation.item.truncate")
    assert len(truncate) == 1
    full_ms = len(server.speech(LONG_REPLY)) / 24
    assert 500 < heard_ms < full_ms - 1000  # a second or so of a ~9 s answer
    # What the model keeps is what was played: the same 20 ms-frame bookkeeping, a frame or two apart.
    assert abs(truncate[0]["audio_end_ms"] - heard_ms) <= 60
    reply_item = next(m for m in server.memory() if m["role"] == "assistant")
    assert reply_item["truncated"] and reply_item["audio_ms"] == truncate[0]["audio_end_ms"]
    # voicechat's own record keeps the words that were heard, marked interrupted.
    first_reply = next(e for e in conv.history.entries if e.turn == 1 and e.role == "assistant")
    assert first_reply.interrupted and 0 < len(first_reply.content.split()) < len(LONG_REPLY.split()) / 2
    assert LONG_REPLY.startswith(first_reply.content)
    # The words said over the reply became the next turn, and it was answered.
    assert any(isinstance(e, ReplyDone) and e.turn == 2 and not e.interrupted for _, e in events)


def _text_turns(conv: Conversation, *texts: str) -> list[list[Event]]:
    """Typed turns (the browser's recogniser path), each played out before the next."""

    async def run() -> list[list[Event]]:
        out = []
        for text in texts:
            conv.submit_text(text)
            await conv.wait_reply()
            conv.playback_done()
            out.append(conv.drain())
        await conv.aclose()
        return out

    return asyncio.run(run())


def _errors(events: list[Event]) -> list[str]:
    return [e.message for e in events if isinstance(e, ErrorEvent)]


def _audio_s(events: list[Event]) -> float:
    return sum(e.duration_s for e in events if isinstance(e, AudioOut))


def test_rejected_key_is_tried_once_and_says_which_setting(server: FakeRealtimeServer) -> None:
    conv = _conversation(_settings(server, key="sk-wrong-key-123"))
    turns = _text_turns(conv, "Hello?", "Hello again?")
    for events in turns:
        errors = _errors(events)
        assert len(errors) == 1 and "rejected the API key" in errors[0] and "OPENAI_API_KEY" in errors[0]
        assert "sk-wrong" not in errors[0]
        assert not any(isinstance(e, AudioOut) for e in events)
    assert [e.content for e in conv.history.entries] == ["Hello?", "Hello again?"]  # what was typed is kept
    assert len(server.handshakes) == 1  # no second handshake with a key the server refused
    fixed = _conversation(_settings(server))
    (events,) = _text_turns(fixed, "Hello?")
    assert _errors(events) == [] and _audio_s(events) > 1.0


@pytest.mark.parametrize(
    ("plan", "says"),
    [(Plan("error", RATE_LIMITED), "rate-limiting"), (Plan("fail"), "failed on the realtime model")],
    ids=["rate-limited", "server-error"],
)
def test_error_event_is_one_line_and_the_next_turn_works(server: FakeRealtimeServer, plan: Plan, says: str) -> None:
    server.plan(plan)
    conv = _conversation(_settings(server))
    first, second = _text_turns(conv, "Hello?", "Are you there?")
    errors = _errors(first)
    assert len(errors) == 1 and says in errors[0] and "\n" not in errors[0]
    assert _errors(second) == [] and _audio_s(second) > 1.0
    assert any(isinstance(e, ReplyDone) and e.text == server.reply_text for e in second)
    assert len(server.handshakes) == 1  # an error event does not cost the connection


def test_socket_dropping_mid_reply_keeps_what_came_and_the_next_turn_reconnects(server: FakeRealtimeServer) -> None:
    server.reply_text = LONG_REPLY
    server.plan(Plan("drop", after_chunks=10))
    conv = _conversation(_settings(server))
    first, second = _text_turns(conv, "Tell me about Rome.", "Go on?")
    done = next(e for e in first if isinstance(e, ReplyDone))
    assert done.cut_off and done.text and LONG_REPLY.startswith(done.text) and done.text != LONG_REPLY
    assert 0.9 < _audio_s(first) < 1.1  # the ten 0.1 s deltas that arrived, all kept
    errors = _errors(first)
    assert len(errors) == 1 and "dropped" in errors[0] and "next turn reconnects" in errors[0]
    assert conv.history.entries[1].cut_off and conv.history.entries[1].content == done.text
    # The next turn opens a new connection, which is told the conversation so far.
    assert len(server.handshakes) == 2
    assert _errors(second) == [] and any(isinstance(e, ReplyDone) and e.text == LONG_REPLY for e in second)
    replayed = [e["item"] for e in server.events("conversation.item.create")]
    roles = [(i["role"], i["content"][0]["text"]) for i in replayed]
    assert ("user", "Tell me about Rome.") in roles and ("assistant", done.text + " …") in roles


def test_session_time_limit_is_reported_and_the_next_turn_works(server: FakeRealtimeServer) -> None:
    server.plan(Plan("expire"))
    conv = _conversation(_settings(server))
    first, second = _text_turns(conv, "Hello?", "Hello again?")
    errors = _errors(first)
    assert len(errors) == 1 and "ended the realtime session" in errors[0]
    assert _errors(second) == [] and _audio_s(second) > 1.0
    assert len(server.handshakes) == 2


@pytest.mark.slow
def test_cli_turn_on_the_realtime_model(server: FakeRealtimeServer, make_speech, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "OPENAI_API_KEY": KEY,
        "OPENAI_BASE_URL": server.base_url,
        "VOICECHAT_END_OF_TURN": "silence",
        "VOICECHAT_INTERIM_STT": "off",
        "HF_HUB_OFFLINE": "1",
    }
    wav = make_speech("What is the capital of Italy?", rate=48000)
    proc = subprocess.run(
        [sys.executable, "-m", "voicechat", "turn", str(wav), "--llm", "realtime", "--json", "--fast"],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    assert data["transcript"] == server.transcript and data["reply"] == server.reply_text
    assert data["reply_audio_s"] > 1.0 and data["metrics"]["first_audio_ms"] is not None
    assert KEY not in proc.stdout + proc.stderr


def test_widget_configured_for_the_realtime_model_answers_a_spoken_turn(
    server: FakeRealtimeServer, make_speech
) -> None:
    """The notebook widget (in this process, without a page): ``configure(llm="realtime")`` swaps the
    engine's reply model, and a spoken question is answered by the realtime server's voice."""
    from voicechat.notebook import VoiceChatWidget

    settings = Settings(
        openai_api_key=KEY,
        openai_base_url=server.base_url,
        turn=TurnSettings(end_of_turn="silence"),
        interim_stt="off",
        tts="local",
    )
    w = VoiceChatWidget(settings)
    try:
        w.wait_ready(300)
        w.configure(llm="realtime")
        w.wait_ready(300)
        w.feed_wav(make_speech("What is the capital of Italy?", rate=16000))
        assert w.wait_reply(120) == server.reply_text
        assert [(h["role"], h["content"]) for h in w.history] == [
            ("user", server.transcript),
            ("assistant", server.reply_text),
        ]
        assert w.metrics[0]["first_audio_ms"] is not None and w.metrics[0]["reply_audio_s"] > 1.0
    finally:
        w.close()
    assert len(server.handshakes) == 1 and server.events("response.create")


def test_stop_before_any_audio_and_clear_leave_nothing_unheard_in_the_models_memory(
    server: FakeRealtimeServer,
) -> None:
    server.first_audio_s = 0.5
    conv = _conversation(_settings(server))

    async def run() -> list[Event]:
        conv.submit_text("Tell me about Rome.")
        while not server.events("response.create"):
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # the response is on its way (0.5 s to first audio), none of it played
        conv.stop_speaking()
        await conv.wait_reply()
        await asyncio.sleep(0.8)  # the server's answer to the cancel
        stopped = conv.drain()
        conv.clear()
        conv.submit_text("Hello?")
        await conv.wait_reply()
        await conv.aclose()
        return stopped

    stopped = asyncio.run(run())
    assert not any(isinstance(e, AudioOut) for e in stopped)
    assert any(isinstance(e, Interrupted) and e.reason == "stop" for e in stopped)
    assert len(server.events("response.cancel")) == 1
    # clear() closed the session; the next turn's new session was told nothing of the old conversation.
    assert len(server.handshakes) == 2
    assert [e["item"]["content"][0]["text"] for e in server.events("conversation.item.create")] == [
        "Tell me about Rome.",
        "Hello?",
    ]
    assert [(e.role, e.content) for e in conv.history.entries] == [("user", "Hello?"), ("assistant", server.reply_text)]


def test_server_turn_detection_streams_the_microphone_and_answers_the_servers_turns(
    server: FakeRealtimeServer, make_speech
) -> None:
    """``VOICECHAT_REALTIME_TURNS=server_vad``: voicechat sends every chunk and neither commits nor asks for
    replies; the server's detector ends the turn, and its reply plays as a turn of the engine."""
    frames, rate = iter_wav_frames(make_speech("What is the capital of Italy?", rate=16000, trail_s=0.5))
    silence = [np.zeros_like(frames[0])] * 75  # 1.5 s: past the server's 500 ms of silence
    events: list[tuple[float, Event]] = []
    s = _settings(server, realtime_turns="server_vad")
    server.first_audio_s = 1.0  # far above how late a loaded loop may notice the reply began

    async def run() -> Conversation:
        conv = _conversation(s, listener=_listen(events))
        for turn in (1, 2):  # two questions, each answered
            for at, frame in _paced(frames + silence):
                await asyncio.sleep(max(0.0, at - time.perf_counter()))
                await conv.feed(frame, rate)
            while conv.turn < turn or conv.generating:
                await asyncio.sleep(0.02)
            conv.playback_done()  # heard to the end before the next question
        await conv.aclose()
        return conv

    conv = asyncio.run(run())
    assert server.sessions[0]["audio"]["input"]["turn_detection"] == {"type": "server_vad"}
    assert not server.events("input_audio_buffer.commit") and not server.events("response.create")
    streamed_ms = sum(e["audio"] for e in server.events("input_audio_buffer.append")) / 2 / 24
    fed_ms = 2 * len(frames + silence) * 20
    assert fed_ms - 300 < streamed_ms <= fed_ms + 20  # all of it, less at most the last unsent 100 ms
    assert [(e.role, e.content) for e in conv.history.entries] == 2 * [
        ("user", server.transcript),
        ("assistant", server.reply_text),
    ]
    metrics = next(e for _, e in events if isinstance(e, TurnMetrics))
    # End of turn: the server's 500 ms of silence, as the local VAD heard it (its last voiced window
    # and the server's energy gate differ by a few frames: a wide margin either way).
    assert metrics.eot_ms is not None and 300 <= metrics.eot_ms <= 1000
    # First audio: no sooner than the server's 1 s to first audio after it ended the turn (less 200 ms
    # for the event loop noticing response.created late on a loaded machine; 0.3 s less 50 ms was a race).
    assert metrics.first_audio_ms is not None and metrics.first_audio_ms >= metrics.eot_ms + 800
    assert sum(e.duration_s for _, e in events if isinstance(e, AudioOut)) > 1.0
