"""The Streamlit app end to end: real server, real headless Chromium, a fake microphone speaking a question.

Asserts what the server received (its own stats hook), what the page shows (transcript and reply),
and what the browser received (reply audio energy on the RTCPeerConnection's inbound-rtp stream),
then that typed HTML is rendered as text, that the transcript downloads, and that stopping the
WebRTC session stops the engine thread. A screenshot is kept in test-artifacts/.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import require
from tests.streamlit_harness import ROOT, AppServer, chromium, inbound_audio, press, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ARTIFACTS = ROOT / "test-artifacts"
QUESTION = "What is the capital of Italy?"
HTML = '<img src="x" onerror="window.__voicechatXss=1"> **bold** [link](http://example.com/)'


@pytest.fixture(scope="module")
def fake_mic(make_speech) -> Path:
    """The question at 48 kHz mono 16-bit, with 4 s of silence after it so the turn ends (Chromium loops it)."""
    require("chromium")
    ARTIFACTS.mkdir(exist_ok=True)
    return Path(make_speech(QUESTION, rate=48000, channels=1, lead_s=0.5, trail_s=4.0))


def _page_text(page) -> str:
    return str(page.inner_text("body")).lower()


def _page_text_with(page, needle: str) -> str:
    text = _page_text(page)
    return text if needle in text else ""


def test_voice_turn_in_real_chromium(fake_mic: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    server = AppServer(tmp_path / "stats.jsonl", tmp_path / "server.log")
    with server, sync_playwright() as pw, chromium(pw, fake_mic) as browser:
        page = browser.new_page()
        page.goto(server.url)
        try:
            wait_for(lambda: server.latest().get("engine_ready"), 240, what="the models to load (page's status)")
            press(page, "Start conversation")

            # The server got microphone audio, heard the question and answered it.
            wait_for(lambda: server.latest().get("frames_in", 0) > 100, 60, what="mic frames at the server")
            wait_for(
                lambda: any("italy" in u.lower() for u in server.latest().get("user_lines", [])),
                120,
                what="the question in the server's transcript",
            )
            wait_for(lambda: server.latest().get("assistant_lines"), 120, what="a finished reply")
            assert server.latest()["pushed_samples"] > 48_000 // 2, "less than 0.5 s of reply audio was queued"

            # The page shows both.
            wait_for(lambda: _page_text_with(page, "capital of italy"), 30, what="the question on the page")
            reply = server.latest()["assistant_lines"][0].lower().rstrip(".")
            wait_for(lambda: _page_text_with(page, reply), 30, what=f"the reply {reply!r} on the page")

            # The browser received the reply as audio (not just packets of silence).
            stats = wait_for(
                lambda: [s for s in inbound_audio(page) if s["energy"] > 0],
                60,
                what="reply audio energy at the browser",
            )
            assert stats[0]["packets"] > 0 and stats[0]["state"] == "connected"
            page.screenshot(path=str(ARTIFACTS / "streamlit_e2e.png"), full_page=True)

            # Typed HTML and Markdown are shown as text, never rendered.
            box = page.get_by_placeholder("…or type a message")
            box.fill(HTML)
            box.press("Enter")
            wait_for(
                lambda: any(u == HTML for u in server.latest().get("user_lines", [])),
                60,
                what="the typed message at the server",
            )
            wait_for(
                lambda: page.get_by_text('<img src="x"', exact=False).count() > 0,
                30,
                what="the typed HTML shown as text",
            )
            assert page.locator('img[src="x"]').count() == 0
            assert page.evaluate("window.__voicechatXss") is None
            assert page.locator('a[href="http://example.com/"]').count() == 0

            # The transcript downloads as JSON and Markdown.
            with page.expect_download() as dl:
                page.get_by_role("button", name="Download transcript (JSON)").click()
            entries = json.loads(Path(dl.value.path()).read_text(encoding="utf-8"))
            assert any(e["role"] == "user" and "italy" in e["content"].lower() for e in entries)
            assert any(e["role"] == "assistant" for e in entries)
            with page.expect_download() as dl:
                page.get_by_role("button", name="Download transcript (Markdown)").click()
            markdown = Path(dl.value.path()).read_text(encoding="utf-8")
            assert "**You**" in markdown and "\\<img" in markdown

            # Stopping the WebRTC session stops the engine: no engine thread is left.
            press(page, "Stop listening")
            wait_for(
                lambda: (s := server.latest()) and not s["webrtc_active"] and s["engines_running"] == 0,
                30,
                what="the engine thread to stop after stop",
            )
            assert "was not rendered for" not in server.log_text()
        except BaseException:
            page.screenshot(path=str(ARTIFACTS / "streamlit_e2e_failure.png"), full_page=True)
            (ARTIFACTS / "streamlit_e2e_server.log").write_text(server.log_text())
            raise


def test_browser_speech_recognition_falls_back_to_server_stt(fake_mic: Path, tmp_path: Path) -> None:
    """Headless Chromium's Web Speech API fails (no service, fake device): the app says so and listens itself."""
    from playwright.sync_api import sync_playwright

    server = AppServer(tmp_path / "stats.jsonl", tmp_path / "server.log", VOICECHAT_STT="browser")
    with server, sync_playwright() as pw, chromium(pw, fake_mic) as browser:
        page = browser.new_page()
        page.goto(server.url)
        try:
            wait_for(lambda: server.latest().get("engine_ready"), 240, what="the engine to start")
            press(page, "Start conversation")
            wait_for(lambda: server.latest().get("browser_stt_error"), 60, what="the recogniser's error")
            wait_for(
                lambda: _page_text_with(page, "using server speech recognition instead"), 30, what="the fallback notice"
            )
            wait_for(
                lambda: any("italy" in u.lower() for u in server.latest().get("user_lines", [])),
                120,
                what="the question transcribed by server STT",
            )
            assert "STT: local" in page.inner_text("[data-testid='stSidebar']")
        except BaseException:
            page.screenshot(path=str(ARTIFACTS / "streamlit_browser_stt_failure.png"), full_page=True)
            raise


