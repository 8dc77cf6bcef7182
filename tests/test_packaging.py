"""The core stays importable without the UI toolkits, and its optional backends fail politely."""

from __future__ import annotations

import subprocess
import sys

CORE = ["voicechat", "voicechat.engine", "voicechat.conversation_thread", "voicechat.ui_state", "voicechat.cli",
        "voicechat.backends", "voicechat.file_turns", "voicechat.stt.openai", "voicechat.llm.openai",
        "voicechat.tts.openai", "voicechat.stt.local", "voicechat.llm.local", "voicechat.tts.local"]


def test_core_imports_neither_streamlit_nor_ipywidgets_nor_torch() -> None:
    code = (
        "import importlib, sys\n"
        f"for m in {CORE!r}: importlib.import_module(m)\n"
        "bad = [m for m in ('streamlit', 'ipywidgets', 'anywidget', 'torch') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


def test_cli_bad_setting_is_one_line_without_traceback() -> None:
    proc = subprocess.run([sys.executable, "-m", "voicechat", "doctor"], capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin", "VOICECHAT_MAX_TOKENS": "many"})
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: ") and "VOICECHAT_MAX_TOKENS" in proc.stderr
    assert "Traceback" not in proc.stderr
