"""End to end in a real browser: JupyterLab, headless Chromium with a fake microphone, the widget.

JupyterLab runs on 127.0.0.1 with every Jupyter dir in a temp folder; Chromium's fake capture
device plays a spoken question (48 kHz WAV, once). The test runs the notebook through
``window.jupyterapp`` commands, presses the mic button, and checks what a user would notice: the
question's words in the transcript, a finished reply, and reply audio actually played in the
page (an AnalyserNode on the playback graph, exposed as ``window.__voicechat_played_energy``).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.jupyter_env import jupyter_env

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
QUESTION = "What is the capital of Italy?"
CELL = (
    "from voicechat.notebook import VoiceChatWidget\n"
    "w = VoiceChatWidget(backend='local', echo_cancellation=False, stt_mode={mode!r})\n"
    "w"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_notebook(path: Path, source: str) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook(
        cells=[new_code_cell(source)],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}},
    )
    nbformat.write(nb, path)


class Lab:
    """A JupyterLab server subprocess; its log is kept for failure messages."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.notebooks = root / "notebooks"
        self.notebooks.mkdir()
        self.log_path = root / "jupyterlab.log"
        cmd = [
            sys.executable,
            "-m",
            "jupyterlab",
            "--allow-root",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            "--IdentityProvider.token=",
            "--ServerApp.password=",
            "--LabApp.expose_app_in_browser=True",
            f"--ServerApp.root_dir={self.notebooks}",
            "--LabApp.news_url=None",
        ]
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            cmd, env=jupyter_env(root / "jupyter"), cwd=root, stdout=self._log, stderr=subprocess.STDOUT
        )
        poll("JupyterLab to answer", self._up, 120, self.log)

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {self.proc.returncode}:\n{self.log()}")
        with contextlib.suppress(OSError), urllib.request.urlopen(self.url + "/api/status", timeout=2) as r:
            return r.status == 200
        return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def close(self) -> None:
        self.proc.terminate()  # the server shuts its kernels down on SIGTERM
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


# True once the current notebook's kernel has started and is idle.
KERNEL_IDLE_JS = (
    "(() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget; "
    "const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel; "
    "return !!k && k.status === 'idle'; })()"
)


def launch_chromium(p: Any, fake_audio: Path | None = None) -> Any:
    """Debian's headless Chromium; with ``fake_audio`` its fake microphone plays that WAV once."""
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed (scripts/install.sh --dev installs it)"
    args = [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
    ]
    if fake_audio is not None:
        args.append(f"--use-file-for-fake-audio-capture={fake_audio}%noloop")
    return p.chromium.launch(executable_path=chromium, args=args)


