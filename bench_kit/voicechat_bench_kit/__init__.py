"""voicechat's test rig, shipped apart from the product: recordings and a loopback OpenAI-format server.

``voicechat bench`` and voicechat's tests use it; an app built on voicechat does not need it.
"""

from pathlib import Path

QUESTIONS_DIR = Path(__file__).parent / "questions"  # complete turns, for voice-to-voice latency
PAUSED_DIR = Path(__file__).parent / "paused"  # turns with pauses inside, for false cut-offs (manifest.json)

__all__ = ["PAUSED_DIR", "QUESTIONS_DIR"]
