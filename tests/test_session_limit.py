"""VOICECHAT_MAX_SESSIONS: a new voice connection past the limit is refused, running ones are not touched.

The browser test runs the real app with a limit of 1 and two headless Chromium browsers with a fake
microphone; the server's own account of each session (``VOICECHAT_TEST_STATS``) says who received
audio, so a page that merely looks right proves nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import require, write_wav
from tests.streamlit_harness import ROOT, AppServer, chromium, press, wait_for
from voicechat.config import Settings
from voicechat.errors import ConfigError
from voicechat.streamlit.i18n import labels
from voicechat.streamlit.session_limit import SessionSlots, admit
from voicechat_bench_kit.openai_loopback_server import FakeOpenAIServer

START, STOP = "Start conversation", "Stop listening"


def test_slots_refuse_past_the_limit_and_free_on_release() -> None:
    slots = SessionSlots()
    assert admit("a", True, 2, slots) and admit("b", True, 2, slots)
    assert not admit("c", True, 2, slots)
    assert admit("a", True, 2, slots)  # a running session keeps its slot on every run
    assert admit("a", False, 2, slots) and slots.holders() == 1  # a stopped one gives it back
    assert admit("c", True, 2, slots)
    unlimited = SessionSlots()
    assert all(admit(str(i), True, 0, unlimited) for i in range(100))


def test_limit_setting() -> None:
    assert Settings.load({}, environ={}, dotenv_path=None).max_sessions == 20
    assert Settings.load({}, environ={"VOICECHAT_MAX_SESSIONS": "3"}, dotenv_path=None).max_sessions == 3
    with pytest.raises(ConfigError, match="VOICECHAT_MAX_SESSIONS"):
        Settings.load({}, environ={"VOICECHAT_MAX_SESSIONS": "-1"}, dotenv_path=None)
    assert "{limit}" in labels("ko-KR")["session_limit"] and "{limit}" in labels("en-US")["session_limit"]


@pytest.mark.slow
@pytest.mark.browser
def test_second_browser_is_refused_and_the_first_keeps_talking(tmp_path: Path) -> None:
    """Limit 1: A talks, B's Start is refused with the message, A keeps going; once A stops, B may start.

    The backends are on the loopback OpenAI-format server (no model loads or warm-ups competing with
    the two browsers for the CPU): what is under test is the connection bookkeeping, not the models.
    """
    from playwright.sync_api import sync_playwright

    require("chromium")
    rng = np.random.default_rng(0)
    mic = write_wav(tmp_path / "quiet.wav", (rng.standard_normal(96_000) * 3).astype(np.int16), 48_000)
    expected = labels("en-US")["session_limit"].format(limit=1)
    with FakeOpenAIServer(api_key=None) as provider:
        server = AppServer(
            tmp_path / "stats.jsonl",
            tmp_path / "server.log",
            VOICECHAT_MAX_SESSIONS="1",
            OPENAI_BASE_URL=provider.base_url,
            VOICECHAT_STT="openai",
            VOICECHAT_LLM="openai",
            VOICECHAT_TTS="openai",
            VOICECHAT_INTERIM_STT="off",
            # On a starved machine Streamlit can drop a live tab's websocket for a moment, and the
            # disconnect watch (tested elsewhere) then ends A's call; this test is about the limit.
            VOICECHAT_DISCONNECT_WATCH="0",
        )
        with server, sync_playwright() as pw, chromium(pw, mic) as ctx_a, chromium(pw, mic) as ctx_b:
            page_a, page_b = ctx_a.new_page(), ctx_b.new_page()

            def pump(s: float) -> None:
                page_a.wait_for_timeout(s * 1000)

            try:
                page_a.goto(server.url, timeout=180_000)  # a loaded 2-core machine can be slow to serve
                page_b.goto(server.url, timeout=180_000)
                wait_for(lambda: len(server.by_session()) >= 2, 120, what="both browser sessions", sleep=pump)
                press(page_a, START)
                first = wait_for(
                    lambda: next((r for r in server.by_session().values() if r.get("frames_this_start", 0) > 25), None),
                    180,
                    what="browser A's microphone at the server",
                    sleep=pump,
                )
                a = first["session"]
                b = next(sid for sid in server.by_session() if sid != a)
                frames_before = server.by_session()[a]["frames_in"]
                press(page_b, START)
                wait_for(lambda: expected in page_b.inner_text("body"), 60, what="the refusal in B's page", sleep=pump)
                # B hangs up: its Start button is back, and no engine of B's ran on its audio.
                press_target = page_b.frame_locator('iframe[src*="streamlit_webrtc"]').get_by_role("button", name=START)
                press_target.wait_for(state="visible", timeout=60_000)
                # Read the run that refused (B's rows from before its Start say neither refused nor active).
                # Its engine is stopped too (on a loaded machine the stop can outlast the refusing run).
                rows = wait_for(
                    lambda: (
                        (r := server.by_session())
                        and r[b].get("refused_at_limit") == 1
                        and not r[b]["webrtc_active"]
                        and not r[b]["engine_alive"]
                        and r
                    ),
                    60,
                    what="B's session to record the refusal, the hang-up and its engine stopped",
                    sleep=pump,
                )
                assert rows[b]["frames_in"] < 50, rows[b]  # at most a moment of audio before the hang-up
                # A was not touched: still connected, its engine running, frames still arriving.
                rows = server.by_session()
                assert rows[a]["webrtc_active"] and rows[a]["engine_alive"] and rows[a]["refused_at_limit"] is None
                wait_for(
                    lambda: server.by_session()[a]["frames_in"] > frames_before + 25,
                    90,
                    what="A's frames to keep arriving",
                    sleep=pump,
                )
                rows = server.by_session()
                assert rows[a]["webrtc_active"] and rows[a]["engine_alive"] and rows[a]["live_sessions"] == 1
                assert rows[a]["webrtc_starts"] == 1 and expected not in page_a.inner_text("body")
                # When A stops, its slot is free and B's next Start is accepted.
                press(page_a, STOP, timeout=120)
                press(page_b, START, timeout=120)
                wait_for(
                    lambda: server.by_session()[b].get("frames_this_start", 0) > 25,
                    120,
                    what="B's microphone at the server once A stopped",
                    sleep=pump,
                )
                wait_for(lambda: expected not in page_b.inner_text("body"), 30, what="the refusal to go", sleep=pump)
            except BaseException:
                page_a.screenshot(path=str(tmp_path / "a.png"), full_page=True)
                page_b.screenshot(path=str(tmp_path / "b.png"), full_page=True)
                artifacts = ROOT / "test-artifacts"
                artifacts.mkdir(exist_ok=True)
                (artifacts / "session_limit_server.log").write_text(server.log_text())
                for row in server.stats():
                    print(
                        {
                            k: row.get(k)
                            for k in (
                                "t",
                                "session",
                                "event",
                                "frames_in",
                                "webrtc_active",
                                "webrtc_starts",
                                "live_sessions",
                                "refused_at_limit",
                                "engine_alive",
                            )
                        }
                    )
                raise
