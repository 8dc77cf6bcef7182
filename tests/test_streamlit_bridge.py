"""The Streamlit surface without a browser: the bridge under threads, barge-in against streamlit-webrtc's
real PcmAudioSource, the session's engine lifecycle, and the page through Streamlit's AppTest.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest
from streamlit_webrtc import PcmAudioSource

from tests.conftest import wav_frames_as_av
from tests.streamlit_harness import wait_for
from voicechat.config import Settings
from voicechat.events import (
    AudioOut,
    FinalTranscript,
    Interrupted,
    ReplyDelta,
    ReplyDone,
    SpeechStarted,
    State,
    StateChanged,
    TurnMetrics,
)
from voicechat.streamlit.browser_session import ENGINE_THREAD, OUTPUT_RATE, VoiceSession
from voicechat.streamlit.i18n import labels
from voicechat.streamlit.ice import describe, parse_ice_servers, rtc_configuration
from voicechat.streamlit.live import escape_markdown, light_state, medians, status_lights
from voicechat.streamlit.webrtc import RunCountBarrier
from voicechat.ui_state import UiBridge

ROOT = Path(__file__).resolve().parent.parent
LOCAL = {"stt": "local", "llm": "local", "tts": "local"}


def engine_threads() -> int:
    return sum(t.name == ENGINE_THREAD for t in threading.enumerate())


def pull(source: PcmAudioSource, frames: int = 1) -> np.ndarray:
    """What aiortc would send next: ``frames`` 20 ms frames from the real source track."""

    async def run() -> list[np.ndarray]:
        return [(await source.track.recv()).to_ndarray()[0] for _ in range(frames)]

    return np.concatenate(asyncio.run(run()))


# --------------------------------------------------------------------------- the bridge under threads
def test_bridge_counts_every_event_from_many_threads_while_snapshots_are_read() -> None:
    heard: list[int] = []
    lock = threading.Lock()

    def on_audio(pcm: np.ndarray, rate: int) -> None:
        with lock:
            heard.append(len(pcm))

    bridge = UiBridge(on_audio=on_audio)
    writers, per_writer = 8, 400
    stop = threading.Event()
    problems: list[str] = []

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        for i in range(per_writer):
            kind = i % 4
            if kind == 0:
                bridge.handle(SpeechStarted(at_s=i / 50))
            elif kind == 1:
                bridge.handle(AudioOut(seed, np.zeros(960, dtype=np.int16), OUTPUT_RATE))
            elif kind == 2:
                bridge.handle(TurnMetrics(seed * 1000 + i, stt_ms=rng.random() * 100))
            else:
                bridge.handle(StateChanged(rng.choice(list(State))))

    def reader() -> None:
        last_version, last_heard, last_audio = -1, -1, -1
        while not stop.is_set():
            snap = bridge.snapshot()
            if snap.version < last_version or snap.heard_speech < last_heard or snap.audio_frames_out < last_audio:
                problems.append(f"went backwards: {snap.version} {snap.heard_speech} {snap.audio_frames_out}")
            if len(snap.metrics) > snap.version:
                problems.append("more metrics than events")
            last_version, last_heard, last_audio = snap.version, snap.heard_speech, snap.audio_frames_out

    readers = [threading.Thread(target=reader) for _ in range(3)]
    threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
    for t in readers + threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    for t in readers:
        t.join()

    snap = bridge.snapshot()
    quarter = writers * per_writer // 4
    assert problems == []
    assert snap.heard_speech == quarter
    assert snap.audio_frames_out == quarter == len(heard)
    assert len(snap.metrics) == quarter
    assert snap.version == 3 * quarter  # every non-audio event bumps the version exactly once


def test_streaming_reply_is_always_a_prefix_of_the_final_text_for_concurrent_readers() -> None:
    bridge = UiBridge()
    words = [f"word{i} " for i in range(300)]
    final = "".join(words).strip()
    seen: list[str] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            lines = bridge.snapshot().lines
            if len(lines) == 2:
                seen.append(lines[1].text)

    t = threading.Thread(target=reader)
    t.start()
    bridge.handle(FinalTranscript(1, "tell me a story"))
    for i, w in enumerate(words):
        bridge.handle(ReplyDelta(1, w))
        if i % 10 == 0:
            time.sleep(0.001)  # let the readers in, as the engine's awaits do
    bridge.handle(ReplyDone(1, final))
    done.set()
    t.join()
    snap = bridge.snapshot()
    assert [line.role for line in snap.lines] == ["user", "assistant"]
    assert snap.lines[1].text == final and not snap.lines[1].streaming
    assert seen and all(final.startswith(text.strip()) for text in seen)


# --------------------------------------------------------------------------- barge-in vs the real PCM source
def test_interrupted_event_drops_the_queued_reply_audio_in_the_pcm_source() -> None:
    session = VoiceSession()
    source = PcmAudioSource(sample_rate=OUTPUT_RATE)
    session.outlet.attach(source)
    tone = (np.sin(np.arange(OUTPUT_RATE) * 2 * np.pi * 440 / OUTPUT_RATE) * 8000).astype(np.int16)
    session.bridge.handle(AudioOut(1, tone, OUTPUT_RATE))  # one second queued, as the engine would
    assert np.abs(pull(source)).max() > 1000
    session.bridge.handle(Interrupted(1, "barge-in"))  # the engine thread's barge-in event
    assert np.abs(pull(source, 5)).max() == 0  # nothing of the old reply is left to play
    session.bridge.handle(AudioOut(2, tone, OUTPUT_RATE))
    assert np.abs(pull(source)).max() > 1000  # and the next reply plays normally
    session.stop_speaking()  # the stop button clears it too
    assert np.abs(pull(source, 5)).max() == 0


def test_reply_audio_at_the_wrong_rate_is_dropped_not_played_too_fast() -> None:
    session = VoiceSession()
    source = PcmAudioSource(sample_rate=OUTPUT_RATE)
    session.outlet.attach(source)
    session.bridge.handle(AudioOut(1, np.full(2400, 9000, dtype=np.int16), 24_000))
    assert np.abs(pull(source)).max() == 0


@pytest.mark.slow
def test_speaking_over_a_reply_clears_its_queued_audio(make_speech) -> None:
    """The real engine: a question, its reply queued in the real source, then the user talks over it."""
    frames = wav_frames_as_av(make_speech("What is the capital of Italy?", rate=48000), "s16")
    session = VoiceSession()
    source = PcmAudioSource(sample_rate=OUTPUT_RATE)
    session.outlet.attach(source)
    settings = Settings.load(LOCAL, environ={}, dotenv_path=None)
    session.ensure_engine(settings).wait_ready(120)
    try:

        def mic() -> None:  # plays aiortc: real-time 20 ms frames from its own thread
            for f in frames:  # the question
                session.push(f)
                time.sleep(0.02)
            while session.outlet.pushed_samples == 0:  # silence until the reply is queued
                session.push(frames[-1])
                time.sleep(0.02)
            for f in frames:  # the user talks over the reply, which nobody has played yet
                session.push(f)
                time.sleep(0.02)

        thread = threading.Thread(target=mic)
        thread.start()
        wait_for(lambda: session.outlet.pushed_samples > 0, 90, interval=0.01, what="reply audio queued")
        wait_for(lambda: session.outlet.clears > 0, 30, interval=0.01, what="barge-in")
        assert np.abs(pull(source, 10)).max() == 0
        thread.join()
        snap = session.bridge.snapshot()
        assert any(line.role == "assistant" and line.interrupted for line in snap.lines)
    finally:
        session.close()
    assert engine_threads() == 0


# --------------------------------------------------------------------------- engine lifecycle
@pytest.mark.slow
def test_session_close_leaves_no_engine_thread_and_keeps_history_across_restarts() -> None:
    session = VoiceSession()
    settings = Settings.load(LOCAL, environ={}, dotenv_path=None)
    runner = session.ensure_engine(settings)
    runner.wait_ready(120)
    assert session.ensure_engine(settings) is runner  # same settings: same engine
    session.submit_text("What is the capital of Italy?", settings)
    wait_for(lambda: any(e.role == "assistant" for e in session.history().entries), 60, what="a reply")
    session.close_engine()  # the WebRTC connection stopped
    assert not runner.alive and engine_threads() == 0
    assert [e.role for e in session.history().entries] == ["user", "assistant"]  # kept for export
    faster = session.ensure_engine(settings.replace(tts_speed=1.5))  # next start: history carried over
    faster.wait_ready(60)
    assert len(faster.run(lambda c: list(c.history.entries))) == 2
    session.submit_text("And of France?", settings.replace(tts_speed=1.5))
    wait_for(lambda: len(session.history().entries) == 4, 60, what="the second reply")
    assert [e.turn for e in session.history().entries] == [1, 1, 2, 2]  # the new engine keeps counting
    wait_for(lambda: len(session.bridge.snapshot().metrics) == 2, 30, what="the second turn's metrics")
    assert [m.turn for m in session.bridge.snapshot().metrics] == [1, 2]
    assert [line.turn for line in session.bridge.snapshot().lines] == [1, 1, 2, 2]
    session.close()  # what SessionShutdownObserver calls when the browser session ends
    assert not faster.alive and engine_threads() == 0 and session.closed
    session.push(np.zeros(960, dtype=np.int16))  # a late frame from aiortc: ignored


def test_run_count_barrier_waits_for_the_count_to_move_on_the_event_loop() -> None:
    """The barrier's loop side: it returns as soon as the runtime counts the previous run, or gives up."""
    from types import SimpleNamespace

    barrier = RunCountBarrier(max_rounds=10)
    info = SimpleNamespace(script_run_count=5)  # what streamlit-webrtc's get_script_run_count reads

    async def counted_after_two_iterations() -> int:
        loop = asyncio.get_running_loop()
        loop.call_soon(lambda: loop.call_soon(lambda: setattr(info, "script_run_count", 6)))
        return await barrier.settle(info, 5)

    assert asyncio.run(counted_after_two_iterations()) in (2, 3)
    assert asyncio.run(barrier.settle(SimpleNamespace(script_run_count=5), 5)) == 0  # never counted: gives up


