"""Transcript, reply and error text with HTML or Markdown in it is shown as text in real JupyterLab.

Why a browser test: the chat, partial and error panes are ipywidgets ``HTML`` widgets, whose value
the page assigns to ``innerHTML``. Only the escaping in ``voicechat.notebook._view`` stands
between a transcript (anything a user or a web page can make the microphone hear) or a model's
reply (which can be steered by the conversation) and script running in the notebook's origin,
where it could run code in the kernel. So the text is put through the whole path and the test
looks at what Chromium actually built: the literal characters visible, no ``<img>``, no
``javascript:`` link, no ``<script>``, and the ``onerror`` payload never ran.

The widget runs on the offline STT and TTS; its LLM is a :class:`FakeOpenAIServer` in this process
so that the *reply* carries a payload too, and a planned 400 puts one into the error pane. It is
reached through ``VOICECHAT_LLM_BASE_URL``'s setting, so the widget's status line must name it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.test_notebook_browser import KERNEL_IDLE_JS, Lab, launch_chromium, poll, write_notebook
from voicechat_bench_kit.openai_loopback_server import CHAT, FakeOpenAIServer, Reply, error_reply, serve

pytestmark = [pytest.mark.slow, pytest.mark.browser]

USER = '<img src=x onerror="window.__pwned=1"> [x](javascript:window.__pwned=2) **bold**'
REPLY = (
    '<img src=x onerror="window.__pwned=3"> [y](javascript:window.__pwned=4) '
    "<script>window.__pwned=5</script> __under__"
)
ERROR = '<img src=x onerror="window.__pwned=6"> [z](javascript:window.__pwned=7)'
CELL = """from voicechat.config import Settings
from voicechat.notebook import VoiceChatWidget
s = Settings.load({{"llm_base_url": {url!r}}}).replace(stt="local", tts="local", max_retries=0)
w = VoiceChatWidget(s)
display(w)
w.wait_ready(300)
w.ask({user!r})"""
# Everything in the widget that markup injected through its text could have created.
INJECTED_JS = """(() => {
  const root = document.querySelector('.vc-root');
  const q = (sel) => root ? Array.from(root.querySelectorAll(sel)).map((e) => e.outerHTML) : ['(no widget)'];
  return JSON.stringify({img: q('img'), js_links: q('a[href^="javascript" i]'), links: q('.vc-chat a, .vc-errors a'),
                         script: q('script'), emphasis: q('.vc-chat strong, .vc-chat em, .vc-errors strong'),
                         pwned: typeof window.__pwned === 'undefined' ? null : window.__pwned});
})()"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    server = Lab(tmp_path_factory.mktemp("lab-injection"))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeOpenAIServer]:
    yield from serve(api_key=None)


def text_of(page: Any, selector: str) -> str:
    """What a user sees in the widget's pane: the rendered text, not the HTML source."""
    return str(
        page.evaluate(
            f"Array.from(document.querySelectorAll('.vc-root {selector}')).map((e) => e.innerText).join('\\n')"
        )
    )


def test_markup_in_transcript_reply_and_errors_is_shown_as_text(lab: Lab, llm: FakeOpenAIServer) -> None:
    from playwright.sync_api import sync_playwright

    # The reply streams in split mid-tag (the streaming view must not assemble markup), then a 400.
    llm.plan(CHAT, Reply(deltas=(REPLY[:30], REPLY[30:])), error_reply(400, ERROR))
    write_notebook(lab.notebooks / "injection.ipynb", CELL.format(url=llm.base_url, user=USER))
    console: list[str] = []
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))

            def detail() -> str:
                return (
                    f"widget: {text_of(page, '')}\ninjected: {page.evaluate(INJECTED_JS)}\nconsole:\n"
                    + "\n".join(console[-30:])
                    + f"\nserver log:\n{lab.log()}"
                )

            def until(what: str, selector: str, timeout: float) -> str:
                """Wait for text in a pane (however it got rendered), then return that text."""
                return str(poll(what, lambda: text_of(page, selector).strip(), timeout, detail))

            page.goto(f"{lab.url}/lab/workspaces/injection/tree/injection.ipynb?reset")
            poll("the notebook's kernel", lambda: page.evaluate(KERNEL_IDLE_JS), 120, detail)
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            user = until("the transcript", ".vc-chat .vc-user", 300)
            reply = until("the finished reply", ".vc-chat .vc-assistant:not(.vc-streaming)", 120)
            # A second turn whose request fails with the error message the server chose.
            page.evaluate(
                "window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
                ".requestExecute({code: \"w.ask('again')\"})"
            )
            errors = until("the server's error", ".vc-errors", 60)
            engine = until("the engine line", ".vc-engine", 10)
            injected = json.loads(page.evaluate(INJECTED_JS))
        finally:
            with contextlib.suppress(Exception):
                page.evaluate("window.jupyterapp.serviceManager.sessions.shutdownAll()")
            browser.close()

    assert injected == {"img": [], "js_links": [], "links": [], "script": [], "emphasis": [], "pwned": None}, injected
    # The literal characters are what the user reads (Markdown is not rendered either).
    assert USER in user and REPLY in reply and ERROR in errors, (user, reply, errors)
    assert engine == (
        f"ready · stt local · llm openai @ {llm.base_url} · tts local · end of turn: silence + text (local LLM)"
    ), engine
