"""The dashboard in real headless Chromium with a fake microphone: what a user sees and downloads after one turn.

* the status lights: every light keeps its name at all times, the lit one in bold, the others grey;
* the latency chart after exactly one turn: marks on it (a line alone needs two turns to draw anything);
* recordings (``VOICECHAT_RECORD_AUDIO=1``): the conversation's audio downloads as a stereo WAV with the
  question on the left and the reply on the right, after it; the ZIP holds the reply of turn 1; both are
  still there after the microphone is stopped (which closes the engine).
"""

from __future__ import annotations

import io
import time
import wave
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import require
from tests.streamlit_harness import ROOT, AppServer, chromium, press, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ARTIFACTS = ROOT / "test-artifacts"
QUESTION = "What is the capital of Italy?"
NAMES = ["Listening", "AI thinking", "Speaking"]

# The three lights as (text, bold, colour) each; the test reads them every 0.25 s while it waits.
READ_LIGHTS_JS = """() => Array.from(document.querySelectorAll('.st-key-vc_lights [data-testid="stMarkdownContainer"]'))
  .map(m => { const strong = m.querySelector('strong'); const inner = strong || m.querySelector('p span') || m;
              const cs = getComputedStyle(inner);
              return {text: m.innerText.trim(), bold: Number(cs.fontWeight) >= 600, color: cs.color}; })"""


@pytest.fixture(scope="module")
def fake_mic(make_speech) -> Path:
    """The question, then 15 s of silence (Chromium loops the file): time for a whole reply even on a busy CPU."""
    require("chromium")
    ARTIFACTS.mkdir(exist_ok=True)
    return Path(make_speech(QUESTION, rate=48000, channels=1, lead_s=0.5, trail_s=15.0))


def read_wav(data: bytes) -> tuple[np.ndarray, int]:
    with wave.open(io.BytesIO(data)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, w.getnchannels()), w.getframerate()


def voiced_s(track: np.ndarray, rate: int) -> np.ndarray:
    """Start times of the 20 ms frames with sound in them."""
    n = rate // 50
    frames = track[: len(track) // n * n].astype(np.float64).reshape(-1, n)
    return np.flatnonzero(np.sqrt((frames**2).mean(axis=1)) > 300) / 50


def coloured_pixels(png: bytes) -> int:
    """Pixels in a saturated colour (marks) in the plot area of a chart screenshot (top-left 70 % each way), as the
    legend (right or bottom) is coloured whatever the plot shows; axes, grid and text are grey or black."""
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)
    rgb = rgb[: int(rgb.shape[0] * 0.7), : int(rgb.shape[1] * 0.7)]
    return int(((rgb.max(axis=2) - rgb.min(axis=2)) > 60).sum())


def check_lights(records: list[list[dict[str, Any]]]) -> set[str]:
    """Each record: three named lights, at most one lit, the lit one bold and the others not; returns what was lit."""
    assert records, "the status lights were never seen"
    lit: set[str] = set()
    for rec in records:
        texts = [light["text"] for light in rec]
        assert [t.split(" ", 1)[-1] for t in texts] == NAMES, rec  # the name follows the light's icon
        on = [light for light in rec if light["bold"]]
        assert len(on) <= 1, rec
        off_colours = {light["color"] for light in rec if not light["bold"]}
        assert not on or on[0]["color"] not in off_colours, f"the lit light must differ in colour too: {rec}"
        lit |= {light["text"].split(" ", 1)[-1] for light in on}
    return lit


def prepare(page: Any) -> None:
    """Press "Prepare audio downloads" and wait for the download buttons it brings."""
    page.get_by_role("button", name="🎙️ Prepare audio downloads").click()
    page.get_by_role("button", name="⬇️ Download conversation audio (WAV)").wait_for(state="visible", timeout=60_000)


def download(page: Any, label: str) -> bytes:
    with page.expect_download() as dl:
        page.get_by_role("button", name=label).click()
    return Path(dl.value.path()).read_bytes()


