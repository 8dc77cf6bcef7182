"""``voice_chat()`` inside pages of the user's own.

In real headless Chromium (examples/embed_streamlit.py): the fake microphone asks a question; the
words and the reply must show up in the voice chat's column, and — read back from the state
``voice_chat()`` returned — in the user's own box in the other column. The reruns that keep that
state current must not cost the microphone connection. Without a browser (Streamlit's AppTest,
real models): two chats on one page keep their own engines, transcripts and widgets.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import require
from tests.streamlit_harness import ROOT, AppServer, chromium, press, wait_for
from voicechat.conversation_on_loop import running_engines

ARTIFACTS = ROOT / "test-artifacts"
QUESTION = "What is the capital of Italy?"
EXAMPLE = "examples/embed_streamlit.py"


@pytest.fixture(scope="module")
def fake_mic(make_speech) -> Path:
    require("chromium")
    ARTIFACTS.mkdir(exist_ok=True)
    return Path(make_speech(QUESTION, rate=48000, channels=1, lead_s=0.5, trail_s=4.0))


def _text(locator) -> str:
    return str(locator.inner_text()).lower() if locator.count() else ""


@pytest.mark.slow
@pytest.mark.browser
def test_voice_chat_inside_the_users_own_layout(fake_mic: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    server = AppServer(tmp_path / "stats.jsonl", tmp_path / "server.log", script=EXAMPLE)
    with server, sync_playwright() as pw, chromium(pw, fake_mic) as browser:
        page = browser.new_page()
        page.goto(server.url)
        try:
            # The user's page is there, with its own form and chart, and the voice chat in a column.
            page.get_by_text("Trip planner").first.wait_for(timeout=60_000)
            columns = page.locator("[data-testid='stColumn']")
            plan, talk = columns.nth(0), columns.nth(1)
            plan.get_by_text("Hotel per night (€)").wait_for(timeout=60_000)
            plan.locator("[data-testid='stVegaLiteChart']").wait_for(timeout=60_000)
            wait_for(lambda: server.latest().get("engine_ready"), 240, what="the models to load")
            press(page, "Start conversation")

            wait_for(
                lambda: any("italy" in u.lower() for u in server.latest().get("user_lines", [])),
                180,
                what="the question in the server's transcript",
            )
            wait_for(lambda: server.latest().get("assistant_lines"), 120, what="a finished reply")
            reply = server.latest()["assistant_lines"][0].lower().rstrip(".")

            # In the voice chat's column: the words and the reply.
            wait_for(lambda: "capital of italy" in _text(talk), 30, what="the question in the voice chat column")
            wait_for(lambda: reply in _text(talk), 30, what=f"the reply {reply!r} in the voice chat column")
            # In the user's own box, from the state voice_chat() returned (a full run followed the reply).
            box = plan.locator(".st-key-last_exchange")
            wait_for(
                lambda: "you: what is the capital of italy" in _text(box), 30, what="the question in the user's own box"
            )
            wait_for(lambda: f"assistant: {reply}" in _text(box), 30, what="the reply in the user's own box")
            assert talk.locator(".st-key-last_exchange").count() == 0  # the box is the user's, not the chat's

            # Those reruns kept the call up: the microphone still reaches the server, the streamer's context
            # was never reset, and reply audio went out (the dashboard's e2e test measures it in the browser).
            frames = server.latest()["frames_in"]
            wait_for(lambda: server.latest().get("frames_in", 0) > frames + 50, 30, what="mic frames after the reruns")
            assert server.latest()["webrtc_active"] and server.latest()["webrtc_starts"] == 1
            assert "was not rendered for" not in server.log_text()
            wait_for(lambda: server.latest().get("pushed_samples", 0) > 0, 60, what="reply audio for the browser")
            page.screenshot(path=str(ARTIFACTS / "streamlit_embed.png"), full_page=True)
        except BaseException:
            page.screenshot(path=str(ARTIFACTS / "streamlit_embed_failure.png"), full_page=True)
            (ARTIFACTS / "streamlit_embed_server.log").write_text(server.log_text())
            raise


def _two_chats_page() -> None:
    # AppTest has no live server for streamlit-webrtc: stand-ins for the streamer and the shutdown observer.
    from types import SimpleNamespace

    import streamlit as st

    from voicechat.config import Settings
    from voicechat.streamlit import voice_chat

    idle = SimpleNamespace(state=SimpleNamespace(playing=False, signalling=False))
    fakes = {"streamer": lambda *a, **k: idle, "shutdown_observer": lambda callback: None}
    local = Settings.load({"stt": "local", "llm": "local", "tts": "local", "language": "en-US"})
    left, right = st.columns(2)
    with left:
        a = voice_chat(local, key="alpha", show_status=False, rerun_on_reply=False, **fakes)
    with right:
        b = voice_chat(local, key="beta", show_transcript=False, rerun_on_reply=False, **fakes)
    st.text(f"alpha said: {a.last_transcript} / {a.last_reply}")
    st.text(f"beta said: {b.last_transcript} / {b.last_reply}")


@pytest.mark.slow
def test_two_voice_chats_on_one_page_keep_their_own_conversations() -> None:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_two_chats_page, default_timeout=180)
    try:
        at.run()
        assert not at.exception
        alpha, beta = at.session_state["alpha_session"], at.session_state["beta_session"]
        assert alpha is not beta
        at.chat_input(key="alpha_text").set_value("What is the capital of Italy?").run()
        wait_for(lambda: any(e.role == "assistant" for e in alpha.history().entries), 120, what="alpha's reply")
        at.run()
        texts = [t.value for t in at.text]
        said = next(t for t in texts if t.startswith("alpha said: "))
        assert said.startswith("alpha said: What is the capital of Italy? / ") and not said.endswith("/ None")
        assert "beta said: None / None" in texts and beta.history().entries == []
        # What each chat shows: alpha its transcript (no lights), beta its lights (no transcript).
        assert {b.key for b in at.button} == {"alpha_stop_speaking", "alpha_clear"}
        lights = [m.value for m in at.markdown if m.value.startswith("⚪ ")]  # one chat's three unlit, named lights
        assert lights == ["⚪ :gray[Listening]", "⚪ :gray[AI thinking]", "⚪ :gray[Speaking]"]
    finally:
        for key in ("alpha_session", "beta_session"):
            if key in at.session_state:
                at.session_state[key].close()
    assert running_engines() == 0  # engines on the server loop and engine threads alike