def test_webrtc_state_transitions_are_counted_once() -> None:
    session = VoiceSession()
    assert session.webrtc_changed(True) is False and session.webrtc_starts == 1
    assert session.webrtc_changed(True) is False and session.webrtc_starts == 1
    assert session.webrtc_changed(False) is True
    assert session.webrtc_changed(False) is False


# --------------------------------------------------------------------------- page helpers
def test_markdown_escaping_and_status_lights() -> None:
    assert escape_markdown("**x** [a](b) <img> $1 :red[x]") == r"\*\*x\*\* \[a\]\(b\) \<img\> \$1 \:red\[x\]"
    ko = status_lights(State.THINKING, labels("ko-KR"))
    assert ko == ["⚪ :gray[듣고 있음]", "🟡 **AI 생각 중**", "⚪ :gray[말하는 중]"]  # unlit lights keep their names
    assert status_lights(State.IDLE, labels("en-US")) == [
        "⚪ :gray[Listening]",
        "⚪ :gray[AI thinking]",
        "⚪ :gray[Speaking]",
    ]
    assert light_state(State.IDLE, webrtc_active=True, engine_running=True) == State.LISTENING
    assert light_state(State.LISTENING, webrtc_active=False, engine_running=True) == State.IDLE
    assert light_state(State.SPEAKING, webrtc_active=True, engine_running=False) == State.IDLE
    m = (
        TurnMetrics(1, stt_ms=100, first_audio_ms=900),
        TurnMetrics(2, stt_ms=300, first_audio_ms=None),
        TurnMetrics(3, stt_ms=200, first_audio_ms=1100),
    )
    assert medians(m) == {"stt_ms": 200, "llm_first_token_ms": None, "tts_first_audio_ms": None, "first_audio_ms": 1000}


