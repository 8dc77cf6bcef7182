"""The provider side of the capacity benchmarks: the loopback OpenAI-format server in its own process.

Shared by the single-process sweep (:mod:`voicechat.benchmark.capacity_run`) and the host sweep
over several replica processes (:mod:`voicechat.benchmark.host_run`), so both measure against the
same fixed, cloud-like delays and never count a model's CPU as the engine's.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

from voicechat.config import Settings
from voicechat.conversation_factory import conversation_factory
from voicechat.engine import Conversation
from voicechat.events import Event
from voicechat_bench_kit.openai_loopback_server import CHAT, SPEECH, STATS, TRANSCRIPTIONS

# Cloud-like provider delays (before the first byte): transcription, first token, speech.
PROVIDER_DELAYS = {TRANSCRIPTIONS: 0.35, CHAT: 0.30, SPEECH: 0.25}


@contextlib.contextmanager
def provider_process(transcript: str = "What is the capital of Italy?") -> Iterator[str]:
    """The loopback OpenAI-format server in a child process; yields its base URL."""
    cmd = [sys.executable, "-m", "voicechat_bench_kit.openai_loopback_server", "--transcript", transcript]
    for path, delay in PROVIDER_DELAYS.items():
        cmd += ["--delay", path, str(delay)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError("the loopback OpenAI-format server did not start")
        yield url
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


def provider_stats(base_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(base_url.removesuffix("/v1") + STATS, timeout=5) as resp:
        return dict(json.loads(resp.read()))


def loopback_settings(base_url: str, **overrides: Any) -> Settings:
    values = {"stt": "openai", "llm": "openai", "tts": "openai", **overrides}
    return Settings.load(values, environ={"OPENAI_API_KEY": "sk-bench", "OPENAI_BASE_URL": base_url}, dotenv_path=None)


def loopback_factory(settings: Settings) -> Callable[[Callable[[Event], None]], Conversation]:
    """Engines as the sweep's sessions have them (no Streamlit): each call runs on its engine thread."""
    return conversation_factory(settings)
