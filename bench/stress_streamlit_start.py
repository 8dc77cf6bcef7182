"""Start and stop the voice chat's WebRTC session N times in a real browser; count starts that got audio.

Not a CI test: it takes a few minutes. It answers the question a "connected" badge cannot: did
the SERVER receive microphone audio after each start? (streamlit-webrtc 0.79's orphan-context
reset leaves the browser connected while the server's audio callback never runs again.)

    .venv/bin/python bench/stress_streamlit_start.py               # 20 starts, with the app's barrier
    .venv/bin/python bench/stress_streamlit_start.py --no-barrier  # the same without it (for comparison)

A start counts as good when the server's frame counter grows by >= 100 frames (2 s of 20 ms
frames) within 20 s of pressing start and is still growing just before stop is pressed
(``--hold`` seconds after start, while the assistant is answering the fake microphone).
Each line also reports streamlit-webrtc's orphan-context resets seen in the server log.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.streamlit_harness import AppServer, chromium, inbound_audio, press, wait_for


def make_fake_mic(path: Path) -> Path:
    """A spoken question with silence after it, 48 kHz mono 16-bit (Piper + sox, as the tests do)."""
    import asyncio

    import numpy as np

    from voicechat.audio import write_wav
    from voicechat.tts.local import PiperTTS

    voice = PiperTTS()

    async def synth() -> list[np.ndarray]:
        return [c async for c in voice.synthesize("What is the capital of Italy?")]

    raw = path.with_suffix(".raw.wav")
    write_wav(raw, np.concatenate(asyncio.run(synth())), voice.sample_rate)
    subprocess.run(["sox", str(raw), "-r", "48000", "-c", "1", "-b", "16", str(path), "pad", "0.5", "4"], check=True)
    return path


START, STOP = "Start conversation", "Stop listening"


def frames_in(server: AppServer) -> int:
    return int(server.latest().get("frames_in", 0))


def resets(server: AppServer) -> int:
    return server.log_text().count("was not rendered for")


def one_start(
    server: AppServer, page: Any, index: int, hold_s: float, console: list[tuple[float, str]], work: Path
) -> dict[str, object]:
    def pump(seconds: float) -> None:  # sleep while Playwright keeps delivering the page's events
        page.wait_for_timeout(seconds * 1000)

    def click_start() -> bool:
        """Click start; True when the component began (it logs its RTCConfiguration) within 5 s."""
        t = time.monotonic()
        press(page, START)
        try:
            wait_for(lambda: any(at >= t and "RTCConfiguration" in m for at, m in console), 5, 0.1, sleep=pump)
            return True
        except TimeoutError:
            return False

    before = frames_in(server)
    resets_before = resets(server)
    t0 = time.monotonic()
    result: dict[str, object] = {"start": index + 1, "frames_before": before}
    if not click_start():
        result["lost_click"] = True  # the button took the click but the component did not start: retry
        page.screenshot(path=str(work / f"lost_click_{index + 1}.png"), full_page=True)
        click_start()
    try:
        wait_for(lambda: frames_in(server) >= before + 100, 20, what="audio frames at the server", sleep=pump)
        result["seconds_to_audio"] = round(time.monotonic() - t0, 2)
        mid = frames_in(server)
        wait_for(lambda: frames_in(server) >= mid + 50, 5, what="audio still flowing", sleep=pump)
        pump(max(0.0, hold_s - (time.monotonic() - t0)))  # talk a while: replies load the CPU
        end = frames_in(server)
        wait_for(lambda: frames_in(server) >= end + 25, 5, what="audio still flowing before stop", sleep=pump)
        result["ok"] = True
    except TimeoutError as exc:
        result["ok"] = False
        result["why"] = str(exc)
        page.screenshot(path=str(work / f"failed_start_{index + 1}.png"), full_page=True)
        (work / f"failed_start_{index + 1}.console.txt").write_text("\n".join(m for _, m in console[-200:]))
    result["frames_after"] = frames_in(server)
    result["orphan_resets"] = resets(server) - resets_before
    result["browser_connected"] = any(s["state"] == "connected" for s in inbound_audio(page))
    try:
        press(page, STOP, timeout=10)
        wait_for(
            lambda: not server.latest().get("webrtc_active", True) and not server.latest().get("engine_alive"),
            20,
            what="the engine to stop after stop",
            sleep=pump,
        )
        result["engine_threads_after_stop"] = server.latest().get("engine_threads")
    except Exception as exc:  # the component never reached "playing": start over on a fresh page
        result["stop"] = f"no stop ({type(exc).__name__}); reloading the page"
        page.reload()
        wait_for(lambda: server.latest().get("engine_ready"), 60, what="the page to come back", sleep=pump)
    for k in ("barrier_waits", "barrier_counted", "barrier_max_rounds", "barrier_max_wait_ms"):
        result[k] = server.latest().get(k)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=20)
    parser.add_argument("--hold", type=float, default=8.0, help="seconds to keep each session open")
    parser.add_argument("--no-barrier", action="store_true", help="disable the app's run-count barrier")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="voicechat-stress-"))
    mic = make_fake_mic(work / "question.wav")
    env = {"VOICECHAT_WEBRTC_DEBUG": "1"}
    if args.no_barrier:
        env["VOICECHAT_WEBRTC_BARRIER"] = "0"
    results = []
    with (
        AppServer(work / "stats.jsonl", work / "server.log", **env) as server,
        sync_playwright() as pw,
        chromium(pw, mic) as browser,
    ):
        page = browser.new_page()
        console: list[tuple[float, str]] = []
        page.on("console", lambda m: console.append((time.monotonic(), m.text[:300])))
        page.goto(server.url)
        wait_for(lambda: server.latest().get("engine_ready"), 180, what="the models to load")
        for i in range(args.starts):
            r = one_start(server, page, i, args.hold, console, work)
            results.append(r)
            print(json.dumps(r), flush=True)
        total_resets = resets(server)
    good = sum(1 for r in results if r["ok"])
    lost = sum(1 for r in results if r.get("lost_click"))
    print(
        f"\n{good}/{len(results)} starts got audio to the server "
        f"(barrier {'off' if args.no_barrier else 'on'}; orphan-context resets in the server log: {total_resets}; "
        f"start clicks the component ignored, then retried: {lost}); logs in {work}"
    )
    return 0 if good == len(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
