"""voicechat inside someone else's process changes nothing process-wide until asked.

Each check runs in a fresh interpreter (a subprocess), so what an earlier test did to this one
(a CLI test calls ``tune_process``) cannot hide or fake a change.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# glibc's heap count, read from malloc_info's XML (one <heap nr=...> per arena).
_ARENAS = """
import ctypes, re, tempfile, threading

libc = ctypes.CDLL("libc.so.6")
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]


def arenas():
    with tempfile.NamedTemporaryFile(suffix=".xml") as f:
        fp = libc.fopen(f.name.encode(), b"w")
        libc.malloc_info(0, fp)
        libc.fclose(fp)
        return len(re.findall(r"<heap nr=", open(f.name).read()))


def arenas_with_busy_threads(n=8):
    # n threads that each malloc (1 kB objects bypass Python's small-object allocator) and stay
    # alive while the arenas are counted: glibc gives each new thread its own arena unless capped.
    ready, done = threading.Barrier(n + 1), threading.Event()

    def work():
        keep = [bytes(1000) for _ in range(200)]
        ready.wait()
        done.wait()
        del keep

    threads = [threading.Thread(target=work) for _ in range(n)]
    for t in threads:
        t.start()
    ready.wait()
    count = arenas()
    done.set()
    for t in threads:
        t.join()
    return count
"""


def _run(body: str, script_dir: Path | None = None, *args: str) -> dict[str, Any]:
    """Run ``body`` in a fresh interpreter; its last line of output is JSON. ``script_dir``: run it
    from a file there (Streamlit's AppTest reads the page function's source)."""
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    script = textwrap.dedent(body)
    if script_dir is None:
        command = [sys.executable, "-c", script]
    else:
        path = script_dir / "check.py"
        path.write_text(script)
        command = [sys.executable, str(path), *args]
    out = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _glibc() -> bool:
    return sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION") is not None


def test_importing_voicechat_starts_no_thread_and_freezes_nothing() -> None:
    got = _run(
        """
        import gc, json, threading
        before = (threading.active_count(), gc.get_freeze_count())
        import voicechat
        import voicechat.workers
        after = (threading.active_count(), gc.get_freeze_count())
        print(json.dumps({"before": before, "after": after}))
        """
    )
    assert got["after"] == got["before"], f"import voicechat changed (threads, frozen objects): {got}"
    assert got["after"][1] == 0


@pytest.mark.slow
def test_a_conversation_of_ones_own_leaves_the_collector_and_threads_alone() -> None:
    got = _run(
        """
        import gc, json, threading
        import voicechat
        from voicechat.process_tuning import freeze_heap_once
        before = (threading.active_count(), gc.get_freeze_count())
        settings = voicechat.Settings.load({"stt": "local", "llm": "local", "tts": "local"})
        conversation = voicechat.create_conversation(settings)
        froze = freeze_heap_once()  # what the Streamlit layer calls once the first engine is ready
        after = (threading.active_count(), gc.get_freeze_count())
        print(json.dumps({"before": before, "after": after, "froze": froze}))
        """
    )
    assert not got["froze"] and got["after"][1] == 0, f"the heap was frozen without tune_process(): {got}"
    assert got["after"][0] == got["before"][0], f"building a conversation started threads: {got}"


@pytest.mark.slow
def test_the_notebook_widget_leaves_the_collector_alone() -> None:
    # The widget owns its engine thread and the model pool's threads; what it must not do is
    # change the kernel's collector, which holds the user's own objects.
    got = _run(
        """
        import gc, json
        import voicechat
        from voicechat.notebook import VoiceChatWidget
        settings = voicechat.Settings.load({"stt": "local", "llm": "local", "tts": "local"})
        widget = VoiceChatWidget(settings=settings).wait_ready(240)
        frozen = gc.get_freeze_count()
        widget.close()
        print(json.dumps({"frozen": frozen}))
        """
    )
    assert got["frozen"] == 0, f"the widget froze the kernel's heap: {got}"


_VOICE_CHAT_PAGE = """
import gc, json, sys, time
from streamlit.testing.v1 import AppTest

TUNE = sys.argv[1:] == ["tune"]


def page(tune):
    from types import SimpleNamespace

    import voicechat
    from voicechat.streamlit import voice_chat

    if tune:
        voicechat.tune_process()  # what streamlit_app.py does
    # AppTest has no live server for streamlit-webrtc: stand-ins for the streamer and the observer.
    idle = SimpleNamespace(state=SimpleNamespace(playing=False, signalling=False))
    settings = voicechat.Settings.load({"stt": "local", "llm": "local", "tts": "local"})
    voice_chat(settings, key="mine", rerun_on_reply=False, streamer=lambda *a, **k: idle,
               shutdown_observer=lambda callback: None)


at = AppTest.from_function(page, args=(TUNE,), default_timeout=240)
at.run()
session = at.session_state["mine_session"]
deadline = time.monotonic() + 240
while not (session.runner is not None and session.runner.ready) and time.monotonic() < deadline:
    time.sleep(0.5)
at.run()  # a run with the engine ready: where the page may freeze the loaded heap
ready, frozen = session.runner is not None and session.runner.ready, gc.get_freeze_count()
session.close()
print(json.dumps({"ready": ready, "frozen": frozen}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("tuned", [False, True], ids=["own page", "bundled app"])
def test_voice_chat_in_ones_own_page_leaves_the_collector_alone(tuned: bool, tmp_path: Path) -> None:
    # The same page twice: as an embedder writes it, and with tune_process() as the bundled app
    # calls it, where freezing the loaded models is wanted (the control that shows the check bites).
    got = _run(_VOICE_CHAT_PAGE, tmp_path, *(["tune"] if tuned else []))
    assert got["ready"], got
    if tuned:
        assert got["frozen"] > 1000, f"the bundled app's page did not freeze its loaded heap: {got}"
    else:
        assert got["frozen"] == 0, f"voice_chat() froze the host app's heap: {got}"


@pytest.mark.skipif(not _glibc(), reason="the arena cap is glibc's")
def test_the_malloc_arena_cap_comes_only_with_tune_process() -> None:
    # Untuned, 8 allocating threads get heaps of their own (glibc allows 8 per core); tuned, the
    # process keeps at most 2 (or as many as it had before, since existing arenas stay).
    plain = _run(
        _ARENAS
        + """
import json, voicechat
before = arenas()
print(json.dumps({"before": before, "busy": arenas_with_busy_threads()}))
"""
    )
    assert plain["busy"] > max(plain["before"], 2), f"importing voicechat capped glibc's arenas: {plain}"
    tuned = _run(
        _ARENAS
        + """
import json, voicechat
voicechat.tune_process()
before = arenas()
print(json.dumps({"before": before, "busy": arenas_with_busy_threads()}))
"""
    )
    assert tuned["busy"] <= max(tuned["before"], 2), f"tune_process() did not cap glibc's arenas: {tuned}"


def test_tune_process_lets_the_app_freeze_its_loaded_heap_once() -> None:
    got = _run(
        """
        import gc, json
        import voicechat
        from voicechat.process_tuning import freeze_heap_once
        voicechat.tune_process()
        first = freeze_heap_once()
        frozen = gc.get_freeze_count()
        second = freeze_heap_once()
        print(json.dumps({"first": first, "second": second, "frozen": frozen}))
        """
    )
    assert got["first"] and not got["second"], got
    assert got["frozen"] > 1000, f"gc.freeze() left the imported modules unfrozen: {got}"
