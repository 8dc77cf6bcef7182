"""The types carry the meaning: mypy rejects an unknown interruption reason, error stage or end-of-turn
mode, and the local and remote backends have the optional abilities the engine looks for.

mypy reads a small program that uses voicechat's public names; each wrong line must be reported, and
nothing else.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROGRAM = textwrap.dedent(
    """
    from voicechat.backend_abilities import Closes, PrimesNextTurn, RunsOnThisCPU
    from voicechat.backend_abilities import TranscribesInterim, WarmsUp, WarmsUpChat
    from voicechat.config import Settings, TurnSettings
    from voicechat.events import ErrorEvent, Interrupted
    from voicechat.llm.line_end import LineEndScorer
    from voicechat.llm.local import LocalChat
    from voicechat.llm.openai import OpenAIChat
    from voicechat.stt.local import LocalSTT
    from voicechat.tts.local import PiperTTS
    from voicechat.turn_policy import TurnPolicy


    def fine(chat: LocalChat, stt: LocalSTT, scorer: LineEndScorer, voice: PiperTTS, remote: OpenAIChat) -> None:
        Interrupted(1, "barge-in"), Interrupted(1, "stop"), Interrupted(1, "resumed")
        ErrorEvent("no audio device", "audio")
        Settings(turn=TurnSettings(end_of_turn="silence"))
        warm: WarmsUpChat = chat
        primes: PrimesNextTurn = chat
        scores: WarmsUp = scorer
        interim: TranscribesInterim = stt
        here: tuple[RunsOnThisCPU, RunsOnThisCPU] = (chat, voice)
        closes: Closes = remote


    def wrong() -> None:
        Interrupted(1, "paused")  # WRONG: not a reason the engine gives
        ErrorEvent("out of memory", "gpu")  # WRONG: not a stage
        TurnSettings(end_of_turn="sometimes")  # WRONG: not a mode
        TurnPolicy(mode="smart")  # WRONG: not a mode
    """
)


def test_mypy_rejects_unknown_reasons_stages_and_modes(tmp_path: Path) -> None:
    program = tmp_path / "uses_voicechat.py"
    program.write_text(PROGRAM)
    # In a child process: mypy raises the recursion limit of the interpreter it runs in.
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(ROOT / ".mypy_cache"),
            str(program),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
        check=False,
    )
    out, err = proc.stdout, proc.stderr
    lines = PROGRAM.splitlines()
    wrong = {i + 1 for i, line in enumerate(lines) if "# WRONG" in line}
    reported = {int(m) for m in re.findall(r"uses_voicechat\.py:(\d+): error", out)}
    assert reported == wrong, f"expected errors on lines {sorted(wrong)}, mypy said:\n{out}{err}"
