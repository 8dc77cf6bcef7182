"""The Streamlit app on the realtime (speech-to-speech) model: a spoken turn from Chromium's fake microphone.

The realtime server is bench_kit/voicechat_bench_kit/realtime_loopback_server.py in this process; the app runs
as its own ``streamlit run`` process, told only the base URL and the key, as a deployment would be.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import require
from tests.streamlit_harness import AppServer, chromium, inbound_audio, press, wait_for
from voicechat.benchmark.realtime_run import piper_voice
from voicechat_bench_kit.realtime_loopback_server import FakeRealtimeServer

pytestmark = [pytest.mark.slow, pytest.mark.browser]

KEY = "sk-test-realtime-app-0123456789"


def test_realtime_conversation_in_the_app_and_the_key_stays_on_the_server(make_speech, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    require("chromium")
    mic = Path(make_speech("What is the capital of Italy?", rate=48000, lead_s=0.5, trail_s=4.0))
    received: list[bytes] = []

    def watch(ws) -> None:  # type: ignore[no-untyped-def]
        ws.on("framereceived", lambda p: received.append(p if isinstance(p, bytes) else p.encode()))

    with FakeRealtimeServer(KEY, voice=piper_voice) as fake:
        app = AppServer(
            tmp_path / "stats.jsonl",
            tmp_path / "server.log",
            OPENAI_API_KEY=KEY,
            OPENAI_BASE_URL=fake.base_url,
            VOICECHAT_LLM="realtime",
            VOICECHAT_STT="local",  # the live captions; the model hears the turn itself
            VOICECHAT_END_OF_TURN="silence",
        )
        with app, sync_playwright() as pw, chromium(pw, mic) as browser:
            page = browser.new_page()
            page.on("websocket", watch)
            page.goto(app.url)
            wait_for(lambda: app.latest().get("engine_ready"), 240, what="the engine to start")
            press(page, "Start conversation")
            wait_for(lambda: app.latest().get("assistant_lines"), 120, what="a reply from the realtime server")
            assert app.latest()["assistant_lines"][0] == fake.reply_text
            assert fake.transcript in app.latest()["user_lines"]
            wait_for(lambda: [s for s in inbound_audio(page) if s["energy"] > 0], 60, what="reply audio at the browser")
            wait_for(
                lambda: "rome" in str(page.inner_text("body")).lower(), 30, what="the reply's transcript on the page"
            )
            sidebar = page.inner_text("[data-testid='stSidebar']")
            assert "LLM: realtime (set explicitly)" in sidebar, sidebar
            documents = [frame.content() for frame in page.frames]
    assert fake.handshakes and all(h["authorization"] == f"Bearer {KEY}" for h in fake.handshakes)
    assert fake.events("input_audio_buffer.commit") and fake.events("response.create")
    assert not any(KEY.encode() in payload for payload in received)
    assert not any(KEY in doc for doc in documents)