def test_ice_configuration_from_settings_and_secrets() -> None:
    assert rtc_configuration("[]", {}, {}) == {"iceServers": []}
    turn = '[{"urls": ["turn:t.example:3478"], "username": "u", "credential": "s3cr3t"}]'
    assert rtc_configuration(turn, {"TWILIO_ACCOUNT_SID": "x"}, {})["iceServers"][0]["username"] == "u"
    assert rtc_configuration(None, {}, {}) is None
    assert "host candidates only" in describe({"iceServers": []})
    assert "s3cr3t" not in describe(rtc_configuration(turn, {}, {}))  # no credentials on the page
    with pytest.raises(Exception, match="VOICECHAT_ICE_SERVERS"):
        parse_ice_servers("{not json")


# --------------------------------------------------------------------------- the page in AppTest
def _page_script() -> None:
    # AppTest has no live Streamlit server, which streamlit-webrtc needs; the page takes stand-ins
    # for its two server-bound parts (the browser test drives the real ones).
    from types import SimpleNamespace

    from voicechat.streamlit.page import main

    idle = SimpleNamespace(state=SimpleNamespace(playing=False, signalling=False))
    main(streamer=lambda *a, **k: idle, shutdown_observer=lambda callback: None)


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> Iterator[AppTest]:
    for k, v in {
        "VOICECHAT_STT": "local",
        "VOICECHAT_LLM": "local",
        "VOICECHAT_TTS": "local",
        "VOICECHAT_LANGUAGE": "en-US",
    }.items():
        monkeypatch.setenv(k, v)
    at = AppTest.from_function(_page_script, default_timeout=180)
    yield at
    if "voicechat_session" in at.session_state:
        at.session_state["voicechat_session"].close()
    assert engine_threads() == 0


