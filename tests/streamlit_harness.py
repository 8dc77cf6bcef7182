"""Run the real app and a real headless Chromium with a fake microphone (for the e2e test and bench).

Nothing here is mocked: ``streamlit run streamlit_app.py`` (or an example page) in a subprocess on 127.0.0.1, Debian's
``chromium`` driven by the pip ``playwright`` package, and the server's own account of what it
received through ``VOICECHAT_TEST_STATS`` (a page that says "connected" proves nothing).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from voicechat.streamlit.stats_log import read_stats

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")

# Capture every RTCPeerConnection the page makes (the streamer lives in an iframe of the same origin),
# so the test can read getStats() of the connection that receives the reply audio.
CAPTURE_PCS = """
(() => {
  const Orig = window.RTCPeerConnection;
  if (!Orig || Orig.__voicechatWrapped) return;
  function Wrapped(...args) {
    const pc = new Orig(...args);
    for (const w of [window, window.top]) {
      try { (w.__voicechatPcs = w.__voicechatPcs || []).push(pc); } catch (e) { /* cross-origin */ }
    }
    return pc;
  }
  Wrapped.prototype = Orig.prototype;
  Wrapped.__voicechatWrapped = true;
  Object.setPrototypeOf(Wrapped, Orig);
  window.RTCPeerConnection = Wrapped;
})();
"""

INBOUND_AUDIO_JS = """
async () => {
  const out = [];
  for (const pc of (window.__voicechatPcs || [])) {
    const report = await pc.getStats();
    report.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'audio') {
        out.push({state: pc.connectionState, energy: s.totalAudioEnergy || 0, level: s.audioLevel || 0,
                  packets: s.packetsReceived || 0});
      }
    });
  }
  return out;
}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    predicate: Callable[[], T],
    timeout: float,
    interval: float = 0.25,
    what: str = "condition",
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Poll ``predicate`` until it returns something truthy; raise TimeoutError naming ``what``.

    Pass ``sleep=lambda s: page.wait_for_timeout(s * 1000)`` to keep Playwright's events flowing.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        sleep(interval)


class AppServer:
    """``streamlit run <script>`` on a free port of 127.0.0.1, offline, with the stats hook on.

    ``script`` is relative to the repository root: the dashboard by default, or an example page.
    """

    def __init__(self, stats_path: Path, log_path: Path, script: str = "streamlit_app.py", **env: str) -> None:
        self.script = script
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.stats_path = stats_path
        self.log_path = log_path
        self.env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
        self.env.update(
            {
                "VOICECHAT_ICE_SERVERS": "[]",
                "HF_HUB_OFFLINE": "1",
                "VOICECHAT_TEST_STATS": str(stats_path),
                "VOICECHAT_ECHO_CANCELLATION": "0",
                "VOICECHAT_WEBRTC_DEBUG": "1",
                "PYTHONUNBUFFERED": "1",
                **env,
            }
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> AppServer:
        cmd = [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            self.script,
            "--server.headless",
            "true",
            "--server.port",
            str(self.port),
            "--server.address",
            "127.0.0.1",
            "--browser.gatherUsageStats",
            "false",
            "--server.fileWatcherType",
            "none",
        ]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        wait_for(self._healthy, 60, what=f"the Streamlit server on port {self.port} (log: {self.log_path})")
        return self

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {self.proc.returncode}; see {self.log_path}")
        with contextlib.suppress(OSError), urllib.request.urlopen(self.url + "_stcore/health", timeout=2) as r:
            return r.status == 200
        return False

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()

    def stats(self) -> list[dict[str, Any]]:
        return read_stats(str(self.stats_path))

    def latest(self) -> dict[str, Any]:
        rows = self.stats()
        return rows[-1] if rows else {}

    def by_session(self) -> dict[str, dict[str, Any]]:
        """The latest page line of every browser session (event lines excluded)."""
        out: dict[str, dict[str, Any]] = {}
        for row in self.stats():
            if "event" not in row:
                out[row["session"]] = row
        return out

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def chromium(playwright: Any, fake_mic: Path) -> Iterator[Any]:
    """A fresh headless Chromium profile whose microphone plays ``fake_mic`` in a loop."""
    exe = shutil.which("chromium")
    if exe is None:
        raise RuntimeError("chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="voicechat-chromium-") as profile:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=exe,
            headless=True,
            viewport={"width": 1280, "height": 2200},
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={fake_mic}",
                "--autoplay-policy=no-user-gesture-required",
            ],
        )
        context.add_init_script(CAPTURE_PCS)
        try:
            yield context
        finally:
            context.close()


STREAMER_IFRAME = 'iframe[src*="streamlit_webrtc"]'


def press(page: Any, label: str, timeout: float = 60) -> None:
    """Click the streamer's start/stop button (inside its iframe) by its translated label."""
    button = page.frame_locator(STREAMER_IFRAME).get_by_role("button", name=label)
    button.wait_for(state="visible", timeout=timeout * 1000)
    button.click()


def inbound_audio(page: Any) -> list[dict[str, Any]]:
    return list(page.evaluate(INBOUND_AUDIO_JS))
