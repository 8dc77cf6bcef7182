"""A turn of several sentences with pauses between them is heard whole, on an AVX-512 and an AVX2 CPU.

In an encoder window sized to the clip, Whisper without timestamps used to write the first sentence
and stop at the pause after it: a 7 s four-sentence reply came back as "Quick answer." and the rest
of what the user said never reached the reply model. Each ISA runs in its own process, since
CTranslate2 picks its kernels once per process (``CT2_FORCE_CPU_ISA=AVX2`` is how an AVX2 CPU is
emulated; on an AVX2-only machine both runs are AVX2, which is still a valid check).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.test_turns_and_stt import _silence, _speech16k

# (sentences, pause between them in seconds, a phrase of each sentence that must be heard). The
# phrases are a few plain words per sentence, which tiny.en got right on both ISAs in every run;
# one wrong word elsewhere in a sentence does not fail the test.
TURNS = [
    (
        ["Quick answer.", "Rome is the capital of Italy.", "Read more about it today.", "Always test your code."],
        0.8,
        ["quick answer", "capital of italy", "read more", "test your code"],
    ),
    (["Thanks.", "Now tell me a joke about cats."], 1.0, ["thanks", "joke about cats"]),
    (
        ["Hello there.", "I would like to book a table for two.", "Tonight at eight, please."],
        0.6,
        ["hello", "table for two", "tonight at eight"],
    ),
]

_CHILD = """
import sys, numpy as np
from voicechat.stt.local import LocalSTT
stt = LocalSTT()
for path in sys.argv[1:]:
    print(stt.transcribe_sync(np.load(path), "en-US").replace("\\n", " "))
"""


def _turn_audio(voice, sentences: list[str], pause_s: float) -> np.ndarray:
    """16 kHz float speech: the sentences with ``pause_s`` of silence between them, as a user pauses."""
    parts = [_silence(0.3)]
    for text in sentences:
        parts += [_speech16k(voice, text), _silence(pause_s)]
    return np.concatenate(parts)


@pytest.mark.slow
@pytest.mark.parametrize("isa", ["default", "AVX2"])
def test_every_sentence_of_a_paused_turn_is_heard(piper_voice, tmp_path: Path, isa: str) -> None:
    paths = []
    for i, (sentences, pause_s, _) in enumerate(TURNS):
        path = tmp_path / f"turn{i}.npy"
        np.save(path, _turn_audio(piper_voice, sentences, pause_s))
        paths.append(str(path))
    env = {k: v for k, v in os.environ.items() if k not in ("CT2_FORCE_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")}
    if isa == "AVX2":
        env |= {"CT2_FORCE_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, *paths], env=env, capture_output=True, text=True, timeout=300, check=True
    )
    heard = out.stdout.strip().splitlines()
    assert len(heard) == len(TURNS), out.stdout + out.stderr
    for line, (_, _, phrases) in zip(heard, TURNS, strict=True):
        said = line.lower().replace(",", "")
        for phrase in phrases:
            assert phrase in said, f"{phrase!r} missing from {line!r}"