def test_lights_chart_and_recordings_after_one_turn(fake_mic: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    server = AppServer(tmp_path / "stats.jsonl", tmp_path / "server.log", VOICECHAT_RECORD_AUDIO="1")
    with server, sync_playwright() as pw, chromium(pw, fake_mic) as browser:
        page = browser.new_page()
        page.goto(server.url)
        lights: list[list[dict[str, Any]]] = []

        def sleep(seconds: float) -> None:  # keeps Playwright's events flowing, and watches the lights
            page.wait_for_timeout(seconds * 1000)
            if watching and (now := page.evaluate(READ_LIGHTS_JS)) and (not lights or lights[-1] != now):
                lights.append(now)

        watching = False
        try:
            wait_for(lambda: server.latest().get("engine_ready"), 240, what="the models to load", sleep=sleep)
            wait_for(lambda: page.evaluate(READ_LIGHTS_JS), 30, what="the status lights", sleep=sleep)
            before = page.evaluate(READ_LIGHTS_JS)
            assert check_lights([before]) == set(), "nothing may be lit before the microphone is on"
            watching = True
            # Turn 1, typed (the microphone is not started yet): exactly one turn in the latency chart.
            box = page.get_by_placeholder("…or type a message")
            box.fill(QUESTION)
            box.press("Enter")
            wait_for(lambda: server.latest().get("metrics_turns") == 1, 180, what="turn 1's metrics", sleep=sleep)
            chart = page.locator(".st-key-vc_latency_chart")
            chart.wait_for(state="visible", timeout=30_000)
            marks = 0
            deadline = time.monotonic() + 30  # the chart draws a moment after the fragment run that adds it
            while marks <= 40 and time.monotonic() < deadline and server.latest().get("metrics_turns") == 1:
                sleep(0.5)
                chart.scroll_into_view_if_needed()
                marks = coloured_pixels(chart.screenshot(path=str(ARTIFACTS / "streamlit_latency_turn1.png")))
            wait_for(
                lambda: server.latest().get("state") == "listening", 60, what="turn 1's reply to finish", sleep=sleep
            )

            # Then by voice: the question on the left of the recording, its reply on the right.
            press(page, "Start conversation")
            # A turn's metrics come once all of its reply audio has been emitted (and so recorded).
            wait_for(lambda: server.latest().get("metrics_turns", 0) >= 2, 300, what="a spoken turn", sleep=sleep)
            # The reply is queued faster than it plays, so the recording's end runs ahead of the mic
            # until it has played out: wait for that, so the microphone alone lengthens it from here on.
            wait_for(lambda: server.latest().get("state") == "listening", 60, what="the reply to play", sleep=sleep)
            sleep(1.0)
            watching = False
            prepare(page)
            wav, rate = read_wav(download(page, "⬇️ Download conversation audio (WAV)"))
            archive = zipfile.ZipFile(io.BytesIO(download(page, "⬇️ Download each side and every reply (ZIP)")))

            sleep(1.0)  # a second more of microphone audio that the recording kept at stop must hold
            if server.latest().get("webrtc_active"):  # (on a very busy machine the connection may have dropped)
                press(page, "Stop listening")
            wait_for(
                lambda: (s := server.latest()) and not s["webrtc_active"] and s["engines_running"] == 0,
                60,
                what="the engine to stop",
                sleep=sleep,
            )
            sleep(1.0)
            prepare(page)
            # The buttons are already there: the callback's rerun replaces their bytes when it gets to it
            # (a fixed 3 s wait raced a slow rerun). Wait for the longer recording; the assertions say why not.
            after_stop, _ = read_wav(download(page, "⬇️ Download conversation audio (WAV)"))
            for _ in range(30):
                if len(after_stop) > len(wav):
                    break
                sleep(1.0)
                after_stop, _ = read_wav(download(page, "⬇️ Download conversation audio (WAV)"))
            page.screenshot(path=str(ARTIFACTS / "streamlit_status_chart_recording.png"), full_page=True)
        except BaseException:
            page.screenshot(path=str(ARTIFACTS / "streamlit_status_chart_recording_failure.png"), full_page=True)
            (ARTIFACTS / "streamlit_status_chart_recording_server.log").write_text(server.log_text())
            raise

    # Item 7: one turn already draws something readable.
    assert marks > 40, f"the latency chart shows no points after turn 1 ({marks} coloured pixels)"
    # Item 1: names kept throughout; listening and (at least) one of the reply's lights were seen lit.
    lit = check_lights(lights)
    assert "Listening" in lit and lit & {"AI thinking", "Speaking"}, f"lights seen lit: {lit}"
    # Item 3: stereo, question on the left, reply on the right after it.
    assert wav.shape[1] == 2 and rate == 24000
    said, replied = voiced_s(wav[:, 0], rate), voiced_s(wav[:, 1], rate)
    assert said.size and replied.size, "one side of the recording is silent"
    assert replied[0] < said[0], "the typed turn's reply comes first (nothing was said yet)"
    question_end = said[np.flatnonzero(np.diff(said) > 1.0)[0]] if (np.diff(said) > 1.0).any() else said[-1]
    assert (replied > question_end).any(), "no reply after the spoken question"
    names = archive.namelist()
    replies = [n for n in names if n.startswith("reply-turn-")]
    assert {"user.wav", "assistant.wav", "reply-turn-1.wav"} <= set(names) and len(replies) >= 2, names
    for name in replies:
        reply, reply_rate = read_wav(archive.read(name))
        assert reply_rate == 48000 and len(reply) > 0.3 * 48000, name  # the page's output rate is 48 kHz
    # Stopping the microphone closed the engine; the recording survived it.
    assert after_stop.shape[1] == 2 and len(after_stop) > len(wav)  # prepared again: it kept recording till stop
    assert np.array_equal(after_stop[: len(wav) // 2], wav[: len(wav) // 2])