@pytest.mark.slow
def test_page_labels_switch_between_english_and_korean(app: AppTest) -> None:
    app.run()
    assert not app.exception
    assert app.title[0].value.endswith("Real-time voice chat")
    assert {b.label for b in app.button} >= {"🔇 Stop voice", "🗑️ Clear conversation"}
    assert [s.label for s in app.sidebar.selectbox][:3] == ["Speech to text", "Reply model", "Text to speech"]
    app.selectbox(key="vc_language").set_value("ko-KR").run()
    assert app.title[0].value.endswith("실시간 음성 대화")
    assert {b.label for b in app.button} >= {"🔇 음성 중지", "🗑️ 대화 지우기"}
    assert [s.label for s in app.sidebar.selectbox][:3] == ["음성 인식", "응답 모델", "음성 합성"]
    assert "⚪ :gray[듣고 있음]" in [m.value for m in app.markdown]  # an unlit light keeps its name
    assert {d.label for d in app.get("download_button")} == {
        "⬇️ 대화 내용 내려받기 (JSON)",
        "⬇️ 대화 내용 내려받기 (Markdown)",
    }


@pytest.mark.slow
def test_sidebar_settings_reach_the_engine(app: AppTest) -> None:
    app.run()
    session = app.session_state["voicechat_session"]
    first = session.runner
    app.sidebar.slider(key="vc_speed").set_value(1.5).run()
    app.sidebar.slider(key="vc_vad").set_value(0.7).run()
    app.sidebar.text_area(key="vc_prompt").set_value("Answer like a pirate.").run()
    app.sidebar.selectbox(key="vc_realtime_turns").set_value("server_vad").run()
    s = session.settings
    assert (s.tts_speed, s.turn.vad_threshold, s.system_prompt) == (1.5, 0.3, "Answer like a pirate.")
    assert s.realtime_turns == "server_vad"  # who ends a turn when the reply model is the realtime one
    assert session.runner is not first and not first.alive  # restarted with the new settings
    assert not s.record_audio and session.recording() is None  # recording is off unless asked
    app.sidebar.toggle(key="vc_record").set_value(True).run()
    assert session.settings.record_audio
    backends = " ".join(t.value for t in app.sidebar.text)
    assert "STT: local (set explicitly)" in backends
    table = app.sidebar.dataframe[0].value
    assert {"stt", "llm", "tts"} <= set(table["kind"])


@pytest.mark.slow
def test_transcript_export_json_and_markdown(app: AppTest) -> None:
    app.run()
    app.chat_input(key="vc_text").set_value("What is the capital of Italy? <b>[x](y)</b>").run()
    session = app.session_state["voicechat_session"]
    wait_for(lambda: any(e.role == "assistant" for e in session.history().entries), 90, what="the reply")
    app.run()
    assert not app.exception
    history = session.history()
    import json

    entries = json.loads(history.to_json())
    assert entries[0]["role"] == "user" and entries[0]["content"].startswith("What is the capital of Italy?")
    assert entries[1]["role"] == "assistant" and entries[1]["content"]
    markdown = history.to_markdown(title="voicechat")
    assert "\\<b\\>\\[x\\]\\(y\\)\\</b\\>" in markdown  # exported Markdown cannot inject HTML or links
    assert len(app.get("download_button")) == 2
    texts = [t.value for t in app.text]
    assert any(t.startswith("What is the capital of Italy? <b>[x](y)</b>") for t in texts)  # shown verbatim


@pytest.mark.slow
def test_sidebar_names_each_stage_server_never_its_key(app: AppTest, monkeypatch: pytest.MonkeyPatch) -> None:
    key = "sk-stage-SECRET-42"
    monkeypatch.setenv("VOICECHAT_LLM", "auto")
    monkeypatch.setenv("VOICECHAT_LLM_BASE_URL", "http://10.9.8.7:8000/v1")
    monkeypatch.setenv("VOICECHAT_LLM_API_KEY", key)
    app.run()
    assert not app.exception
    backends = [t.value for t in app.sidebar.text]
    assert (
        "LLM: openai (VOICECHAT_LLM_BASE_URL is set) → http://10.9.8.7:8000/v1 (VOICECHAT_LLM_BASE_URL), "
        "key set (VOICECHAT_LLM_API_KEY)" in backends
    )
    assert "STT: local (set explicitly)" in backends
    shown = [str(e.value) for e in (*app.sidebar.text, *app.sidebar.caption, *app.markdown, *app.error)]
    shown.append(app.sidebar.dataframe[0].value.to_string())
    assert not [s for s in shown if key in s]