def poll(what: str, cond: Callable[[], Any], timeout: float, detail: Callable[[], str] = str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = cond()
        if result:
            return result
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{detail()}")


# Records what the status lights looked like at every change: name, weight and dot colour per light.
RECORD_LIGHTS_JS = """() => {
  globalThis.__vc_lights = [];
  const snap = () => {
    const box = document.querySelector('.vc-lights');
    if (!box) return;
    const lights = Array.from(box.querySelectorAll('.vc-light')).map(e => ({
      name: e.innerText.trim(), on: e.dataset.on === 'true', weight: Number(getComputedStyle(e).fontWeight),
      color: getComputedStyle(e).color, dot: getComputedStyle(e, '::before').backgroundColor}));
    const last = globalThis.__vc_lights[globalThis.__vc_lights.length - 1];
    const rec = {state: box.dataset.state, lights};
    if (!last || JSON.stringify(last) !== JSON.stringify(rec)) globalThis.__vc_lights.push(rec);
  };
  snap();
  new MutationObserver(snap).observe(document.querySelector('.vc-root'), {subtree: true, childList: true,
                                                                          characterData: true, attributes: true});
}"""


def check_lights(records: list[dict[str, Any]]) -> None:
    """Every light kept its name throughout; the lit one stood out by weight and colour, the others did not."""
    assert records, "the status lights were never seen"
    for rec in records:
        assert [light["name"] for light in rec["lights"]] == ["Listening", "AI thinking", "Speaking"], rec
        for light in rec["lights"]:
            assert (light["weight"] >= 600) == light["on"], rec
            assert (light["dot"] != "rgb(204, 204, 204)") == light["on"], rec  # the unlit dot is grey
    lit = {next((light["name"] for light in rec["lights"] if light["on"]), None) for rec in records}
    assert {"Listening", "Speaking"} <= lit, f"lights seen lit: {lit}"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    server = Lab(tmp_path_factory.mktemp("lab"))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def question_wav(make_speech: Callable[..., Path]) -> Path:
    """The fake microphone: the question once, then 6 s of silence so the turn ends (48 kHz mono s16)."""
    return make_speech(QUESTION, rate=48000, channels=1, lead_s=0.5, trail_s=6.0)


@pytest.mark.parametrize("mode", ["server", "browser"])
def test_talk_to_the_widget_in_jupyterlab(lab: Lab, question_wav: Path, mode: str) -> None:
    from playwright.sync_api import sync_playwright

    name = f"voice_{mode}.ipynb"
    write_notebook(lab.notebooks / name, CELL.format(mode=mode))
    console: list[str] = []
    with sync_playwright() as p:
        browser = launch_chromium(p, question_wav)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))

            def detail() -> str:
                state = page.evaluate("JSON.stringify(globalThis.__voicechat || null)")
                text = page.evaluate(
                    "document.querySelector('.vc-root') ? document.querySelector('.vc-root').innerText : '(no widget)'"
                )
                return (
                    f"widget: {text}\npage stats: {state}\nconsole:\n"
                    + "\n".join(console[-30:])
                    + f"\nserver log:\n{lab.log()}"
                )

            def until(what: str, js: str, timeout: float) -> None:
                poll(what, lambda: page.evaluate(js), timeout, detail)

            # A workspace of its own, so the other test's notebook is not restored beside this one.
            page.goto(f"{lab.url}/lab/workspaces/{mode}/tree/{name}?reset")
            until("the notebook's kernel", KERNEL_IDLE_JS, 120)
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            until("the widget with its models loaded", "!!document.querySelector('.vc-lights.vc-ready')", 300)
            page.evaluate(RECORD_LIGHTS_JS)

            page.click(".vc-mic")  # a real (trusted) click: the AudioContext starts in this gesture
            until(
                "the question in the transcript",
                "Array.from(document.querySelectorAll('.vc-chat .vc-user'))"
                ".some(e => e.innerText.toLowerCase().includes('italy'))",
                240,
            )
            until(
                "a finished reply",
                "Array.from(document.querySelectorAll('.vc-chat .vc-assistant'))"
                ".some(e => !e.classList.contains('vc-streaming') && e.innerText.trim().length > 0)",
                240,
            )
            until("reply audio played in the page", "(globalThis.__voicechat_played_energy || 0) > 0.5", 60)

            lights = page.evaluate("globalThis.__vc_lights")
            stats = json.loads(page.evaluate("JSON.stringify(globalThis.__voicechat)"))
            user = page.inner_text(".vc-chat .vc-user")
            reply = page.inner_text(".vc-chat .vc-assistant")
            note = page.inner_text(".vc-mic-note")
            ARTIFACTS.mkdir(exist_ok=True)
            page.locator(".vc-root").screenshot(path=str(ARTIFACTS / f"notebook_widget_{mode}.png"))
            page.screenshot(path=str(ARTIFACTS / f"notebook_lab_{mode}.png"))
        finally:
            with contextlib.suppress(Exception):  # frees the kernel and its models for the next test
                page.evaluate("window.jupyterapp.serviceManager.sessions.shutdownAll()")
            browser.close()

    # Every word, including the first ones (in browser mode they were held and replayed on fallback).
    assert all(word in user.lower() for word in ("what", "capital", "italy")), user
    assert reply.strip()
    assert stats["played_chunks"] >= 1 and stats["sent_chunks"] >= 20
    check_lights(lights)
    if mode == "browser":
        # Headless Chromium has no reachable speech service: recognition fails and the page falls
        # back to sending audio to the kernel (server STT) on its own, and says so.
        assert stats["stt_errors"], "browser speech recognition should have been tried"
        assert "browser STT unavailable" in note