def test_openai_backends_and_the_key_never_reaches_the_browser(fake_mic: Path, tmp_path: Path) -> None:
    """With a key, a voice turn runs on the OpenAI wire format (a real local server) and the key stays server-side."""
    from playwright.sync_api import sync_playwright

    from voicechat_bench_kit.openai_loopback_server import FakeOpenAIServer

    received: list[bytes] = []

    def watch(ws) -> None:
        ws.on(
            "framereceived",
            lambda payload: received.append(payload if isinstance(payload, bytes) else payload.encode()),
        )

    with FakeOpenAIServer() as fake:
        fake.transcript = QUESTION
        key = fake.api_key or ""
        server = AppServer(
            tmp_path / "stats.jsonl", tmp_path / "server.log", OPENAI_API_KEY=key, OPENAI_BASE_URL=fake.base_url
        )
        with server, sync_playwright() as pw, chromium(pw, fake_mic) as browser:
            page = browser.new_page()
            page.on("websocket", watch)
            page.goto(server.url)
            wait_for(lambda: server.latest().get("engine_ready"), 120, what="the engine to start")
            press(page, "Start conversation")
            wait_for(lambda: server.latest().get("assistant_lines"), 60, what="a reply from the OpenAI-format server")
            wait_for(lambda: [s for s in inbound_audio(page) if s["energy"] > 0], 60, what="reply audio at the browser")
            sidebar = page.inner_text("[data-testid='stSidebar']")
            assert "set on the server" in sidebar and "LLM: openai (OPENAI_API_KEY is set)" in sidebar
            assert fake.requests_to("/v1/audio/transcriptions") and fake.requests_to("/v1/audio/speech")
            documents = [frame.content() for frame in page.frames]
    assert any(b"set on the server" in payload for payload in received), "page text not seen in the captured frames"
    assert not any(key.encode() in payload for payload in received)
    assert not any(key in doc for doc in documents)
